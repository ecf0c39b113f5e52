import * as tf from '@tensorflow/tfjs';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { countParams, type ModelKind } from '../../shared/models/builders.ts';
import { replaceFile, syncDir, writeSynced } from './durable-file.ts';

/** The weight file beside each model.json (one shard: the students are small). */
export const STUDENT_WEIGHTS_FILE = 'weights.bin';

/**
 * What a user of the exported student needs besides the weights: how to feed it and how to read it. Written as
 * model-card.json next to model.json.
 */
export interface ModelCard {
  format: 'fedistill-model-card-1';
  name: string;
  /** Student version (bumped by every aggregation; online: every publish) and the round (online: version) it closes. */
  version: number;
  round: number;
  strategy: string;
  architecture: { kind: ModelKind; layers: { name: string; className: string; outputShape: unknown }[] };
  parameters: number;
  input: {
    /** Per-example shape, NHWC without the batch axis, e.g. [28, 28, 1]. */
    shape: number[];
    dtype: 'float32';
    layout: 'NHWC';
    /** Bytes → model input: what the clients and the server do to every row (x = pixel · scale + offset). */
    normalisation: string;
    /** Raw picture → bytes: the preparation the clients apply to pictures of any size (fedistill's prepareImage). */
    preparation: string;
    scale: number;
    offset: number;
  };
  output: { classes: number; classNames: string[]; kind: 'logits'; note: string };
  /** The server's labelled validation set, if it had one: accuracy of this version and how many rows it was scored on. */
  evaluation: { studentAccuracy: number | null; validationSize: number };
  createdAt: string;
  generatedBy: string;
}

export interface StudentRelease {
  version: number;
  /** model.json as tf.io writes it; weight paths are relative to its own directory. */
  modelJson: tf.io.ModelJSON;
  weights: Uint8Array;
  card: ModelCard;
}

export interface ReleaseMeta {
  kind: ModelKind;
  version: number;
  round: number;
  strategy: string;
  inputShape: number[];
  classNames: string[];
  studentAccuracy?: number;
  validationSize: number;
  serverVersion: string;
  /** Defaults to now. */
  createdAt?: Date;
}

/** The card's bytes → input text, for the input's channels (1: grey; 3: R, G, B). */
export function normalisationText(inputShape: readonly number[]): string {
  const what = inputShape[2] === 3 ? 'each of R, G, B (last axis, in that order): 8-bit 0..255' : 'one grey channel: 8-bit levels 0..255 (0 = black)';
  return `x = pixel / 255 on ${what}, to float32 in [0, 1]; no mean or std subtraction`;
}

/** The card's picture → bytes text: the steps of prepareImage (shared with the join page), for this input shape. */
export function preparationText(inputShape: readonly number[]): string {
  const [h, w, c] = inputShape;
  const colour = c === 3 ? 'R, G, B each rounded to 8 bits' : 'grey = round(0.299·R + 0.587·G + 0.114·B) (ITU-R BT.601)';
  return (
    `raw pictures of any size become ${h}×${w}×${c} bytes as fedistill's prepareImage makes them (the join page and ` +
    `image folders of 'fedistill client'): letterboxed into ${h}×${w} (aspect ratio kept, centred), area resampling ` +
    `(each pixel the coverage-weighted mean of the source pixels under it), transparent pixels and the margin take the ` +
    `background; ${colour}; inverted (255 − v, on a white background) when the outermost ring of the picture is light ` +
    `(mean luminance above 127), so objects are light on black like Fashion-MNIST, else on black. Prepare pictures the ` +
    `same way; data already in this form (idx files, 'fedistill split' output) is used as it is`
  );
}

