/**
 * The server's public proxy set and labelled validation set, from a spec string each (`--proxy`, `--validation`):
 *
 *   proxy       fashion-mnist[:N]        N training rows held out (the rows `fedistill simulate` and
 *                                        `fedistill split` hold out for the same seed); no N = the default size,
 *                                        scaled on a smaller training set (see proxy-size.ts)
 *               images:DIR               every image under DIR, unlabelled
 *               idx:FILE                 an idx images file (.gz ok)
 *   validation  fashion-mnist            its test set (the default)
 *               images:DIR               a labelled folder (one sub-folder per class)
 *               idx:IMAGES,LABELS        an idx images file and its labels file
 *               none                     no validation
 *
 * Class names: --classes, else the classes.json in the proxy's folder (`fedistill split` writes one), else the labelled
 * validation folder's (its classes.json or sub-folder names), else Fashion-MNIST's when either set is Fashion-MNIST,
 * else a labelled idx validation set's numbers.
 * The proxy's hash stays what the aggregator computes: sha256 of its decoded bytes (the Dataset's images).
 */
import { dirname, resolve } from 'node:path';
import { subset, type Dataset } from '../shared/data/dataset.ts';
import { proxyRows } from '../shared/data/federated-split.ts';
import { FASHION_MNIST_CLASSES, loadFashionMnist, type FashionMnist, type LoadFashionMnistOptions } from './fashion-mnist.ts';
import { readIdxImages, readIdxLabelled } from './idx-files.ts';
import { DEFAULT_IMAGE_SHAPE, idPart, readFolderMeta, readLabelledImageFolder, readUnlabelledImageFolder, requireFolder } from './image-folder.ts';
import { fitProxySize } from './proxy-size.ts';

export type ProxySpec = { kind: 'fashion-mnist'; size?: number } | { kind: 'images'; dir: string } | { kind: 'idx'; file: string };
export type ValidationSpec =
  | { kind: 'fashion-mnist' }
  | { kind: 'images'; dir: string }
  | { kind: 'idx'; images: string; labels: string }
  | { kind: 'none' };

export const PROXY_SPEC_HELP = 'fashion-mnist[:N] | images:DIR | idx:FILE';
export const VALIDATION_SPEC_HELP = 'fashion-mnist | images:DIR | idx:IMAGES,LABELS | none';

function splitKind(spec: string): [string, string | undefined] {
  const i = spec.indexOf(':');
  return i < 0 ? [spec.trim(), undefined] : [spec.slice(0, i).trim(), spec.slice(i + 1)];
}

export function parseProxySpec(spec: string): ProxySpec {
  const [kind, rest] = splitKind(spec);
  if (kind === 'fashion-mnist') {
    if (rest === undefined) return { kind };
    if (!/^\d+$/.test(rest.trim()) || Number(rest) < 1) throw new Error(`--proxy ${spec}: N must be a positive integer`);
    return { kind, size: Number(rest) };
  }
  if (kind === 'images' && rest) return { kind, dir: rest };
  if (kind === 'idx' && rest) return { kind, file: rest };
  throw new Error(`--proxy must be ${PROXY_SPEC_HELP} (got '${spec}')`);
}

export function parseValidationSpec(spec: string): ValidationSpec {
  const [kind, rest] = splitKind(spec);
  if ((kind === 'fashion-mnist' || kind === 'none') && rest === undefined) return { kind };
  if (kind === 'images' && rest) return { kind, dir: rest };
  if (kind === 'idx' && rest) {
    const parts = rest.split(',');
    if (parts.length === 2 && parts[0] && parts[1]) return { kind, images: parts[0], labels: parts[1] };
    throw new Error(`--validation ${spec}: idx needs two files, IMAGES,LABELS`);
  }
  throw new Error(`--validation must be ${VALIDATION_SPEC_HELP} (got '${spec}')`);
}

export interface SourceOptions {
  /** Seed of the held-out rows of fashion-mnist:N. */
  seed: number;
  /** Where the Fashion-MNIST files are (the --data-dir of today). */
  dataDir?: string;
  /** Class names given by the user (--classes). */
  classes?: string[];
  log: (m: string) => void;
  /** Extra options for the Fashion-MNIST loader (tests: download, systemDirs, cacheDir). */
  fashionMnist?: Omit<LoadFashionMnistOptions, 'dir' | 'log'>;
}

