/**
 * Splitting a labelled dataset across federated clients. Every function returns one index list per client;
 * dirichlet / shard / iid partitions are disjoint covers of 0..count-1 (every index used exactly once).
 */
import { Rng, makeRng } from './rng.ts';

export interface DirichletOptions {
  /** Resample until every client has at least this many samples (NIID-Bench uses 10). Default 10. */
  minPerClient?: number;
  /** Give up after this many draws. Default 1000. */
  maxRetries?: number;
  /** Number of classes; default max(label) + 1. */
  numClasses?: number;
}

function checkClients(numClients: number) {
  if (!Number.isInteger(numClients) || numClients < 1) throw new Error(`partition: numClients must be a positive integer, got ${numClients}`);
}

function indicesByClass(labels: ArrayLike<number>, numClasses: number): number[][] {
  const byClass: number[][] = Array.from({ length: numClasses }, () => []);
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i];
    if (y >= numClasses) throw new Error(`partition: label ${y} at index ${i} is out of range for ${numClasses} classes`);
    byClass[y].push(i);
  }
  return byClass;
}

function maxLabel(labels: ArrayLike<number>): number {
  let m = -1;
  for (let i = 0; i < labels.length; i++) if (labels[i] > m) m = labels[i];
  return m;
}

/**
 * Label-skewed partition as in NIID-Bench (Li et al. 2021): for each class, draw client proportions
 * p ~ Dir(alpha·1) and split that class's (shuffled) samples accordingly; clients that already hold
 * ≥ count/numClients samples get no more (the NIID-Bench balancing step). Redraws everything until every
 * client has ≥ minPerClient samples, at most maxRetries times, then throws.
 * Smaller alpha → more skew (alpha → ∞ approaches IID). Each client's list is shuffled.
 */
export function dirichletPartition(
  labels: ArrayLike<number>,
  numClients: number,
  alpha: number,
  rngOrSeed: Rng | number | string,
  opts: DirichletOptions = {},
): number[][] {
  checkClients(numClients);
  if (!(alpha > 0) || !Number.isFinite(alpha)) throw new Error(`dirichletPartition: alpha must be a positive number, got ${alpha}`);
  const rng = makeRng(rngOrSeed);
  const n = labels.length;
  const minPerClient = opts.minPerClient ?? 10;
  const maxRetries = opts.maxRetries ?? 1000;
  if (minPerClient * numClients > n) {
    throw new Error(
      `dirichletPartition: cannot give ${numClients} clients ≥ ${minPerClient} samples each from ${n} samples`,
    );
  }
  const numClasses = opts.numClasses ?? maxLabel(labels) + 1;
  const byClass = indicesByClass(labels, numClasses);
  const cap = n / numClients;

  let bestMin = -1;
  for (let attempt = 1; attempt <= maxRetries; attempt++) {
    const parts: number[][] = Array.from({ length: numClients }, () => []);
    for (const cls of byClass) {
      if (cls.length === 0) continue;
      const idx = rng.shuffle(cls.slice());
      let p = rng.dirichlet(alpha, numClients);
      const masked = p.map((q, j) => (parts[j].length < cap ? q : 0));
      const s = masked.reduce((a, b) => a + b, 0);
      if (s > 0) p = masked.map((q) => q / s);
      // cut points floor(cumsum(p) · len), as np.split in NIID-Bench
      let cum = 0;
      let start = 0;
      for (let j = 0; j < numClients; j++) {
        cum += p[j];
        const end = j === numClients - 1 ? idx.length : Math.min(idx.length, Math.floor(cum * idx.length));
        for (let k = start; k < end; k++) parts[j].push(idx[k]);
        start = Math.max(start, end);
      }
    }
    const min = Math.min(...parts.map((q) => q.length));
    bestMin = Math.max(bestMin, min);
    if (min >= minPerClient) {
      for (const q of parts) rng.shuffle(q);
      return parts;
    }
  }
  throw new Error(
    `dirichletPartition: after ${maxRetries} draws some client still had < ${minPerClient} samples ` +
      `(best smallest client: ${bestMin}; alpha=${alpha}, ${numClients} clients, ${n} samples). ` +
      `Use a larger alpha, fewer clients or a smaller minPerClient.`,
  );
}

