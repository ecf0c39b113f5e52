/**
 * The server's student distills on several cores: synchronous data parallelism over Node worker threads.
 *
 * tfjs-wasm runs single-threaded under Node (shared/compute/backend.ts), so trainOnSoftLabels uses one core however
 * many the machine has. Here each global batch of B rows is split into K contiguous shares (the main thread's and one
 * per worker thread); every thread computes, on a replica of the student at the same weights, the gradient of its
 * share's part of the batch loss, and the main thread sums them and takes the one Adam step of the student's own
 * optimizer (whose state is what checkpoints export), then sends the new weights with the next batch's shares.
 *
 * The batch loss (shared/distill/continual-loss.ts) is a sum over rows with batch-wide normalisers,
 *
 *   L = T²·Σ_i w_i·KL(t_i ‖ s_i) / W  +  λ·T²·Σ_i KL(p_i ‖ s_i) / B,      W = Σ_i w_i over the whole batch,
 *
 * so with each share's loss L_k taken over its own rows but with the whole batch's W and B, Σ_k L_k = L and, the
 * gradient being linear, Σ_k ∇L_k = ∇L: the step is the single-thread step up to float summation order. Batch
 * assembly, shuffling and augmentation stay on the main thread (it holds the round's random stream), so the rows,
 * their order and their augmented pixels are those trainOnSoftLabels would have used.
 *
 * Workers start on the first round that distills and are reused across rounds; they are unref'd between rounds (no
 * idle thread keeps a process alive) and terminated by close(). A worker that errors, dies or stops answering makes
 * the rest of that round run on the main thread (its share of the failed step recomputed there), with a warning:
 * the round completes with the same batches and steps. Dead workers are replaced at the next round, up to a limit.
 */
import * as tf from '@tensorflow/tfjs';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { backendInfo, type BackendPreference } from '../../shared/compute/backend.ts';
import type { AugmentOptions } from '../../shared/data/augment.ts';
import { klDivergence } from '../../shared/distill/kd-loss.ts';
import type { ModelKind } from '../../shared/models/builders.ts';
import { batchArrays, gatherRows, shuffledOrder, trainOnSoftLabels, type BatchSource, type ProgressFn, type TrainResult } from '../../shared/models/training.ts';

// Like simulations/simulate.ts's client workers: compiled (dist/lib/) the worker is the emitted .js beside this one,
// run by plain node; from sources it is TypeScript through tsx. A worker thread does not inherit the main thread's
// module hooks, and on Node 20 `execArgv: ['--import', 'tsx']` does not install them in a worker either ("Unknown
// file extension .ts"), so from sources a one-line bootstrap registers tsx's loader in the thread, then imports it.
const COMPILED = import.meta.url.endsWith('.js');
const WORKER = new URL(COMPILED ? './distill-worker.js' : './distill-worker.ts', import.meta.url);

