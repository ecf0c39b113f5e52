/**
 * The centralized ceiling: the student's architecture trained on the pooled private data of every simulated client,
 * as if the data had never been split. No federated method that trains the same architecture on the same rows can be
 * expected to beat it, so `simulate --strategy compare` reports it next to the federated runs.
 *
 * It is kept honest by sharing everything with the federation but the split itself:
 *   - rows: exactly the union of the clients' partitions (splitForFederation with the same seed, partition, α and
 *     client count), i.e. the training set minus the proxy hold-out — the proxy rows are not used, as no client has
 *     their labels;
 *   - model: buildModel(student) with the seed the server's student starts from;
 *   - optimizer: the clients' Adam at their learning rate and batch size, plain cross-entropy (on pooled, nearly
 *     balanced data the clients' logit adjustment CE(z + log π) shifts every logit by about the same constant, so it
 *     would change nothing), no augmentation — the clients use none either;
 *   - evaluation: the same test set the student is scored on, after every epoch. Nothing is tuned on it: the number of
 *     epochs is fixed beforehand, and both the final and the best accuracy are reported (best-on-test is the
 *     optimistic figure, and the one a federated run's "best" is compared with).
 */
import * as tf from '@tensorflow/tfjs';
import { subset } from '../shared/data/dataset.ts';
import { Rng } from '../shared/data/rng.ts';
import { splitForFederation, type FederatedSplit } from '../shared/data/federated-split.ts';
import { buildModel, countParams } from '../shared/models/builders.ts';
import { evaluateAccuracy, trainSupervised } from '../shared/models/training.ts';
import { initBackend } from '../shared/compute/backend.ts';
import { checkConfig } from '../shared/settings/index.ts';
import { loadFashionMnist } from '../datasets/fashion-mnist.ts';
import { fitProxySize } from '../datasets/proxy-size.ts';
import { DEFAULT_SIMULATION, type SimulationInput } from './simulate.ts';

export interface CentralizedEpoch {
  epoch: number;
  /** Accuracy on the test set after this epoch. */
  accuracy: number;
  trainLoss: number;
  /** Running accuracy on the training batches during the epoch (the model changes as it goes). */
  trainAccuracy: number;
  trainSeconds: number;
  evalSeconds: number;
  /** Seconds since training started, at the end of this epoch's evaluation. */
  elapsedSeconds: number;
}

export interface CentralizedResult {
  options: {
    student: string;
    epochs: number;
    learningRate: number;
    batchSize: number;
    seed: number;
    clients: number;
    partition: string;
    alpha: number;
    shardsPerClient: number;
    proxySize: number;
  };
  data: {
    source: string;
    isSubset: boolean;
    /** Pooled training rows: the sum of clientSizes, the training set minus the proxy hold-out. */
    train: number;
    /** Rows of the whole training set, proxy hold-out included. */
    trainSet: number;
    proxy: number;
    test: number;
    clientSizes: number[];
  };
  backend: string;
  studentParams: number;
  epochs: CentralizedEpoch[];
  finalAccuracy?: number;
  bestAccuracy?: number;
  /** The first epoch at which the test accuracy reached each target, and the seconds from the start of training. */
  timeToAccuracy: { target: number; epoch: number | null; seconds: number | null }[];
  /** Wall seconds of the whole run: data, backend, training and evaluation. */
  seconds: number;
}

/** The rows of every client's partition, pooled and sorted: what the ceiling trains on. Throws if they overlap. */
export function pooledRows(split: FederatedSplit): Uint32Array {
  const total = split.clients.reduce((n, c) => n + c.length, 0);
  const rows = new Uint32Array(total);
  let off = 0;
  for (const c of split.clients) (rows.set(c, off), (off += c.length));
  rows.sort();
  for (let i = 1; i < rows.length; i++) if (rows[i] === rows[i - 1]) throw new Error(`row ${rows[i]} is in two clients' partitions`);
  return rows;
}

/**
 * Train the student architecture on the pooled client data for `epochs` epochs, scoring it on the test set after
 * each. Takes simulate's options (the ones given; the rest default as in runSimulation, proxy size scaled alike).
 */
