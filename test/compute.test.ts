import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend, backendInfo } from '../shared/compute/backend.ts';
import {
  PATCHABLE_KERNELS, patchedWasmKernels, registerWasmTrainingKernels, selfTestWasmKernels, unregisterWasmTrainingKernels,
} from '../shared/compute/wasm-grad-kernels.ts';
import { buildModel } from '../shared/models/builders.ts';
import { Rng } from '../shared/data/rng.ts';

const quiet = { log: (_m: string) => {} };

function rng(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.next();
}
function uniform(rand: () => number, n: number, lo = -1, hi = 1): Float32Array {
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * rand());
}
function relErr(got: Float32Array, want: Float32Array): number {
  assert.equal(got.length, want.length);
  let d = 0;
  let m = 0;
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i] - want[i]);
    if (!(e <= d)) d = e; // NaN propagates as a failure
    m = Math.max(m, Math.abs(want[i]));
  }
  return d / m;
}
function kd(student: tf.Tensor, teacher: tf.Tensor, T = 2): tf.Scalar {
  const logPt = tf.logSoftmax(tf.div(teacher, T));
  const logPs = tf.logSoftmax(tf.div(student, T));
  return tf.mul(tf.mean(tf.sum(tf.mul(tf.exp(logPt), tf.sub(logPt, logPs)), -1)), T * T) as tf.Scalar;
}

test('initBackend picks wasm here, patches the training kernels and passes the self-test', async () => {
  const lines: string[] = [];
  const info = await initBackend({ prefer: 'wasm', log: (m) => lines.push(m) });
  assert.equal(info.name, 'wasm');
  assert.equal(tf.getBackend(), 'wasm');
  assert.equal(info.source, '@tensorflow/tfjs-backend-wasm');
  assert.deepEqual([...info.patchedKernels].sort(), [...PATCHABLE_KERNELS].sort());
  assert.ok(info.selfTest?.ok, 'self-test passed');
  assert.ok(info.selfTest!.maxRelErr < 1e-5, `max rel err ${info.selfTest!.maxRelErr}`);
  assert.ok(info.selfTest!.maxRelErr > 0, 'the self-test really compared floating-point results');
  assert.equal(info.trainingCapable, true);
  assert.equal(info.warning, undefined);
  assert.ok(lines.some((l) => l.includes("using 'wasm'")), lines.join('\n'));
  assert.equal(backendInfo(), info);

  // 'auto': the native packages are not installable on this machine; where they are, they must win.
  const auto = await initBackend(quiet);
  const nativeOk = auto.tried.some((t) => (t.candidate === 'tensorflow' || t.candidate === 'tensorflow-gpu') && !t.error);
  assert.deepEqual(auto.tried.map((t) => t.candidate).slice(0, 2), ['tensorflow-gpu', 'tensorflow']);
  if (!nativeOk) {
    assert.equal(auto.name, 'wasm');
    assert.ok(auto.tried[0].error && auto.tried[1].error);
  }
});

test("prefer 'cpu' (and FEDISTILL_BACKEND=cpu) warns loudly", async () => {
  const lines: string[] = [];
  const info = await initBackend({ prefer: 'cpu', log: (m) => lines.push(m) });
  assert.equal(info.name, 'cpu');
  assert.match(info.warning ?? '', /pure-JS 'cpu'/);
  assert.ok(lines.some((l) => l.includes('WARNING') && l.includes('100x slower')), lines.join('\n'));

  const prev = process.env.FEDISTILL_BACKEND;
  process.env.FEDISTILL_BACKEND = 'cpu';
  try {
    const viaEnv = await initBackend(quiet);
    assert.equal(viaEnv.name, 'cpu');
    assert.ok(viaEnv.warning);
  } finally {
    if (prev === undefined) delete process.env.FEDISTILL_BACKEND; else process.env.FEDISTILL_BACKEND = prev;
  }
  const back = await initBackend({ prefer: 'wasm', ...quiet });
  assert.equal(back.name, 'wasm');
});

test('registration is idempotent', () => {
  const again = registerWasmTrainingKernels();
  assert.deepEqual(again.newlyRegistered, []);
  assert.deepEqual([...again.patched].sort(), [...PATCHABLE_KERNELS].sort());
  assert.deepEqual(patchedWasmKernels().sort(), [...PATCHABLE_KERNELS].sort());
});