/** The model as a standard tfjs LayersModel (topology + one weight shard) plus its model card. */
export async function releaseStudent(model: tf.LayersModel, meta: ReleaseMeta): Promise<StudentRelease> {
  let captured: tf.io.ModelArtifacts | null = null;
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      captured = artifacts;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  const a = captured! as tf.io.ModelArtifacts;
  const weights = new Uint8Array(tf.io.concatenateArrayBuffers(a.weightData as ArrayBuffer | ArrayBuffer[]));
  const modelJson: tf.io.ModelJSON = {
    modelTopology: a.modelTopology as object,
    format: a.format ?? 'layers-model',
    generatedBy: a.generatedBy ?? `TensorFlow.js tfjs-layers v${tf.version_layers}`,
    convertedBy: null,
    weightsManifest: [{ paths: [STUDENT_WEIGHTS_FILE], weights: a.weightSpecs ?? [] }],
  };
  const c = meta.classNames.length;
  const card: ModelCard = {
    format: 'fedistill-model-card-1',
    name: `fedistill student (${meta.strategy}, ${meta.kind}) v${meta.version}`,
    version: meta.version,
    round: meta.round,
    strategy: meta.strategy,
    architecture: { kind: meta.kind, layers: model.layers.map((l) => ({ name: l.name, className: l.getClassName(), outputShape: l.outputShape })) },
    parameters: countParams(model),
    input: {
      shape: meta.inputShape,
      dtype: 'float32',
      layout: 'NHWC',
      normalisation: normalisationText(meta.inputShape),
      preparation: preparationText(meta.inputShape),
      scale: 1 / 255,
      offset: 0,
    },
    output: { classes: c, classNames: meta.classNames, kind: 'logits', note: 'outputs are logits: apply softmax for class probabilities (argmax alone gives the class)' },
    evaluation: { studentAccuracy: meta.studentAccuracy ?? null, validationSize: meta.validationSize },
    createdAt: (meta.createdAt ?? new Date()).toISOString(),
    generatedBy: `fedistill ${meta.serverVersion}`,
  };
  return { version: meta.version, modelJson, weights, card };
}

/** The files of a release, name → bytes (model.json, weights.bin, model-card.json). */
export function releaseFiles(r: StudentRelease): Map<string, Uint8Array> {
  const json = (o: unknown) => new TextEncoder().encode(`${JSON.stringify(o, null, 1)}\n`);
  return new Map([
    [STUDENT_WEIGHTS_FILE, r.weights],
    ['model.json', json(r.modelJson)],
    ['model-card.json', json(r.card)],
  ]);
}

/**
 * Write a release into `dir` so that a reader never sees a mix of two versions: the files go to a fresh temp
 * directory first (fsynced), which then takes the place of `dir` by rename (the old one is moved aside, then removed).
 */
export async function writeRelease(dir: string, r: StudentRelease): Promise<void> {
  const parent = path.dirname(dir);
  await fs.mkdir(parent, { recursive: true });
  const tmp = `${dir}.tmp-${process.pid}`;
  await fs.rm(tmp, { recursive: true, force: true });
  await fs.mkdir(tmp);
  for (const [name, bytes] of releaseFiles(r)) await writeSynced(path.join(tmp, name), bytes);
  await syncDir(tmp); // the files' names are durable before the folder takes its place
  const old = `${dir}.old-${process.pid}`;
  const had = await fs.rename(dir, old).then(() => true, (e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? false : Promise.reject(e)));
  await fs.rename(tmp, dir);
  if (had) await fs.rm(old, { recursive: true, force: true });
  await syncDir(parent);
}

/**
 * Write a release's three files into a directory that may hold other things (`fedistill export --out`): each file
 * lands whole (temp file, fsync, rename), weights before the model.json that names them; nothing else is touched.
 */
export async function exportRelease(dir: string, r: StudentRelease): Promise<string[]> {
  await fs.mkdir(dir, { recursive: true });
  const written: string[] = [];
  for (const [name, bytes] of releaseFiles(r)) {
    const file = path.join(dir, name);
    await replaceFile(file, bytes);
    written.push(file);
  }
  return written;
}

/** Read a release written by writeRelease (null if `dir` holds none). */
export async function readRelease(dir: string): Promise<StudentRelease | null> {
  try {
    const [modelJson, weights, card] = await Promise.all([
      fs.readFile(path.join(dir, 'model.json'), 'utf8').then((s) => JSON.parse(s) as tf.io.ModelJSON),
      fs.readFile(path.join(dir, STUDENT_WEIGHTS_FILE)),
      fs.readFile(path.join(dir, 'model-card.json'), 'utf8').then((s) => JSON.parse(s) as ModelCard),
    ]);
    return { version: card.version, modelJson, weights: new Uint8Array(weights), card };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}
