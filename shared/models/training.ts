import * as tf from '@tensorflow/tfjs';
import type { Dataset } from '../data/dataset.ts';
import { continualDistillLoss } from '../distill/continual-loss.ts';
import { notTrueDistillation } from '../distill/ntd-loss.ts';
import { mutualLoss } from '../distill/mutual-loss.ts';
import { accuracy } from '../metrics.ts';
import { augmentBatch, type AugmentOptions } from '../data/augment.ts';

/** Images (0..255 bytes) → float tensor in [0,1], NHWC. */
export function imagesToTensor(images: Uint8Array, count: number, shape: [number, number, number]): tf.Tensor4D {
  const f = new Float32Array(images.length);
  for (let i = 0; i < images.length; i++) f[i] = images[i] / 255;
  return tf.tensor4d(f, [count, ...shape]);
}

/**
 * Let the event loop breathe between batches so sockets keep heartbeating during long training. In Node this must be
 * setImmediate: several clients in one process re-arming setTimeout(0) after each long batch keep Node's timers phase
 * busy (it re-reads the clock and runs newly expired timers), starving socket I/O until pings time out. Browsers run
 * timers and network events as separate tasks, so setTimeout is fine there.
 */
// Read through globalThis: this module also runs in browsers, which have no setImmediate (nor its Node typing).
const setImmediateIfAny = (globalThis as { setImmediate?: (callback: () => void) => unknown }).setImmediate;
const breathe: () => Promise<void> = setImmediateIfAny
  ? () => new Promise<void>((r) => setImmediateIfAny(r))
  : () => new Promise<void>((r) => setTimeout(r, 0));

/** Called after every batch: where a long local step is (for progress bars). `done`/`total` count batches. */
export type ProgressFn = (p: { epoch: number; epochs: number; done: number; total: number }) => void;

export interface TrainResult {
  loss: number;
  accuracy: number;
  seconds: number;
  samples: number;
}

export interface BatchSource {
  count: number;
  shape: [number, number, number];
  images: Uint8Array;
}

/**
 * Shuffled mini-batches gathered on the JS side: each batch becomes its own tensor, because wasm Slice copies the
 * whole source tensor on every call (measured: the gather is cheaper than a slice of the full set).
 */
function* batches(
  src: BatchSource,
  batchSize: number,
  order: Uint32Array,
  augment?: { options: AugmentOptions; random: () => number },
): Generator<{ x: tf.Tensor4D; rows: Uint32Array }> {
  for (const { x, rows } of batchArrays(src, batchSize, order, augment)) yield { x: tf.tensor4d(x, [rows.length, ...src.shape]), rows };
}

/**
 * The batches of `order` as plain arrays: each batch's pixels scaled to [0, 1], then augmented (drawing from
 * `augment.random` in row order). The one definition of a batch: the single-thread loops here and the data-parallel
 * distillation (server/strategies/parallel-distill.ts) both take theirs from it, so they see the same inputs.
 */
export function* batchArrays(
  src: BatchSource,
  batchSize: number,
  order: Uint32Array,
  augment?: { options: AugmentOptions; random: () => number },
): Generator<{ x: Float32Array; rows: Uint32Array }> {
  const size = src.shape[0] * src.shape[1] * src.shape[2];
  for (let start = 0; start < order.length; start += batchSize) {
    const rows = order.subarray(start, Math.min(order.length, start + batchSize));
    const x = new Float32Array(rows.length * size);
    for (let i = 0; i < rows.length; i++) {
      const base = rows[i] * size;
      for (let j = 0; j < size; j++) x[i * size + j] = src.images[base + j] / 255;
    }
    if (augment) augmentBatch(x, rows.length, src.shape, augment.random, augment.options);
    yield { x, rows };
  }
}

export function shuffledOrder(n: number, random: () => number): Uint32Array {
  const o = new Uint32Array(n);
  for (let i = 0; i < n; i++) o[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const t = o[i];
    o[i] = o[j];
    o[j] = t;
  }
  return o;
}