test('the self-test catches a wrong kernel: stock MaxPoolGrad fails on negative windows', async () => {
  await initBackend({ prefer: 'wasm', ...quiet });
  assert.deepEqual(unregisterWasmTrainingKernels(['MaxPoolGrad']), ['MaxPoolGrad']);
  try {
    const stock = await selfTestWasmKernels({ kernels: ['MaxPoolGrad'] });
    assert.equal(stock.ok, false);
    assert.ok(stock.maxRelErr >= 0.5, `stock MaxPoolGrad rel err ${stock.maxRelErr}`);
    assert.ok(stock.details.some((d) => !d.ok && d.name.includes('[-2,-0.5]')), 'the all-negative case fails');
    assert.deepEqual(stock.reverted, [], 'stock kernels are left alone');
  } finally {
    registerWasmTrainingKernels({ kernels: ['MaxPoolGrad'] });
  }
  const fixed = await selfTestWasmKernels({ kernels: ['MaxPoolGrad'] });
  assert.equal(fixed.ok, true);
});

test('a patched kernel that fails the self-test is reverted to the stock kernel', async () => {
  await initBackend({ prefer: 'wasm', ...quiet });
  const ours = tf.getKernel('BatchMatMul', 'wasm') as tf.KernelConfig & { fedistillStock: tf.KernelConfig | null };
  const stock = ours.fedistillStock;
  assert.ok(stock, 'the patch keeps the stock BatchMatMul');
  // White-box: install a deliberately wrong kernel marked as ours (ignores transposeA).
  tf.unregisterKernel('BatchMatMul', 'wasm');
  tf.registerKernel({
    ...ours,
    kernelFunc: (args) => stock.kernelFunc({ ...args, attrs: { ...args.attrs, transposeA: false, transposeB: false } }),
  } as tf.KernelConfig);
  try {
    const r = await selfTestWasmKernels();
    assert.equal(r.ok, false);
    assert.deepEqual(r.reverted, ['BatchMatMul']);
    assert.equal(tf.getKernel('BatchMatMul', 'wasm'), stock, 'stock kernel restored');
    assert.ok(r.details.filter((d) => d.kernel !== 'BatchMatMul').every((d) => d.ok), 'other kernels still pass');
  } finally {
    if (tf.getKernel('BatchMatMul', 'wasm') !== stock) {
      tf.unregisterKernel('BatchMatMul', 'wasm');
      tf.registerKernel(stock);
    }
    registerWasmTrainingKernels();
  }
  assert.deepEqual(patchedWasmKernels().sort(), [...PATCHABLE_KERNELS].sort());
});

test('patched kernels free every intermediate', async () => {
  await initBackend({ prefer: 'wasm', ...quiet });
  const backend = tf.engine().backend; // numDataIds(): the backend's own count of live buffers
  const rand = rng(5);
  const t = (shape: number[]) => tf.tensor(uniform(rand, shape.reduce((a, b) => a * b, 1)), shape);
  const calls: [string, tf.NamedTensorMap, tf.NamedAttrMap][] = [];
  for (const [xs, fs, strides, pad] of [
    [[2, 9, 9, 1], [3, 3, 1, 4], 1, 'valid'], // im2col
    [[2, 9, 9, 2], [3, 3, 2, 4], 2, 'same'], // im2col, stride 2
    [[2, 10, 10, 8], [3, 3, 8, 4], 2, 'valid'], // transpose trick + crop
    [[1, 5, 5, 6], [3, 3, 6, 2], 1, 3], // input gradient with a crop
  ] as [number[], number[], number, tf.NamedAttrMap[string]][]) {
    const info = tf.backend_util.computeConv2DInfo(xs as never, fs as never, strides, 1, pad as never);
    calls.push(['Conv2DBackpropFilter', { x: t(xs), dy: t(info.outShape) }, { strides, pad, dataFormat: 'NHWC', filterShape: fs }]);
    calls.push(['Conv2DBackpropInput', { dy: t(info.outShape), filter: t(fs) }, { strides, pad, dataFormat: 'NHWC', inputShape: xs }]);
  }
  const px = t([2, 6, 6, 3]);
  calls.push(['MaxPoolGrad', { dy: t([2, 3, 3, 3]), input: px, output: tf.maxPool(px as tf.Tensor4D, 2, 2, 'valid') }, { filterSize: 2, strides: 2, pad: 'valid' }]);
  calls.push(['BatchMatMul', { a: t([2, 5, 4]), b: t([2, 3, 5]) }, { transposeA: true, transposeB: true }]);
  calls.push(['Sum', { x: t([3, 5, 5, 4]) }, { axis: [0, 1, 2], keepDims: false }]);
  calls.push(['Sum', { x: t([3, 5, 4]) }, { axis: [1, 2], keepDims: true }]); // delegated to the stock kernel
  calls.push(['Identity', { x: t([3, 5, 4]) }, {}]);
  const before = backend.numDataIds();
  // IS_TEST makes engine.runKernel throw when a kernel leaves buffers behind (engine.checkKernelForMemLeak).
  // Only around these plain kernels: the stock wasm fused ops trip that check under tf.layers.
  tf.env().set('IS_TEST', true);
  try {
    for (const [name, inputs, attrs] of calls) {
      for (let i = 0; i < 3; i++) (tf.engine().runKernel(name, inputs, attrs) as tf.Tensor).dispose();
    }
  } finally {
    tf.env().set('IS_TEST', false);
  }
  assert.equal(backend.numDataIds(), before);
  for (const [, inputs] of calls) tf.dispose(Object.values(inputs));
});