export interface LoadedSet {
  dataset: Dataset;
  /** For the proxy set: its id (in /proxy/:id). For validation: a short name. */
  id: string;
  /** One line for the log: what, how many, from where. */
  description: string;
}

export interface ServerData {
  proxy: LoadedSet;
  validation: LoadedSet | null;
  classNames: string[];
  /** The Fashion-MNIST that was loaded, when either set came from it. */
  fashionMnist: FashionMnist | null;
}

const shapeText = (s: readonly number[]) => s.join('×');

/**
 * Loads both sets and settles the class names (see the module comment). `proxy` / `validation` undefined mean the
 * defaults (fashion-mnist with the default size, fashion-mnist's test set).
 */
export async function loadServerData(o: SourceOptions & { proxy?: string; validation?: string }): Promise<ServerData> {
  const proxySpec = parseProxySpec(o.proxy ?? 'fashion-mnist');
  const valSpec = parseValidationSpec(o.validation ?? 'fashion-mnist');
  let fm: Promise<FashionMnist> | null = null;
  const fashionMnist = () => (fm ??= loadFashionMnist({ ...o.fashionMnist, dir: o.dataDir, log: o.log }));
  const usesFm = proxySpec.kind === 'fashion-mnist' || valSpec.kind === 'fashion-mnist';
  if (o.classes && usesFm && o.classes.length !== FASHION_MNIST_CLASSES.length) {
    throw new Error(`--classes names ${o.classes.length} classes but Fashion-MNIST has ${FASHION_MNIST_CLASSES.length}`);
  }

  // The proxy first: its shape is the federation's input shape, which a validation folder is then read at.
  const proxy = await loadProxySet(proxySpec, o, fashionMnist);
  // Names the user or the proxy folder gave are what a validation folder's sub-folders are matched against.
  const proxyMeta =
    proxySpec.kind === 'images' ? await readFolderMeta(resolve(proxySpec.dir)) : proxySpec.kind === 'idx' ? await readFolderMeta(dirname(resolve(proxySpec.file))) : null;
  const given = o.classes ?? proxyMeta?.classes;
  const validation = await loadValidation(valSpec, { ...o, classes: given }, fashionMnist, proxy.dataset.shape);
  const classNames =
    given ??
    validation?.classNames ??
    (usesFm ? [...FASHION_MNIST_CLASSES] : null) ??
    (validation ? Array.from({ length: validation.set.dataset.numClasses }, (_, i) => String(i)) : null);
  if (!classNames) {
    throw new Error(
      `--proxy ${o.proxy}: the number of classes is unknown — give --classes a,b,c, a labelled --validation, ` +
        'or a classes.json in the proxy folder',
    );
  }
  proxy.dataset.numClasses = classNames.length;
  if (validation) {
    const v = validation.set.dataset;
    if (v.shape.join() !== proxy.dataset.shape.join()) {
      throw new Error(`--validation: images are ${shapeText(v.shape)} but the proxy set's are ${shapeText(proxy.dataset.shape)}`);
    }
    if (v.numClasses > classNames.length) {
      throw new Error(`--validation: labels go up to class ${v.numClasses - 1} but there are ${classNames.length} classes (${classNames.join(', ')})`);
    }
    v.numClasses = classNames.length;
  }
  o.log(`data: ${proxy.description}`);
  o.log(`data: ${validation ? validation.set.description : 'validation: none (the student is not scored)'}`);
  o.log(`data: ${classNames.length} classes: ${classNames.join(', ')}`);
  return { proxy, validation: validation?.set ?? null, classNames, fashionMnist: fm ? await fm : null };
}