/**
 * Supervised training with softmax cross-entropy on labelled (private) data.
 * `logPrior` (log of the local label distribution) turns on the logit-adjusted loss CE(z + log π) (Menon et al. 2021;
 * FedLC/FedRS in federated learning): the model's raw logits then estimate the label-balanced posterior, so a client
 * whose data is skewed doesn't learn to suppress the classes it rarely sees, and its proxy logits are far less biased.
 */
export async function trainSupervised(
  model: tf.LayersModel,
  optimizer: tf.Optimizer,
  data: Dataset,
  opts: {
    epochs: number;
    batchSize: number;
    random: () => number;
    logPrior?: Float32Array;
    /** A frozen copy of the global model to keep not-true-class knowledge from (FedNTD), with its weight β. */
    anchor?: { model: tf.LayersModel; beta: number; temperature: number };
    /**
     * Mutual learning: proxy rows with the student's probabilities at `temperature` (row i of `probs` for row i of
     * `src`). Each private batch is paired with the next proxy batch and the loss gains β·T²·KL(p_student ‖ p_client).
     */
    mimic?: { src: BatchSource; probs: Float32Array; beta: number; temperature: number; numClasses: number };
    onProgress?: ProgressFn;
  },
): Promise<TrainResult> {
  if (!data.labels) throw new Error('trainSupervised needs labels');
  const perEpoch = Math.ceil(data.count / opts.batchSize);
  let done = 0;
  const labels = data.labels;
  const prior = opts.logPrior ? tf.tensor1d(opts.logPrior) : null;
  const anchor = opts.anchor && opts.anchor.beta > 0 ? opts.anchor : null;
  const mimic = opts.mimic && opts.mimic.beta > 0 && opts.mimic.src.count > 0 ? opts.mimic : null;
  const proxyBatches = mimic ? cycledBatches(mimic.src, opts.batchSize, opts.random) : null;
  const t0 = performance.now();
  let lossSum = 0;
  let correct = 0;
  let seen = 0;
  for (let e = 0; e < opts.epochs; e++) {
    for (const { x, rows } of batches(data, opts.batchSize, shuffledOrder(data.count, opts.random))) {
      const y = tf.tensor1d(Array.from(rows, (r) => labels[r]), 'int32');
      const onehot = tf.oneHot(y, data.numClasses);
      let logitsOut: tf.Tensor | null = null;
      const zGlobal = anchor ? tf.tidy(() => anchor.model.apply(x, { training: false }) as tf.Tensor2D) : null;
      const pb = proxyBatches?.next().value;
      const studentProbs = pb ? tf.tensor2d(gatherRows(mimic!.probs, pb.rows, mimic!.numClasses), [pb.rows.length, mimic!.numClasses]) : null;
      const loss = optimizer.minimize(() => {
        const z = model.apply(x, { training: true }) as tf.Tensor2D;
        logitsOut = tf.keep(z.argMax(1));
        if (pb) {
          const zProxy = model.apply(pb.x, { training: true }) as tf.Tensor2D;
          return mutualLoss(z, onehot as tf.Tensor2D, zProxy, studentProbs!, { beta: mimic!.beta, temperature: mimic!.temperature, logPrior: prior ?? undefined });
        }
        const ce = tf.losses.softmaxCrossEntropy(onehot, prior ? z.add(prior) : z) as tf.Scalar;
        return anchor ? ce.add(notTrueDistillation(z, zGlobal!, onehot as tf.Tensor2D, anchor.temperature).mul(anchor.beta)) : ce;
      }, true)!;
      zGlobal?.dispose();
      if (pb) tf.dispose([pb.x, studentProbs!]);
      lossSum += (await loss.data())[0] * rows.length;
      const pred = await logitsOut!.data();
      for (let i = 0; i < rows.length; i++) if (pred[i] === labels[rows[i]]) correct++;
      seen += rows.length;
      tf.dispose([x, y, onehot, loss, logitsOut!]);
      opts.onProgress?.({ epoch: e, epochs: opts.epochs, done: ++done, total: perEpoch * opts.epochs });
      await breathe();
    }
  }
  prior?.dispose();
  return { loss: lossSum / Math.max(1, seen), accuracy: correct / Math.max(1, seen), seconds: (performance.now() - t0) / 1000, samples: seen };
}