test('CNN gradients on wasm match cpu (strides 1/2, same/valid, max-pool over negative inputs, dense)', async () => {
  await initBackend({ prefer: 'wasm', ...quiet }); // registers and patches 'wasm' even when run alone
  const rand = rng(2024);
  const batch = 6;
  const inShape: [number, number, number] = [20, 20, 3];
  const build = () => {
    const m = tf.sequential();
    // Linear conv (no ReLU) before the pool, with a negative bias: many pool windows have a negative maximum.
    m.add(tf.layers.conv2d({ inputShape: inShape, filters: 8, kernelSize: 3, strides: 1, padding: 'same' })); // im2col path
    m.add(tf.layers.maxPooling2d({ poolSize: 2, strides: 2 }));
    m.add(tf.layers.conv2d({ filters: 12, kernelSize: 3, strides: 2, padding: 'valid', activation: 'relu' })); // transpose path
    m.add(tf.layers.conv2d({ filters: 16, kernelSize: 3, strides: 2, padding: 'same' }));
    m.add(tf.layers.flatten());
    m.add(tf.layers.dense({ units: 24, activation: 'relu' }));
    m.add(tf.layers.dense({ units: 10 }));
    return m;
  };
  const xData = uniform(rand, batch * 20 * 20 * 3);
  const tData = uniform(rand, batch * 10, -3, 3);
  let weights: { values: Float32Array; shape: number[] }[] | undefined;

  const gradsOn = async (backend: string) => {
    await tf.setBackend(backend);
    const model = build();
    if (!weights) {
      weights = model.getWeights().map((w, i) => ({
        values: w.shape.length === 1 ? uniform(rand, w.size, i === 1 ? -0.6 : -0.2, i === 1 ? -0.1 : 0.2) : uniform(rand, w.size, -0.4, 0.4),
        shape: w.shape,
      }));
    }
    model.setWeights(weights.map((w) => tf.tensor(w.values, w.shape)));
    const x = tf.tensor4d(xData, [batch, ...inShape]);
    const t = tf.tensor2d(tData, [batch, 10]);
    const negWindows = tf.tidy(() => {
      const pooled = model.layers[1].apply(model.layers[0].apply(x)) as tf.Tensor;
      return tf.less(pooled, 0).sum().dataSync()[0];
    });
    const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
    const { value, grads } = tf.variableGrads(() => kd(model.apply(x) as tf.Tensor, t), vars);
    const out = { loss: value.dataSync()[0], grads: vars.map((v) => grads[v.name].dataSync() as Float32Array), negWindows, names: vars.map((v) => v.name) };
    tf.dispose([value, x, t, ...Object.values(grads)]);
    model.dispose();
    return out;
  };

  const cpu = await gradsOn('cpu');
  const wasm = await gradsOn('wasm');
  await tf.setBackend('wasm');
  assert.ok(cpu.negWindows > 50, `pool windows with a negative max: ${cpu.negWindows}`);
  assert.ok(Math.abs(cpu.loss - wasm.loss) <= 1e-5 * Math.abs(cpu.loss), `loss ${wasm.loss} vs ${cpu.loss}`);
  assert.equal(wasm.grads.length, 10);
  for (let i = 0; i < cpu.grads.length; i++) {
    const ref = cpu.grads[i];
    assert.ok(ref.some((v) => v !== 0), `gradient ${i} is not trivially zero`);
    const e = relErr(wasm.grads[i], ref);
    assert.ok(e < 1e-4, `variable ${i} (${cpu.names[i]}): relative error ${e}`);
  }
});