function spawnWorker(workerData: WorkerInit): Worker {
  if (COMPILED) return new Worker(WORKER, { workerData });
  const tsx = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(tsx)}).then((tsx) => (tsx.register(), import(${JSON.stringify(WORKER.href)})))`;
  return new Worker(boot, { eval: true, workerData });
}

/**
 * `--distill-threads 0` (auto): the machine's cores, at most this many, and no share thinner than MIN_AUTO_SHARE rows.
 * Measured on 2 cores (README, issue 9): 128-row batches gained from 2 threads and less per thread from 4 (1.8× and
 * 2.9× shorter critical path); a 32-row batch on two threads (16-row shares) is still 1.3× faster than on one. Thinner
 * shares than 16 rows were not measured and are not used.
 */
export const AUTO_THREADS_CAP = 4;
export const MIN_AUTO_SHARE = 16;
/** How many workers may fail (start or mid-round) before the pool gives up and the student trains on one thread. */
const MAX_WORKER_FAILURES = 3;
const START_TIMEOUT_MS = 120_000;
/** A step's reply is late after max(this, STEP_TIMEOUT_FACTOR × the main thread's own share time). */
const STEP_TIMEOUT_MIN_MS = 60_000;
const STEP_TIMEOUT_FACTOR = 50;

/**
 * The threads `--distill-threads` means: 0 = auto (cores, capped, at most one per MIN_AUTO_SHARE rows of the batch;
 * 1 on native TensorFlow, which has its own pool).
 */
export function resolveDistillThreads(setting: number, batchSize: number): number {
  if (setting > 0) return Math.floor(setting);
  if (tf.getBackend() === 'tensorflow') return 1;
  return Math.max(1, Math.min(AUTO_THREADS_CAP, availableParallelism(), Math.floor(batchSize / MIN_AUTO_SHARE)));
}

/** What a worker needs to build the student's replica, and the backend the main thread runs on. */
export interface WorkerInit {
  kind: ModelKind;
  inputShape: [number, number, number];
  numClasses: number;
  backend: BackendPreference;
}

/** One thread's rows of a batch: pixels in [0,1] (augmented), teacher probs, previous-student probs, row weights. */
export interface ShareInput {
  rows: number;
  x: Float32Array;
  t: Float32Array;
  prev?: Float32Array;
  w?: Float32Array;
}

/** The whole batch's normalisers (see the module doc): W = Σ w over the batch (B without row weights), and B. */
export interface ShareScale {
  temperature: number;
  lambda: number;
  weightTotal: number;
  batchRows: number;
}

export type ToWorker = { type: 'step'; id: number; weights: Float32Array; share: ShareInput; scale: ShareScale };
export type FromWorker =
  | { type: 'ready'; backend: string }
  | { type: 'grads'; id: number; grads: Float32Array; loss: number; argmax: Int32Array }
  | { type: 'error'; id?: number; message: string };

/**
 * A share's part of the batch loss: continualDistillLoss's two terms over the share's rows, normalised by the whole
 * batch's W and B instead of the share's own, so that the shares' losses (and gradients) sum to the batch's.
 */
export function shareLoss(z: tf.Tensor2D, t: tf.Tensor2D, prev: tf.Tensor2D | null, w: tf.Tensor1D | null, s: ShareScale): tf.Scalar {
  return tf.tidy(() => {
    const T2 = s.temperature * s.temperature;
    const kl = klDivergence(t, z, s.temperature);
    // kdLoss floors Σw at 1e-12 the same way.
    let loss = tf.mul(tf.sum(w ? tf.mul(kl, w) : kl), T2 / (w ? Math.max(s.weightTotal, 1e-12) : s.batchRows));
    if (prev && s.lambda > 0) loss = tf.add(loss, tf.mul(tf.sum(klDivergence(prev, z, s.temperature)), (s.lambda * T2) / s.batchRows));
    return loss as tf.Scalar;
  });
}

/** The tf.Variables behind a model's trainable weights, in the model's order (the order gradients travel in). */
export function trainableVariables(model: tf.LayersModel): tf.Variable[] {
  return model.trainableWeights.map((w) => w.read() as tf.Variable);
}

/** Gradient of one share's loss w.r.t. `vars` (in their order), the share's loss and its predicted classes. */
export function shareGradients(
  model: tf.LayersModel,
  vars: tf.Variable[],
  share: ShareInput,
  shape: [number, number, number],
  c: number,
  scale: ShareScale,
): { grads: tf.Tensor[]; loss: number; argmax: Int32Array } {
  const n = share.rows;
  const x = tf.tensor4d(share.x, [n, ...shape]);
  const t = tf.tensor2d(share.t, [n, c]);
  const prev = share.prev ? tf.tensor2d(share.prev, [n, c]) : null;
  const w = share.w ? tf.tensor1d(share.w) : null;
  let argmax: tf.Tensor | null = null;
  const { value, grads } = tf.variableGrads(() => {
    const z = model.apply(x, { training: true }) as tf.Tensor2D;
    argmax = tf.keep(z.argMax(1));
    return shareLoss(z, t, prev, w, scale);
  }, vars);
  const loss = value.dataSync()[0];
  const pred = Int32Array.from(argmax!.dataSync());
  tf.dispose([x, t, value, argmax!, ...(prev ? [prev] : []), ...(w ? [w] : [])]);
  // A variable the loss does not reach has no gradient: zero, so every share's vector has the same layout.
  return { grads: vars.map((v) => grads[v.name] ?? tf.zerosLike(v)), loss, argmax: pred };
}

export function flattenTensors(ts: tf.Tensor[], total: number): Float32Array {
  const out = new Float32Array(total);
  let off = 0;
  for (const t of ts) {
    out.set(t.dataSync() as Float32Array, off);
    off += t.size;
  }
  return out;
}

/** All of a model's weights (trainable or not) as one vector, in model.weights order. */
export function readWeights(model: tf.LayersModel): Float32Array {
  return flattenTensors(model.weights.map((w) => w.read()), model.weights.reduce((n, w) => n + w.read().size, 0));
}

export function writeWeights(model: tf.LayersModel, flat: Float32Array): void {
  let off = 0;
  for (const w of model.weights) {
    const v = w.read() as tf.Variable;
    const t = tf.tensor(flat.subarray(off, off + v.size), v.shape, 'float32');
    v.assign(t);
    t.dispose();
    off += v.size;
  }
  if (off !== flat.length) throw new Error(`weights vector holds ${flat.length} values, the student ${off}`);
}

/** The backend the workers must start: the one this thread actually runs (not merely the one asked for). */
function mainBackend(): BackendPreference {
  const name = tf.getBackend();
  if (name === 'tensorflow') return backendInfo()?.source === '@tensorflow/tfjs-node-gpu' ? 'tensorflow-gpu' : 'tensorflow';
  return name === 'wasm' || name === 'cpu' ? name : 'auto';
}

type Grads = Extract<FromWorker, { type: 'grads' }>;

/** Every distillation worker thread of this process not yet exited (its 'exit' event not yet seen). */
const running = new Set<Worker>();

/** How many distillation worker threads are running in this process (0 once every pool is closed). */
export function distillThreadsRunning(): number {
  return running.size;
}

/** One worker thread and its in-flight steps; `dead` (the reason) once it erred, exited or was given up on. */
class PoolWorker {
  readonly worker: Worker;
  /** Resolves to the worker's backend name once it is ready; rejects if it fails first. */
  readonly ready: Promise<string>;
  dead: string | null = null;
  private readonly pending = new Map<number, { resolve: (g: Grads) => void; reject: (e: Error) => void }>();
  private nextId = 0;
  private rejectReady: (e: Error) => void = () => {};

  constructor(init: WorkerInit) {
    this.worker = spawnWorker(init);
    running.add(this.worker);
    let resolveReady: (backend: string) => void = () => {};
    this.ready = new Promise<string>((resolve, reject) => ((resolveReady = resolve), (this.rejectReady = reject)));
    this.ready.catch(() => {}); // awaited by start(); a worker that dies later must not leave an unhandled rejection
    const startTimer = setTimeout(() => this.fail(`no ready message in ${START_TIMEOUT_MS / 1000} s`), START_TIMEOUT_MS);
    startTimer.unref();
    this.worker.on('message', (m: FromWorker) => {
      if (m.type === 'ready') return resolveReady(m.backend);
      if (m.type === 'error' && m.id === undefined) return this.fail(m.message);
      const p = this.pending.get(m.id!);
      this.pending.delete(m.id!);
      if (p && m.type === 'grads') p.resolve(m);
      else if (p && m.type === 'error') p.reject(new Error(m.message));
    });
    this.worker.on('error', (e) => this.fail(`error: ${e.message}`));
    this.worker.on('exit', (code) => (running.delete(this.worker), this.fail(`exited (code ${code})`)));
    this.worker.on('messageerror', (e) => this.fail(`unreadable message: ${e.message}`));
    this.ready.finally(() => clearTimeout(startTimer)).catch(() => {});
  }

  /** Post a step (its buffers are transferred); resolves with the gradient, rejects on an error reply or death. */
  step(weights: Float32Array, share: ShareInput, scale: ShareScale): Promise<Grads> {
    if (this.dead) return Promise.reject(new Error(this.dead));
    const id = this.nextId++;
    const msg: ToWorker = { type: 'step', id, weights, share, scale };
    const transfer = [weights.buffer, share.x.buffer, share.t.buffer, share.prev?.buffer, share.w?.buffer].filter((b) => b !== undefined) as ArrayBuffer[];
    return new Promise<Grads>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage(msg, transfer);
    });
  }

  /** Marks the worker dead (first reason wins), fails whatever it was asked, and terminates its thread. */
  fail(why: string): void {
    if (this.dead) return;
    this.dead = why;
    this.rejectReady(new Error(why));
    for (const p of this.pending.values()) p.reject(new Error(why));
    this.pending.clear();
    void this.worker.terminate();
  }
}

type DistillOptions = Parameters<typeof trainOnSoftLabels>[4] & {
  /** Where a fallback to one thread is reported (the round's logger). */
  warn?: (message: string) => void;
};

/**
 * The student's distillation on `threads` threads (the main one and threads − 1 workers), with trainOnSoftLabels's
 * signature and semantics; threads ≤ 1 is trainOnSoftLabels itself.
 */
export class ParallelDistiller {
  private workers: PoolWorker[] = [];
  private failures = 0;
  private closed = false;
  /** Workers being started (warm() or a train() that found some missing). */
  private starting: Promise<PoolWorker[]> | null = null;
  /** The fallback to one thread was reported (once per stretch of rounds without workers, not every round). */
  private saidSingle = false;

  constructor(
    readonly threads: number,
    private readonly student: { kind: ModelKind; inputShape: [number, number, number]; numClasses: number },
  ) {}

  /** Worker threads alive now (for tests and status). */
  get liveWorkers(): number {
    return this.workers.filter((w) => !w.dead).length;
  }

  /** The worker threads (tests use it to kill one). */
  get threadsForTests(): readonly Worker[] {
    return this.workers.map((w) => w.worker);
  }

  /**
   * Start the worker threads now, in the background (about a second each: tfjs, the wasm backend and its self-test),
   * so that the first distillation does not wait for them: the aggregator calls it when a round begins.
   */
  warm(warn: (m: string) => void = (m) => console.warn(m)): void {
    // A start that throws is reported, never an unhandled rejection: train() falls back to one thread then.
    if (this.threads > 1 && !this.closed) this.startOnce(warn).catch((e: Error) => warn(`distillation worker threads could not start (${e.message})`));
  }

  async train(model: tf.LayersModel, optimizer: tf.Optimizer, src: BatchSource, teacherProbs: Float32Array, opts: DistillOptions): Promise<TrainResult> {
    const warn = opts.warn ?? ((m: string) => console.warn(m));
    const workers = this.threads > 1 && !this.closed ? await this.startOnce(warn) : [];
    if (!workers.length) return trainOnSoftLabels(model, optimizer, src, teacherProbs, opts);
    workers.forEach((w) => w.worker.ref());
    try {
      return await this.run(workers, model, optimizer, src, teacherProbs, opts, warn);
    } finally {
      workers.forEach((w) => w.worker.unref());
    }
  }

  /** Terminates the worker threads; later train() calls run on the main thread. */
  async close(): Promise<void> {
    this.closed = true;
    const ws = this.workers;
    this.workers = [];
    // fail() settles whatever the workers were asked (a warm start, a step in flight) before the threads end.
    for (const w of ws) w.fail('closed');
    await Promise.all(ws.map((w) => w.worker.terminate()));
  }

  /** start(), shared by concurrent callers. */
  private startOnce(warn: (m: string) => void): Promise<PoolWorker[]> {
    this.starting ??= this.start(warn).finally(() => (this.starting = null));
    return this.starting;
  }

  /** Live workers, starting replacements for missing ones; [] (and a warning) when none can be had. */
  private async start(warn: (m: string) => void): Promise<PoolWorker[]> {
    this.workers = this.workers.filter((w) => !w.dead);
    const want = this.threads - 1 - this.workers.length;
    if (want > 0 && this.failures < MAX_WORKER_FAILURES) {
      const backend = mainBackend();
      const fresh: PoolWorker[] = [];
      try {
        for (let i = 0; i < want; i++) fresh.push(new PoolWorker({ ...this.student, backend }));
      } catch (e) {
        // Spawning itself failed (e.g. the worker file cannot be resolved): no more tries; the threads it has go on.
        for (const w of fresh) w.fail('closed');
        fresh.length = 0;
        this.failures = MAX_WORKER_FAILURES;
        warn(`distillation worker threads could not be spawned (${(e as Error).message}): no more will be started`);
      }
      // In the list at once, so that close() during the start ends them too; held (ref) only while starting.
      this.workers.push(...fresh);
      const started = await Promise.allSettled(fresh.map((w) => w.ready));
      // A worker failed or closed meanwhile stays held until its thread has exited (its terminate() is awaited).
      fresh.forEach((w) => w.dead || w.worker.unref());
      if (this.closed) return [];
      started.forEach((r, i) => {
        const w = fresh[i];
        const why = r.status === 'rejected' ? (r.reason as Error).message : r.value !== tf.getBackend() ? `runs '${r.value}', the main thread '${tf.getBackend()}'` : null;
        if (why === null) return;
        this.failures++;
        w.fail(why);
        warn(`distillation worker thread could not start (${why})${this.failures >= MAX_WORKER_FAILURES ? `; ${this.failures} failures: the student distills on the threads it has from now on` : ''}`);
      });
    }
    this.workers = this.workers.filter((w) => !w.dead);
    if (!this.workers.length && !this.saidSingle) warn(`distilling on 1 thread instead of ${this.threads}: no worker thread`);
    this.saidSingle = !this.workers.length;
    return this.workers.slice();
  }

  private async run(
    workers: PoolWorker[],
    model: tf.LayersModel,
    optimizer: tf.Optimizer,
    src: BatchSource,
    teacherProbs: Float32Array,
    opts: DistillOptions,
    warn: (m: string) => void,
  ): Promise<TrainResult> {
    const c = opts.numClasses;
    const shape = src.shape;
    const vars = trainableVariables(model);
    // Adam keeps its moments by position in the list it is handed: the order minimize() would hand it, i.e. the
    // engine's registration order of these variables (tfjs-core variableGrads with no varList).
    const index = new Map(vars.map((v, i) => [v.name, i]));
    const applyOrder = Object.keys(tf.engine().registeredVariables).filter((n) => index.has(n)).map((n) => index.get(n)!);
    const offsets: number[] = [];
    let total = 0;
    for (const v of vars) (offsets.push(total), (total += v.size));
    const previous = opts.previous && opts.previous.lambda > 0 ? opts.previous : undefined;
    const lambda = previous?.lambda ?? 0;
    const perEpoch = Math.ceil(src.count / opts.batchSize);
    let live = workers.slice();
    let done = 0;
    let lossSum = 0;
    let agree = 0;
    let seen = 0;
    const t0 = performance.now();
    const batches = assembleBatches(src, opts.epochs, opts.batchSize, opts.random, opts.augment);
    let next = batches.next();
    while (!next.done) {
      const { rows, x, epoch } = next.value;
      const B = rows.length;
      const tp = gatherRows(teacherProbs, rows, c);
      const pp = previous ? gatherRows(previous.probs, rows, c) : undefined;
      const wv = opts.rowWeights ? Float32Array.from(rows, (r) => opts.rowWeights![r]) : undefined;
      let weightTotal = B;
      if (wv) weightTotal = wv.reduce((s, v) => s + v, 0);
      const scale: ShareScale = { temperature: opts.temperature, lambda, weightTotal, batchRows: B };
      const K = Math.min(B, 1 + live.length);
      const bound = (k: number) => Math.floor((k * B) / K);
      // Copies (slice), so a share whose worker fails can still be computed here after its buffers were transferred.
      const shareOf = (k: number): ShareInput => {
        const [lo, hi] = [bound(k), bound(k + 1)];
        const size = x.length / B;
        return { rows: hi - lo, x: x.slice(lo * size, hi * size), t: tp.slice(lo * c, hi * c), prev: pp?.slice(lo * c, hi * c), w: wv?.slice(lo, hi) };
      };
      const sent: { k: number; worker: PoolWorker; reply: Promise<Grads> }[] = [];
      const weights = K > 1 ? readWeights(model) : null;
      const tMain = performance.now();
      for (let k = 1; k < K; k++) {
        const worker = live[k - 1];
        // The last worker takes the vector itself; the others a copy (a transferred buffer is gone from this side).
        const reply = worker.step(k === K - 1 ? weights! : weights!.slice(), shareOf(k), scale);
        reply.catch(() => {}); // handled below; a rejection may land before it is awaited
        sent.push({ k, worker, reply });
      }
      const own = shareGradients(model, vars, shareOf(0), shape, c, scale);
      const mainMs = performance.now() - tMain;
      // While the workers finish: the next batch (the same random draws, in the same order, as one thread makes them).
      next = batches.next();
      const parts: { k: number; grads: Float32Array | tf.Tensor[]; loss: number; argmax: Int32Array }[] = [{ k: 0, ...own }];
      for (const s of sent) {
        try {
          const g = await withTimeout(s.reply, Math.max(STEP_TIMEOUT_MIN_MS, STEP_TIMEOUT_FACTOR * mainMs), () => s.worker.fail('no reply to a step in time'));
          parts.push({ k: s.k, grads: g.grads, loss: g.loss, argmax: g.argmax });
        } catch (e) {
          s.worker.fail((e as Error).message);
          this.failures++;
          const left = 1 + live.filter((w) => !w.dead).length;
          warn(`distillation worker thread failed (${(e as Error).message}): its share of this step is recomputed on the main thread, and the rest of this round distills on ${left} thread${left === 1 ? '' : 's'}`);
          parts.push({ k: s.k, ...shareGradients(model, vars, shareOf(s.k), shape, c, scale) });
        }
      }
      live = live.filter((w) => !w.dead);
      tf.tidy(() => {
        const summed = vars.map((v, i) => {
          let g: tf.Tensor = own.grads[i];
          for (const p of parts.slice(1)) {
            g = tf.add(g, Array.isArray(p.grads) ? p.grads[i] : tf.tensor(p.grads.subarray(offsets[i], offsets[i] + v.size), v.shape, 'float32'));
          }
          return g;
        });
        optimizer.applyGradients(applyOrder.map((i) => ({ name: vars[i].name, tensor: summed[i] })));
      });
      for (const p of parts) if (Array.isArray(p.grads)) tf.dispose(p.grads);
      let batchLoss = 0;
      for (const p of parts) {
        batchLoss += p.loss;
        const lo = bound(p.k);
        for (let i = 0; i < p.argmax.length; i++) if (p.argmax[i] === argmaxRow(tp, lo + i, c)) agree++;
      }
      lossSum += batchLoss * B;
      seen += B;
      opts.onProgress?.({ epoch, epochs: opts.epochs, done: ++done, total: perEpoch * opts.epochs });
      // Let sockets breathe between batches, as trainOnSoftLabels does.
      await new Promise<void>((r) => setImmediate(r));
    }
    return { loss: lossSum / Math.max(1, seen), accuracy: agree / Math.max(1, seen), seconds: (performance.now() - t0) / 1000, samples: seen };
  }
}

function argmaxRow(m: Float32Array, i: number, c: number): number {
  let best = 0;
  for (let k = 1; k < c; k++) if (m[i * c + k] > m[i * c + best]) best = k;
  return best;
}

/**
 * trainOnSoftLabels's batches as plain arrays: per epoch one shuffle of all rows, then per batch the rows' pixels
 * scaled to [0,1] and augmented, drawing from `random` in exactly the order trainOnSoftLabels does.
 */
function* assembleBatches(
  src: BatchSource,
  epochs: number,
  batchSize: number,
  random: () => number,
  augment?: AugmentOptions,
): Generator<{ epoch: number; rows: Uint32Array; x: Float32Array }> {
  for (let epoch = 0; epoch < epochs; epoch++) {
    const order = shuffledOrder(src.count, random);
    for (const { x, rows } of batchArrays(src, batchSize, order, augment && { options: augment, random })) yield { epoch, rows, x };
  }
}

/** `p`, or a rejection after `ms` (calling `onTimeout` first). */
function withTimeout<T>(p: Promise<T>, ms: number, onTimeout: () => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => (onTimeout(), reject(new Error(`no reply in ${(ms / 1000).toFixed(0)} s`))), ms);
    p.then((v) => (clearTimeout(timer), resolve(v)), (e) => (clearTimeout(timer), reject(e)));
  });
}
