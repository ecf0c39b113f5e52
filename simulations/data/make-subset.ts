/**
 * Rebuilds the committed Fashion-MNIST subset in data/fashion-mnist-subset/ from the full dataset:
 * 600 training images per class (6000) and 200 test images per class (2000), chosen with a fixed seed,
 * kept in their original order, written as gzip-compressed IDX files. Reproducible: same input → same bytes.
 *
 *   node --import tsx simulations/data/make-subset.ts [sourceDir]   (default /usr/share/datasets/fashion-mnist)
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { gzipSync, constants } from 'node:zlib';
import { subset, type Dataset } from '../../shared/data/dataset.ts';
import { datasetToIdx } from '../../shared/data/idx.ts';
import { Rng } from '../../shared/data/rng.ts';
import {
  DEBIAN_FASHION_MNIST_DIR,
  FASHION_MNIST_FILES,
  loadFromDir,
  resolveRepoPath,
} from '../../datasets/fashion-mnist.ts';

export const SUBSET_SEED = 20170828; // the Fashion-MNIST arXiv date
export const TRAIN_PER_CLASS = 600;
export const TEST_PER_CLASS = 200;
const MAX_BYTES = 5 * 1024 * 1024;

/** `perClass` indices of each class chosen at random (fixed rng), returned in ascending order. */
export function balancedIndices(ds: Dataset, perClass: number, rng: Rng): number[] {
  const chosen: number[] = [];
  for (let c = 0; c < ds.numClasses; c++) {
    const idx: number[] = [];
    for (let i = 0; i < ds.count; i++) if (ds.labels![i] === c) idx.push(i);
    if (idx.length < perClass) throw new Error(`class ${c} has only ${idx.length} samples, need ${perClass}`);
    chosen.push(...rng.shuffle(idx).slice(0, perClass));
  }
  return chosen.sort((a, b) => a - b);
}

async function main() {
  const src = process.argv[2] ?? DEBIAN_FASHION_MNIST_DIR;
  const outDir = resolveRepoPath('data', 'fashion-mnist-subset');
  const full = await loadFromDir(src, { train: 60000, test: 10000 });
  const rng = new Rng(SUBSET_SEED);
  const train = subset(full.train, balancedIndices(full.train, TRAIN_PER_CLASS, rng));
  const test = subset(full.test, balancedIndices(full.test, TEST_PER_CLASS, rng));
  await mkdir(outDir, { recursive: true });
  const gz = (b: Uint8Array) => gzipSync(b, { level: constants.Z_BEST_COMPRESSION });
  const tr = datasetToIdx(train);
  const te = datasetToIdx(test);
  const files: [string, Uint8Array][] = [
    [FASHION_MNIST_FILES[0], tr.images],
    [FASHION_MNIST_FILES[1], tr.labels!],
    [FASHION_MNIST_FILES[2], te.images],
    [FASHION_MNIST_FILES[3], te.labels!],
  ];
  let total = 0;
  for (const [name, bytes] of files) {
    const z = gz(bytes);
    await writeFile(join(outDir, `${name}.gz`), z);
    total += z.length;
    console.log(`${name}.gz: ${z.length} bytes (${bytes.length} uncompressed)`);
  }
  console.log(`subset: ${train.count} train / ${test.count} test images in ${outDir}`);
  console.log(`total compressed size: ${total} bytes (${(total / 1024 / 1024).toFixed(2)} MiB; limit 5 MiB)`);
  if (total > MAX_BYTES) {
    console.error('subset is larger than 5 MiB');
    process.exit(1);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
}