/** The proxy set of `spec` (its numClasses is provisional until the class names are settled, see loadServerData). */
export async function loadProxySet(
  specOrText: ProxySpec | string,
  o: SourceOptions,
  fashionMnist: () => Promise<FashionMnist> = () => loadFashionMnist({ ...o.fashionMnist, dir: o.dataDir, log: o.log }),
): Promise<LoadedSet> {
  const spec = typeof specOrText === 'string' ? parseProxySpec(specOrText) : specOrText;
  const numClasses = o.classes?.length ?? FASHION_MNIST_CLASSES.length;
  if (spec.kind === 'fashion-mnist') {
    const data = await fashionMnist();
    const size = fitProxySize({ requested: spec.size, trainCount: data.train.count, isSubset: data.isSubset, log: o.log, flag: '--proxy' });
    // The same held-out rows `fedistill simulate` and `fedistill split` use for this seed; labels are dropped.
    const dataset: Dataset = { ...subset(data.train, proxyRows(data.train.count, size, o.seed)), labels: null };
    return {
      dataset,
      id: `fashion-mnist-${dataset.count}`,
      description: `proxy: ${dataset.count} Fashion-MNIST training images held out (seed ${o.seed}) from ${data.source}${data.isSubset ? ' (SUBSET)' : ''}`,
    };
  }
  if (spec.kind === 'images') {
    const dir = resolve(spec.dir);
    requireFolder(dir, `--proxy images:${spec.dir}`);
    const { dataset } = await readUnlabelledImageFolder(dir, numClasses, { log: o.log });
    return { dataset, id: `images-${idPart(dir)}-${dataset.count}`, description: `proxy: ${dataset.count} unlabelled images (${shapeText(dataset.shape)}) from ${dir}` };
  }
  const file = resolve(spec.file);
  const dataset = await readIdxImages(file, numClasses, `--proxy idx:${spec.file}`);
  return { dataset: { ...dataset, labels: null }, id: `idx-${idPart(file)}-${dataset.count}`, description: `proxy: ${dataset.count} images (${shapeText(dataset.shape)}) from idx file ${file}` };
}

/** The labelled validation set of `spec`, or null for 'none'; images are read at `shape` (the proxy's). */
export async function loadValidationSet(
  specOrText: ValidationSpec | string,
  o: SourceOptions & { shape?: [number, number, number] },
): Promise<LoadedSet | null> {
  const spec = typeof specOrText === 'string' ? parseValidationSpec(specOrText) : specOrText;
  const got = await loadValidation(spec, o, () => loadFashionMnist({ ...o.fashionMnist, dir: o.dataDir, log: o.log }), o.shape);
  return got?.set ?? null;
}

async function loadValidation(
  spec: ValidationSpec,
  o: SourceOptions,
  fashionMnist: () => Promise<FashionMnist>,
  shape: [number, number, number] | undefined,
): Promise<{ set: LoadedSet; classNames: string[] | null } | null> {
  if (spec.kind === 'none') return null;
  if (spec.kind === 'fashion-mnist') {
    const data = await fashionMnist();
    return {
      set: { dataset: data.test, id: 'fashion-mnist-test', description: `validation: ${data.test.count} Fashion-MNIST test images from ${data.source}${data.isSubset ? ' (SUBSET)' : ''}` },
      classNames: null,
    };
  }
  if (spec.kind === 'images') {
    const dir = resolve(spec.dir);
    requireFolder(dir, `--validation images:${spec.dir}`);
    const meta = await readFolderMeta(dir);
    const got = await readLabelledImageFolder(dir, { classes: o.classes, shape: shape ?? meta?.shape ?? DEFAULT_IMAGE_SHAPE, log: o.log });
    return {
      set: { dataset: got.dataset, id: `images-${idPart(dir)}`, description: `validation: ${got.dataset.count} labelled images (${shapeText(got.dataset.shape)}) from ${dir}` },
      classNames: got.classNames,
    };
  }
  const [images, labels] = [resolve(spec.images), resolve(spec.labels)];
  const dataset = await readIdxLabelled(images, labels, o.classes?.length, `--validation idx:${spec.images},${spec.labels}`);
  return { set: { dataset, id: `idx-${idPart(images)}`, description: `validation: ${dataset.count} labelled images (${shapeText(dataset.shape)}) from idx files ${images}, ${labels}` }, classNames: null };
}