/**
 * Pathological non-IID partition (McMahan et al. 2017): sort the indices by label (random order within a
 * class), cut them into numClients·shardsPerClient contiguous shards of near-equal size, deal each client
 * shardsPerClient random shards. A client sees about shardsPerClient classes (more when a shard straddles a
 * class boundary). Each client's list is shuffled.
 */
export function shardPartition(
  labels: ArrayLike<number>,
  numClients: number,
  shardsPerClient: number,
  rngOrSeed: Rng | number | string,
): number[][] {
  checkClients(numClients);
  if (!Number.isInteger(shardsPerClient) || shardsPerClient < 1) {
    throw new Error(`shardPartition: shardsPerClient must be a positive integer, got ${shardsPerClient}`);
  }
  const rng = makeRng(rngOrSeed);
  const n = labels.length;
  const numShards = numClients * shardsPerClient;
  if (numShards > n) throw new Error(`shardPartition: ${numShards} shards need at least that many samples, got ${n}`);
  const byClass = indicesByClass(labels, maxLabel(labels) + 1);
  const sorted: number[] = [];
  for (const cls of byClass) sorted.push(...rng.shuffle(cls.slice()));
  const shardOrder = rng.permutation(numShards);
  const parts: number[][] = Array.from({ length: numClients }, () => []);
  for (let s = 0; s < numShards; s++) {
    const shard = shardOrder[s];
    const start = Math.floor((shard * n) / numShards);
    const end = Math.floor(((shard + 1) * n) / numShards);
    const client = Math.floor(s / shardsPerClient);
    for (let k = start; k < end; k++) parts[client].push(sorted[k]);
  }
  for (const q of parts) rng.shuffle(q);
  return parts;
}

/** IID partition: a random permutation of 0..count-1 cut into numClients near-equal parts. */
export function iidPartition(count: number, numClients: number, rngOrSeed: Rng | number | string): number[][] {
  checkClients(numClients);
  const perm = makeRng(rngOrSeed).permutation(count);
  const parts: number[][] = [];
  for (let j = 0; j < numClients; j++) {
    parts.push(perm.slice(Math.floor((j * count) / numClients), Math.floor(((j + 1) * count) / numClients)));
  }
  return parts;
}

/** Number of samples of each class among `labels[indices]`. */
export function classHistogram(labels: ArrayLike<number>, indices: ArrayLike<number>, numClasses: number): number[] {
  const h = new Array<number>(numClasses).fill(0);
  for (let i = 0; i < indices.length; i++) {
    const y = labels[indices[i]];
    if (y >= numClasses) throw new Error(`classHistogram: label ${y} out of range for ${numClasses} classes`);
    h[y]++;
  }
  return h;
}

/** Shannon entropy (nats) of a histogram; 0 for an empty one. */
export function histogramEntropy(hist: readonly number[]): number {
  const total = hist.reduce((a, b) => a + b, 0);
  if (total === 0) return 0;
  let e = 0;
  for (const c of hist) if (c > 0) e -= (c / total) * Math.log(c / total);
  return e;
}

/** A summary for logs: client sizes, classes per client, mean label entropy (nats; ln(numClasses) = uniform). */
export function partitionStats(labels: ArrayLike<number>, parts: number[][], numClasses: number) {
  const sizes = parts.map((p) => p.length);
  const hists = parts.map((p) => classHistogram(labels, p, numClasses));
  const classesPerClient = hists.map((h) => h.filter((c) => c > 0).length);
  const entropies = hists.map(histogramEntropy);
  return {
    sizes,
    minSize: Math.min(...sizes),
    maxSize: Math.max(...sizes),
    classesPerClient,
    meanClassesPerClient: classesPerClient.reduce((a, b) => a + b, 0) / parts.length,
    meanEntropy: entropies.reduce((a, b) => a + b, 0) / parts.length,
  };
}
