/**
 * A client's private, labelled data from a folder (it stays on the client's machine). Two formats, detected:
 *   idx     train-images-idx3-ubyte(.gz) + train-labels-idx1-ubyte(.gz), and, if present, t10k-* as a local
 *           evaluation set
 *   images  one sub-folder of images per class (PNG, JPEG, WebP …), decoded like the browser join page does
 * For images the class of a sub-folder is found by name (or number) among: --classes, else the folder's classes.json
 * (`fedistill split` writes one), else the server's class names (GET /federation), else the sorted folder names.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { datasetFromIdx } from '../../shared/data/idx.ts';
import type { Dataset } from '../../shared/data/dataset.ts';
import { findFile, readMaybeGz } from '../../datasets/fashion-mnist.ts';
import { readFolderMeta, readLabelledImageFolder } from '../../datasets/image-folder.ts';

export type PrivateDataFormat = 'idx' | 'images';

export interface PrivateData {
  train: Dataset;
  eval: Dataset | null;
  format: PrivateDataFormat;
  /** The class names the labels index (images: as matched; idx: from --classes or classes.json, else null). */
  classNames: string[] | null;
}

export interface PrivateDataOptions {
  /** --classes. */
  classes?: string[];
  /** The aggregator's URL: where an image folder without classes.json learns the class names and input shape. */
  serverUrl?: string;
  /** How long to keep asking a server that is not up yet (ms). Default 30000. */
  serverWaitMs?: number;
  log?: (m: string) => void;
}

const IDX_TRAIN = ['train-images-idx3-ubyte', 'train-labels-idx1-ubyte'] as const;

/** Which format `dir` holds; throws a message naming both when it is neither. */
export function detectDataFormat(dir: string): PrivateDataFormat {
  if (!existsSync(dir)) throw new Error(`--data-dir ${dir}: folder not found`);
  if (!statSync(dir).isDirectory()) throw new Error(`--data-dir ${dir}: not a folder`);
  if (findFile(dir, IDX_TRAIN[0]) || findFile(dir, IDX_TRAIN[1])) return 'idx';
  const subdirs = readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory() && !e.name.startsWith('.'));
  if (subdirs.length > 0) return 'images';
  throw new Error(
    `--data-dir ${dir} holds neither idx files (${IDX_TRAIN.map((f) => `${f}(.gz)`).join(' + ')}) ` +
      'nor class sub-folders of images (DIR/<class>/*.png|jpg|webp…)',
  );
}

/** The server's class names and input shape from GET /federation, retried while it starts; null if it never answers. */
export async function fetchFederation(url: string, waitMs: number, log: (m: string) => void): Promise<{ classNames: string[]; inputShape: [number, number, number] } | null> {
  const deadline = Date.now() + waitMs;
  let said = false;
  for (;;) {
    try {
      const res = await fetch(new URL('/federation', url), { signal: AbortSignal.timeout(5000) });
      if (res.ok) {
        const f = (await res.json()) as { classNames?: string[]; student?: { inputShape?: [number, number, number] } };
        if (Array.isArray(f.classNames) && f.student?.inputShape) return { classNames: f.classNames, inputShape: f.student.inputShape };
        return null;
      }
    } catch {
      /* not up yet */
    }
    if (Date.now() >= deadline) return null;
    if (!said) log(`data: waiting for ${url}/federation to learn the class names …`);
    said = true;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

export async function loadPrivateData(dirArg: string, o: PrivateDataOptions = {}): Promise<PrivateData> {
  const log = o.log ?? (() => {});
  const dir = resolve(dirArg);
  const format = detectDataFormat(dir);
  const meta = await readFolderMeta(dir);
  const given = o.classes ?? meta?.classes;
  if (format === 'idx') {
    const read = async (prefix: string): Promise<Dataset | null> => {
      const img = findFile(dir, `${prefix}-images-idx3-ubyte`);
      const lab = findFile(dir, `${prefix}-labels-idx1-ubyte`);
      if (!img || !lab) return null;
      try {
        return datasetFromIdx(await readMaybeGz(img), await readMaybeGz(lab), given?.length ?? 10);
      } catch (e) {
        throw new Error(`${img}: ${(e as Error).message}`);
      }
    };
    const train = await read('train');
    if (!train) throw new Error(`${dir} must hold train-images-idx3-ubyte(.gz) and train-labels-idx1-ubyte(.gz): the client's private, labelled data`);
    const evalSet = await read('t10k');
    log(`data: ${dir}: idx files, ${train.count} labelled images${evalSet ? ` (+ ${evalSet.count} t10k images to measure on)` : ''}`);
    return { train, eval: evalSet, format, classNames: given ?? null };
  }
  let classes = given;
  let shape = meta?.shape;
  if (!classes && o.serverUrl) {
    const fed = await fetchFederation(o.serverUrl, o.serverWaitMs ?? 30000, log);
    if (fed) {
      log(`data: class names from ${o.serverUrl}/federation: ${fed.classNames.join(', ')}`);
      classes = fed.classNames;
      shape ??= fed.inputShape;
    } else log(`data: ${o.serverUrl}/federation did not answer; the classes are the sorted folder names`);
  }
  log(`data: ${dir}: class sub-folders of images`);
  const got = await readLabelledImageFolder(dir, { classes, shape, log });
  const counts = got.classNames.map((_, i) => got.dataset.labels!.filter((y) => y === i).length);
  const perClass = got.classNames.flatMap((c, i) => (counts[i] > 0 ? [`${c} ${counts[i]}`] : []));
  log(`data: ${got.dataset.count} labelled images: ${perClass.join(', ')}`);
  return { train: got.dataset, eval: null, format, classNames: got.classNames };
}