/** Endless shuffled batches of `src` (reshuffled every pass): the proxy side of mutual learning. */
function* cycledBatches(src: BatchSource, batchSize: number, random: () => number): Generator<{ x: tf.Tensor4D; rows: Uint32Array }> {
  for (;;) yield* batches(src, batchSize, shuffledOrder(src.count, random));
}

export function gatherRows(m: Float32Array, rows: Uint32Array, c: number): Float32Array {
  const out = new Float32Array(rows.length * c);
  for (let i = 0; i < rows.length; i++) out.set(m.subarray(rows[i] * c, rows[i] * c + c), i * c);
  return out;
}

/** log of the (add-one smoothed) label distribution of `labels`: the prior the logit-adjusted loss removes. */
export function logLabelPrior(labels: ArrayLike<number>, numClasses: number): Float32Array {
  const counts = new Float64Array(numClasses).fill(1);
  for (let i = 0; i < labels.length; i++) counts[labels[i]]++;
  const total = labels.length + numClasses;
  return Float32Array.from(counts, (c) => Math.log(c / total));
}

/**
 * Distillation on unlabelled proxy images: KD loss against teacher probabilities at temperature T
 * (the server's student, and clients digesting consensus, FedMD style).
 */
export async function trainOnSoftLabels(
  model: tf.LayersModel,
  optimizer: tf.Optimizer,
  src: BatchSource,
  teacherProbs: Float32Array,
  opts: {
    epochs: number;
    batchSize: number;
    temperature: number;
    random: () => number;
    numClasses: number;
    /** Weight of each row's KD term (e.g. by the age of its teacher label); default all 1. */
    rowWeights?: Float32Array;
    /** Continual rounds: the previous student's probabilities at T (row-aligned with `src`) and the weight λ. */
    previous?: { probs: Float32Array; lambda: number };
    /** Random shifts/flips of the images (the targets stay the original rows'): shared/data/augment.ts. */
    augment?: AugmentOptions;
    onProgress?: ProgressFn;
  },
): Promise<TrainResult> {
  const c = opts.numClasses;
  const augment = opts.augment ? { options: opts.augment, random: opts.random } : undefined;
  const perEpoch = Math.ceil(src.count / opts.batchSize);
  let done = 0;
  const t0 = performance.now();
  let lossSum = 0;
  let agree = 0;
  let seen = 0;
  for (let e = 0; e < opts.epochs; e++) {
    for (const { x, rows } of batches(src, opts.batchSize, shuffledOrder(src.count, opts.random), augment)) {
      const tp = gatherRows(teacherProbs, rows, c);
      const t = tf.tensor2d(tp, [rows.length, c]);
      const w = opts.rowWeights ? tf.tensor1d(Float32Array.from(rows, (r) => opts.rowWeights![r])) : undefined;
      const prev = opts.previous && opts.previous.lambda > 0 ? tf.tensor2d(gatherRows(opts.previous.probs, rows, c), [rows.length, c]) : null;
      let argmax: tf.Tensor | null = null;
      const loss = optimizer.minimize(() => {
        const z = model.apply(x, { training: true }) as tf.Tensor2D;
        argmax = tf.keep(z.argMax(1));
        return continualDistillLoss(z, t, prev, { temperature: opts.temperature, lambda: opts.previous?.lambda ?? 0, sampleWeights: w });
      }, true)!;
      tf.dispose([w, prev].filter((v) => v !== undefined && v !== null) as tf.Tensor[]);
      lossSum += (await loss.data())[0] * rows.length;
      const pred = await argmax!.data();
      for (let i = 0; i < rows.length; i++) {
        const row = tp.subarray(i * c, i * c + c);
        let best = 0;
        for (let k = 1; k < c; k++) if (row[k] > row[best]) best = k;
        if (pred[i] === best) agree++;
      }
      seen += rows.length;
      tf.dispose([x, t, loss, argmax!]);
      opts.onProgress?.({ epoch: e, epochs: opts.epochs, done: ++done, total: perEpoch * opts.epochs });
      await breathe();
    }
  }
  return { loss: lossSum / Math.max(1, seen), accuracy: agree / Math.max(1, seen), seconds: (performance.now() - t0) / 1000, samples: seen };
}

