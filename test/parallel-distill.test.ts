/**
 * The student's data-parallel distillation (server/strategies/parallel-distill.ts) against the single-thread
 * trainOnSoftLabels it replaces: the same steps to float tolerance, with row weights and the previous-student term;
 * training that works; a worker killed mid-round; and no thread left behind.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { subset, type Dataset } from '../shared/data/dataset.ts';
import { Rng } from '../shared/data/rng.ts';
import { buildModel, type ModelKind } from '../shared/models/builders.ts';
import { predictLogits, trainOnSoftLabels } from '../shared/models/training.ts';
import { distillThreadsRunning, ParallelDistiller, readWeights } from '../server/strategies/parallel-distill.ts';
import { makeClient, roundsDone, startBench, subsetData } from './helpers.ts';

const C = 10;
const LR = 0.002;

async function rows(n: number): Promise<Dataset> {
  const { train } = await subsetData();
  return subset(train, Uint32Array.from({ length: n }, (_, i) => i));
}

/** Teacher probabilities: the true label with `p`, the rest spread evenly (a confident, learnable teacher). */
function teacherOf(ds: Dataset, p = 0.8): Float32Array {
  const out = new Float32Array(ds.count * C).fill((1 - p) / (C - 1));
  for (let i = 0; i < ds.count; i++) out[i * C + ds.labels![i]] = p;
  return out;
}

/** Random rows on the simplex (a second, unrelated distribution: the "previous student"). */
function randomProbs(n: number, seed: string): Float32Array {
  const r = new Rng(seed);
  const out = new Float32Array(n * C);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < C; j++) s += out[i * C + j] = r.next() ** 2 + 1e-3;
    for (let j = 0; j < C; j++) out[i * C + j] /= s;
  }
  return out;
}

function twin(kind: ModelKind, ds: Dataset): { model: tf.LayersModel; opt: tf.Optimizer } {
  return { model: buildModel({ kind, inputShape: ds.shape, numClasses: C, seed: 7 }), opt: tf.train.adam(LR) };
}