export async function runCentralized(opts: SimulationInput & { epochs: number }): Promise<CentralizedResult> {
  const { epochs, ...given } = opts;
  if (!Number.isInteger(epochs) || epochs < 1) throw new RangeError(`the centralized ceiling needs ≥ 1 epoch, got ${epochs}`);
  checkConfig('simulate', given as Record<string, unknown>);
  const o = { ...DEFAULT_SIMULATION, ...given };
  const log = o.log;
  const t0 = performance.now();
  const backend = await initBackend({ prefer: (o.backend as never) ?? undefined, log });
  const data = await loadFashionMnist({ dir: o.dataDir, log });
  // The same hold-out runSimulation makes (a size the caller gave is kept, the default scaled on a smaller set).
  const proxySize = fitProxySize({ requested: given.proxySize, trainCount: data.train.count, isSubset: data.isSubset, log, flag: '--proxy-size' });
  const split = splitForFederation(data.train, { proxySize, numClients: o.clients, partition: o.partition, alpha: o.alpha, shardsPerClient: o.shardsPerClient, seed: o.seed });
  const pooled = subset(data.train, pooledRows(split));
  const model = buildModel({ kind: o.student, inputShape: data.train.shape, numClasses: data.train.numClasses, seed: o.seed });
  const studentParams = countParams(model);
  const optimizer = tf.train.adam(o.learningRate);
  const rng = new Rng(`centralized/${o.seed}`);
  log(
    `centralized ceiling: student ${o.student} (${studentParams} params) on the pooled data of ${o.clients} clients (${pooled.count} images = ` +
      `${data.train.count} − ${proxySize} proxy), Adam lr ${o.learningRate}, batch ${o.batchSize}, ${epochs} epoch(s), backend ${backend.name}`,
  );
  const rows: CentralizedEpoch[] = [];
  const started = performance.now();
  try {
    for (let e = 1; e <= epochs; e++) {
      const train = await trainSupervised(model, optimizer, pooled, { epochs: 1, batchSize: o.batchSize, random: () => rng.next() });
      const tEval = performance.now();
      const accuracy = await evaluateAccuracy(model, data.test);
      const evalSeconds = (performance.now() - tEval) / 1000;
      const row: CentralizedEpoch = {
        epoch: e,
        accuracy,
        trainLoss: train.loss,
        trainAccuracy: train.accuracy,
        trainSeconds: train.seconds,
        evalSeconds,
        elapsedSeconds: (performance.now() - started) / 1000,
      };
      rows.push(row);
      log(`centralized epoch ${e}/${epochs}: test accuracy ${(100 * accuracy).toFixed(2)}% (train loss ${train.loss.toFixed(4)}), ${row.trainSeconds.toFixed(1)} s train + ${evalSeconds.toFixed(1)} s eval`);
    }
  } finally {
    optimizer.dispose();
    model.dispose();
  }
  const accs = rows.map((r) => r.accuracy);
  return {
    options: {
      student: o.student,
      epochs,
      learningRate: o.learningRate,
      batchSize: o.batchSize,
      seed: o.seed,
      clients: o.clients,
      partition: o.partition,
      alpha: o.alpha,
      shardsPerClient: o.shardsPerClient,
      proxySize,
    },
    data: {
      source: data.source,
      isSubset: data.isSubset,
      train: pooled.count,
      trainSet: data.train.count,
      proxy: split.proxy.length,
      test: data.test.count,
      clientSizes: split.clients.map((c) => c.length),
    },
    backend: backend.name,
    studentParams,
    epochs: rows,
    finalAccuracy: accs.at(-1),
    bestAccuracy: accs.length ? Math.max(...accs) : undefined,
    timeToAccuracy: o.accuracyTargets.map((target) => {
      const hit = rows.find((r) => r.accuracy >= target);
      return { target, epoch: hit?.epoch ?? null, seconds: hit?.elapsedSeconds ?? null };
    }),
    seconds: (performance.now() - t0) / 1000,
  };
}