test('a CNN training step runs on wasm and reduces the loss', async () => {
  await initBackend({ prefer: 'wasm', ...quiet });
  const model = buildModel({ kind: 'cnn', inputShape: [28, 28, 1], numClasses: 10, seed: 3 });
  const rand = rng(7);
  const x = tf.tensor4d(uniform(rand, 32 * 28 * 28, 0, 1), [32, 28, 28, 1]);
  const teacher = tf.tensor2d(uniform(rand, 32 * 10, -4, 4), [32, 10]);
  const opt = tf.train.adam(5e-3);
  const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const before = vars.map((v) => Float32Array.from(v.dataSync()));
  const losses: number[] = [];
  let live = 0;
  for (let i = 0; i < 25; i++) {
    const cost = opt.minimize(() => kd(model.apply(x, { training: true }) as tf.Tensor, teacher), true, vars)!;
    losses.push(cost.dataSync()[0]);
    cost.dispose();
    if (i === 1) live = tf.engine().backend.numDataIds();
  }
  assert.equal(tf.engine().backend.numDataIds(), live, 'no buffers leak from step to step');
  assert.ok(losses.every(Number.isFinite), String(losses));
  assert.ok(losses[losses.length - 1] < 0.7 * losses[0], `loss ${losses[0]} -> ${losses[losses.length - 1]}`);
  // Every variable moved, the convolution kernels included (they need Conv2DBackpropFilter).
  vars.forEach((v, i) => assert.ok(v.dataSync().some((val, j) => val !== before[i][j]), `${v.name} unchanged`));
  tf.dispose([x, teacher]);
  opt.dispose();
  model.dispose();
});

test('Sum over leading axes and Identity match cpu on random shapes (odd sizes, keepDims, negative axes)', async () => {
  await initBackend({ prefer: 'wasm', ...quiet });
  assert.ok(patchedWasmKernels().includes('Sum') && patchedWasmKernels().includes('Identity'));
  const rand = rng(99);
  const cases: { shape: number[]; axis: number | number[] | null; keepDims?: boolean }[] = [
    { shape: [128, 26, 26, 16], axis: [0, 1, 2] }, // the CNN's first bias gradient
    { shape: [128, 11, 11, 32], axis: [0, 1, 2] },
    { shape: [7, 13, 5, 3], axis: [2, 1, 0], keepDims: true },
    { shape: [33, 17], axis: 0 },
    { shape: [33, 17], axis: -2, keepDims: true },
    { shape: [5, 9, 11], axis: [0, 1] },
    { shape: [5, 9, 11], axis: [1, 2] }, // not leading: stock kernel
    { shape: [5, 9, 11], axis: null }, // everything: stock kernel
    { shape: [1, 1, 3], axis: [0, 1] },
  ];
  for (const c of cases) {
    const data = uniform(rand, c.shape.reduce((a, b) => a * b, 1), -3, 3);
    const on = async (b: string) => {
      await tf.setBackend(b);
      const x = tf.tensor(data, c.shape);
      const s = tf.sum(x, c.axis ?? undefined, c.keepDims);
      const id = tf.clone(x);
      const out = { shape: s.shape, values: s.dataSync() as Float32Array, id: id.dataSync() as Float32Array };
      tf.dispose([x, s, id]);
      return out;
    };
    const want = await on('cpu');
    const got = await on('wasm');
    assert.deepEqual(got.shape, want.shape, JSON.stringify(c));
    const e = relErr(got.values, want.values);
    assert.ok(e < 1e-6, `${JSON.stringify(c)}: rel err ${e}`);
    assert.deepEqual(got.id, data);
  }
  await tf.setBackend('wasm');
});

test('Identity on wasm shares the buffer; the copy outlives the original and a variable assigned from it', async () => {
  await initBackend({ prefer: 'wasm', ...quiet });
  const backend = tf.engine().backend;
  const x = tf.tensor1d([1, 2, 3]);
  const before = backend.numDataIds();
  const y = tf.clone(x);
  assert.equal(backend.numDataIds(), before, 'no new buffer');
  x.dispose();
  assert.deepEqual(Array.from(y.dataSync()), [1, 2, 3]);
  const v = tf.variable(y);
  const next = tf.tensor1d([4, 5, 6]);
  v.assign(next);
  assert.deepEqual(Array.from(v.dataSync()), [4, 5, 6]);
  assert.deepEqual(Array.from(y.dataSync()), [1, 2, 3], 'assigning the variable leaves the shared source alone');
  tf.dispose([y, v, next]);
  assert.equal(backend.numDataIds(), before - 1);
});
