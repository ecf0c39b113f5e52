/**
 * idx files on Node (MNIST's format; .gz or not): an images file (idx3 [n, h, w] or idx4 [n, h, w, c], unsigned bytes)
 * and, for labelled data, a labels file (idx1 [n]). Parsing is shared/data/idx.ts; this adds the files.
 */
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { Dataset } from '../shared/data/dataset.ts';
import { datasetFromIdx, datasetToIdx } from '../shared/data/idx.ts';
import { readMaybeGz } from './fashion-mnist.ts';

async function readFileNamed(path: string, what: string): Promise<Uint8Array> {
  if (!existsSync(path)) throw new Error(`${what}: file not found`);
  try {
    return await readMaybeGz(path);
  } catch (e) {
    throw new Error(`${what}: cannot read (${(e as Error).message})`);
  }
}

/** An unlabelled images file (a proxy set); `numClasses` is the federation's. */
export async function readIdxImages(path: string, numClasses: number, what = path): Promise<Dataset> {
  const bytes = await readFileNamed(path, what);
  try {
    return datasetFromIdx(bytes, null, numClasses);
  } catch (e) {
    throw new Error(`${what}: ${(e as Error).message}`);
  }
}

/**
 * An images file and its labels file. `numClasses` default: the largest label + 1 (the class names are then the
 * numbers); a label at or above a given `numClasses` is an error naming its row.
 */
export async function readIdxLabelled(imagesPath: string, labelsPath: string, numClasses?: number, what = `${imagesPath},${labelsPath}`): Promise<Dataset> {
  const [images, labels] = await Promise.all([readFileNamed(imagesPath, `${what}: ${imagesPath}`), readFileNamed(labelsPath, `${what}: ${labelsPath}`)]);
  let ds: Dataset;
  try {
    ds = datasetFromIdx(images, labels, numClasses ?? 256);
  } catch (e) {
    throw new Error(`${what}: ${(e as Error).message}`);
  }
  if (numClasses === undefined) {
    let max = 0;
    for (const y of ds.labels!) if (y > max) max = y;
    ds.numClasses = max + 1;
  }
  return ds;
}

/** Writes `<dir>/<prefix>-images-idx3-ubyte.gz` (+ labels when the dataset has them); returns the paths. */
export async function writeIdx(dir: string, prefix: string, ds: Dataset): Promise<{ images: string; labels: string | null }> {
  await mkdir(dir, { recursive: true });
  const enc = datasetToIdx(ds);
  const images = join(dir, `${prefix}-images-idx3-ubyte.gz`);
  await writeFile(images, gzipSync(enc.images));
  let labels: string | null = null;
  if (enc.labels) {
    labels = join(dir, `${prefix}-labels-idx1-ubyte.gz`);
    await writeFile(labels, gzipSync(enc.labels));
  }
  return { images, labels };
}