/**
 * One distillation step on the given rows of `src` against teacher probabilities (row-aligned with `rows`): the unit
 * of the online strategy's background loop, which interleaves steps with serving clients. Returns the loss.
 */
export async function distillStep(
  model: tf.LayersModel,
  optimizer: tf.Optimizer,
  src: BatchSource,
  rows: Uint32Array,
  teacherProbs: Float32Array,
  opts: { temperature: number; numClasses: number },
): Promise<number> {
  const { value } = batches(src, rows.length, rows).next();
  const { x } = value!;
  const t = tf.tensor2d(teacherProbs, [rows.length, opts.numClasses]);
  const loss = optimizer.minimize(() => continualDistillLoss(model.apply(x, { training: true }) as tf.Tensor2D, t, null, { temperature: opts.temperature, lambda: 0 }), true)!;
  const v = (await loss.data())[0];
  tf.dispose([x, t, loss]);
  return v;
}

/** Logits for rows `indices` of `src` (all rows when omitted), batched (model.predict defaults to batch 32). */
export async function predictLogits(
  model: tf.LayersModel,
  src: BatchSource,
  indices?: ArrayLike<number>,
  batchSize = 512,
): Promise<Float32Array> {
  const rows = indices ? Uint32Array.from(indices as ArrayLike<number>) : Uint32Array.from({ length: src.count }, (_, i) => i);
  const out: Float32Array[] = [];
  for (const { x } of batches(src, batchSize, rows)) {
    const z = tf.tidy(() => model.apply(x, { training: false }) as tf.Tensor);
    out.push((await z.data()) as Float32Array);
    tf.dispose([x, z]);
    await breathe();
  }
  const total = new Float32Array(out.reduce((n, a) => n + a.length, 0));
  let off = 0;
  for (const a of out) {
    total.set(a, off);
    off += a.length;
  }
  return total;
}

/** Top-1 accuracy overall and per class (NaN for a class with no rows): continual reports read tasks off the classes. */
export async function evaluatePerClass(model: tf.LayersModel, data: Dataset): Promise<{ accuracy: number; perClass: number[] }> {
  if (!data.labels) throw new Error('evaluatePerClass needs labels');
  const c = data.numClasses;
  const z = await predictLogits(model, data);
  const hit = new Array<number>(c).fill(0);
  const total = new Array<number>(c).fill(0);
  let correct = 0;
  for (let i = 0; i < data.count; i++) {
    let best = 0;
    for (let j = 1; j < c; j++) if (z[i * c + j] > z[i * c + best]) best = j;
    const y = data.labels[i];
    total[y]++;
    if (best === y) {
      hit[y]++;
      correct++;
    }
  }
  return { accuracy: correct / Math.max(1, data.count), perClass: hit.map((h, j) => (total[j] ? h / total[j] : NaN)) };
}

/** Top-1 accuracy of a model on a labelled dataset. */
export async function evaluateAccuracy(model: tf.LayersModel, data: Dataset): Promise<number> {
  if (!data.labels) throw new Error('evaluateAccuracy needs labels');
  return accuracy(await predictLogits(model, data), data.labels, data.numClasses);
}