/** ‖a − b‖ / ‖a‖ (0 when both are 0). */
function relativeDiff(a: Float32Array, b: Float32Array): number {
  let d = 0;
  let n = 0;
  for (let i = 0; i < a.length; i++) (d += (a[i] - b[i]) ** 2), (n += a[i] ** 2);
  return n === 0 ? Math.sqrt(d) : Math.sqrt(d / n);
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

async function optimizerState(opt: tf.Optimizer): Promise<Float32Array[]> {
  const ws = await opt.getWeights();
  return ws.map((w) => Float32Array.from(w.tensor.dataSync()));
}

function agreement(logits: Float32Array, teacher: Float32Array, n: number): number {
  let agree = 0;
  for (let i = 0; i < n; i++) {
    const arg = (m: Float32Array) => {
      let b = 0;
      for (let j = 1; j < C; j++) if (m[i * C + j] > m[i * C + b]) b = j;
      return b;
    };
    if (arg(logits) === arg(teacher)) agree++;
  }
  return agree / n;
}

test('one step on 2 threads is the single-thread step (weights and Adam state) to float tolerance', { timeout: 120_000 }, async (t) => {
  const ds = await rows(128);
  const teacher = teacherOf(ds);
  const a = twin('cnn', ds);
  const b = twin('cnn', ds);
  const pool = new ParallelDistiller(2, { kind: 'cnn', inputShape: ds.shape, numClasses: C });
  t.after(() => pool.close());
  const opts = (seed: string) => {
    const r = new Rng(seed);
    return { epochs: 1, batchSize: 128, temperature: 3, numClasses: C, random: () => r.next() };
  };
  const warnings: string[] = [];
  const one = await trainOnSoftLabels(a.model, a.opt, ds, teacher, opts('s'));
  const two = await pool.train(b.model, b.opt, ds, teacher, { ...opts('s'), warn: (m) => warnings.push(m) });
  assert.deepEqual(warnings, []);
  assert.equal(pool.liveWorkers, 1, 'the step ran on a worker thread too');
  assert.equal(two.samples, 128);
  assert.ok(Math.abs(one.loss - two.loss) < 1e-5 * Math.abs(one.loss), `loss ${one.loss} vs ${two.loss}`);
  assert.equal(two.accuracy, one.accuracy);
  // The optimizer's state is the one a checkpoint exports: the same variables in the same order, and its first
  // moments (1 − β₁)·g hold the summed gradient, which matches the single-thread one to float rounding.
  const [sa, sb] = [await optimizerState(a.opt), await optimizerState(b.opt)];
  assert.equal(sa.length, 1 + 2 * b.model.trainableWeights.length);
  assert.equal(sa.length, sb.length);
  sa.forEach((m, i) => assert.ok(relativeDiff(m, sb[i]) < 1e-4, `optimizer weight ${i}: relative difference ${relativeDiff(m, sb[i])}`));
  // Adam's first step moves each weight by ≈ lr·sign(g): a gradient within float rounding of 0 may move either way by
  // up to lr·|g|/(|g| + ε), so the weights agree to a small fraction of lr, not to 1e-7.
  const moved = maxAbsDiff(readWeights(a.model), readWeights(buildModel({ kind: 'cnn', inputShape: ds.shape, numClasses: C, seed: 7 })));
  assert.ok(moved > 1e-3, 'the step changed the weights');
  const diff = maxAbsDiff(readWeights(a.model), readWeights(b.model));
  assert.ok(diff < LR / 50, `weights differ by ${diff}`);
});

test('row weights and the previous-student term: 3 threads, uneven shares, a short last batch, as one thread', { timeout: 120_000 }, async (t) => {
  const ds = await rows(150); // batches of 64, 64 and 22 rows, split in three uneven shares
  const teacher = teacherOf(ds, 0.6);
  const previous = { probs: randomProbs(ds.count, 'prev'), lambda: 0.5 };
  const weightRng = new Rng('w');
  const rowWeights = Float32Array.from({ length: ds.count }, () => 0.1 + weightRng.next());
  const pool = new ParallelDistiller(3, { kind: 'mlp', inputShape: ds.shape, numClasses: C });
  t.after(() => pool.close());
  const run = async (train: typeof trainOnSoftLabels, extra: object) => {
    const m = twin('mlp', ds);
    const r = new Rng('order');
    const res = await train(m.model, m.opt, ds, teacher, { epochs: 2, batchSize: 64, temperature: 2, numClasses: C, random: () => r.next(), rowWeights, previous, ...extra });
    return { res, w: readWeights(m.model) };
  };
  const one = await run(trainOnSoftLabels, {});
  const three = await run((...args) => pool.train(...args), {});
  assert.equal(pool.liveWorkers, 2);
  assert.ok(maxAbsDiff(one.w, three.w) < LR / 50, `weights differ by ${maxAbsDiff(one.w, three.w)}`);
  assert.ok(Math.abs(one.res.loss - three.res.loss) < 1e-5 * one.res.loss, `loss ${one.res.loss} vs ${three.res.loss}`);
  // Both options matter (so the comparison above could fail): without them the weights end elsewhere.
  for (const changed of [{ rowWeights: undefined }, { previous: undefined }]) {
    const other = await run((...args) => pool.train(...args), changed);
    assert.ok(maxAbsDiff(one.w, other.w) > 1e-3, `${Object.keys(changed)[0]} made no difference`);
  }
});

test('several epochs on 2 threads train the student: loss falls, agreement with the teacher rises', { timeout: 120_000 }, async (t) => {
  const ds = await rows(512);
  const teacher = teacherOf(ds);
  const { model, opt } = twin('cnn', ds);
  const pool = new ParallelDistiller(2, { kind: 'cnn', inputShape: ds.shape, numClasses: C });
  t.after(() => pool.close());
  const r = new Rng('e');
  const opts = { batchSize: 64, temperature: 2, numClasses: C, random: () => r.next(), augment: { maxShift: 2, flip: true } };
  const before = agreement(await predictLogits(model, ds), teacher, ds.count);
  const first = await pool.train(model, opt, ds, teacher, { ...opts, epochs: 1 });
  const later = await pool.train(model, opt, ds, teacher, { ...opts, epochs: 4 });
  const after = agreement(await predictLogits(model, ds), teacher, ds.count);
  assert.ok(later.loss < 0.7 * first.loss, `loss ${first.loss} → ${later.loss}`);
  assert.ok(after > before + 0.3 && after > 0.6, `agreement with the teacher ${before} → ${after}`);
});

test('a worker killed mid-round: the round completes on the main thread with the same steps, and the pool recovers', { timeout: 120_000 }, async (t) => {
  const ds = await rows(256);
  const teacher = teacherOf(ds);
  const pool = new ParallelDistiller(2, { kind: 'mlp', inputShape: ds.shape, numClasses: C });
  t.after(() => pool.close());
  const run = async (train: typeof trainOnSoftLabels, extra: object) => {
    const m = twin('mlp', ds);
    const r = new Rng('kill');
    const res = await train(m.model, m.opt, ds, teacher, { epochs: 2, batchSize: 32, temperature: 2, numClasses: C, random: () => r.next(), ...extra });
    return { res, w: readWeights(m.model) };
  };
  const one = await run(trainOnSoftLabels, {});
  const warnings: string[] = [];
  let killed = false;
  const survived = await run((...args) => pool.train(...args), {
    warn: (m: string) => warnings.push(m),
    onProgress: ({ done }: { done: number }) => {
      if (done === 3 && !killed) {
        killed = true;
        void pool.threadsForTests[0].terminate();
      }
    },
  });
  assert.ok(killed);
  assert.equal(survived.res.samples, 2 * 256, 'every step of the round ran');
  assert.equal(warnings.length, 1, warnings.join('\n'));
  assert.match(warnings[0], /worker thread failed.*main thread.*1 thread/);
  assert.ok(maxAbsDiff(one.w, survived.w) < LR / 50, `weights differ by ${maxAbsDiff(one.w, survived.w)}`);
  assert.equal(pool.liveWorkers, 0);
  // The next round starts a replacement.
  await run((...args) => pool.train(...args), {});
  assert.equal(pool.liveWorkers, 1);
});

test('no thread outlives close(), and an idle pool never keeps a process alive', { timeout: 120_000 }, async () => {
  const ds = await rows(64);
  const pool = new ParallelDistiller(3, { kind: 'mlp', inputShape: ds.shape, numClasses: C });
  const { model, opt } = twin('mlp', ds);
  const r = new Rng('c');
  await pool.train(model, opt, ds, teacherOf(ds), { epochs: 1, batchSize: 64, temperature: 2, numClasses: C, random: () => r.next() });
  const threads = pool.threadsForTests.slice();
  assert.equal(threads.length, 2);
  assert.ok(distillThreadsRunning() >= 2);
  await pool.close();
  assert.ok(threads.every((w) => w.threadId === -1), 'every worker thread has exited');
  assert.equal(pool.liveWorkers, 0);
  assert.equal(distillThreadsRunning(), 0);
  // Closed while its threads are still starting (warm(): the aggregator starts them when a round begins).
  const warming = new ParallelDistiller(2, { kind: 'mlp', inputShape: ds.shape, numClasses: C });
  warming.warm(() => assert.fail('no warning expected'));
  assert.equal(distillThreadsRunning(), 1);
  await warming.close();
  assert.equal(distillThreadsRunning(), 0);
  // A process that trains on 2 threads and never closes its pool still exits on its own.
  const script = [
    `import * as tf from '@tensorflow/tfjs';`,
    `import { initBackend } from ${JSON.stringify(new URL('../shared/compute/backend.ts', import.meta.url).href)};`,
    `import { buildModel } from ${JSON.stringify(new URL('../shared/models/builders.ts', import.meta.url).href)};`,
    `import { ParallelDistiller } from ${JSON.stringify(new URL('../server/strategies/parallel-distill.ts', import.meta.url).href)};`,
    `await initBackend({ prefer: 'wasm', log: () => {} });`,
    `const n = 16, images = new Uint8Array(n * 784).map((_, i) => i % 251), probs = new Float32Array(n * 10).fill(0.1);`,
    `const pool = new ParallelDistiller(2, { kind: 'mlp', inputShape: [28, 28, 1], numClasses: 10 });`,
    `const res = await pool.train(buildModel({ kind: 'mlp', inputShape: [28, 28, 1], numClasses: 10 }), tf.train.adam(0.01), { count: n, shape: [28, 28, 1], images }, probs, { epochs: 1, batchSize: 16, temperature: 1, numClasses: 10, random: Math.random });`,
    `console.log('trained', res.samples, pool.liveWorkers);`,
  ].join('\n');
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: fileURLToPath(new URL('..', import.meta.url)), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const code = await new Promise<number | null>((resolve) => {
    const timer = setTimeout(() => (child.kill('SIGKILL'), resolve(null)), 60_000);
    child.on('exit', (c) => (clearTimeout(timer), resolve(c)));
  });
  assert.equal(code, 0, `the child did not exit by itself: ${out}`);
  assert.match(out, /trained 16 1/);
});

test('the aggregator distills on --distill-threads 2 and its close() ends the threads', { timeout: 180_000 }, async (t) => {
  const before = distillThreadsRunning();
  const b = await startBench(2, { rounds: 1, proxySubset: 200, distillThreads: 2 });
  let closed = false;
  t.after(() => (closed ? undefined : b.agg.close()));
  const clients = [0, 1].map((i) => makeClient(b, i));
  t.after(() => clients.forEach((c) => c.stop()));
  await Promise.all(clients.map((c) => c.start()));
  await roundsDone(b, 1);
  assert.equal(distillThreadsRunning(), before + 1, 'one worker thread beside the main one');
  assert.equal(b.agg.coordinator.strategy.version, 1);
  assert.ok(b.agg.coordinator.history[0].studentAccuracy! > 0.15, `student accuracy ${b.agg.coordinator.history[0].studentAccuracy}`);
  clients.forEach((c) => c.stop());
  await b.agg.close();
  closed = true;
  assert.equal(distillThreadsRunning(), before);
});
