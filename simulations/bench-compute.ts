/**
 * Compute benchmark: training and inference throughput of the MLP and the CNN on each available backend.
 *
 *   node --import tsx simulations/bench-compute.ts [--no-cpu] [--quick]
 *
 * Training: batch 128, Adam(1e-3), KD loss T²·KL(softmax(t/T) ‖ softmax(s/T)) with T = 2 (the step the clients
 * run). Inference: one forward pass at batch 512. Figures are samples/s from the median step time.
 * Columns: 'cpu' (pure JS; the CNN gets only a couple of steps, it is slow), 'wasm-stock+fgrad' (stock
 * tfjs-backend-wasm plus only the missing Conv2DBackpropFilter, without which conv training cannot run at all),
 * 'wasm-patched' (all training kernels of shared/compute/wasm-grad-kernels.ts).
 * PyTorch anchor: when a python3 with torch is found (FEDISTILL_PYTHON, python3, then Debian's /usr/bin/python3),
 * simulations/bench-torch.py runs the same models, batch, loss and optimizer on one thread in the same invocation,
 * and a second table gives wasm / PyTorch ratios and the BLAS torch used. Without torch the bench says how to
 * install it and goes on.
 * Writes results/bench-compute.json. Runtime ~1-2 minutes on 2 cores (the cpu CNN dominates; --no-cpu skips it).
 */
import * as tf from '@tensorflow/tfjs';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildModel, type ModelKind } from '../shared/models/builders.ts';
import { initBackend } from '../shared/compute/backend.ts';
import { registerWasmTrainingKernels, unregisterWasmTrainingKernels, patchedWasmKernels } from '../shared/compute/wasm-grad-kernels.ts';

const TRAIN_BATCH = 128;
const INFER_BATCH = 512;
const T = 2;
const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const skipCpu = argv.includes('--no-cpu');

type Column = 'cpu' | 'wasm-stock+fgrad' | 'wasm-patched';
interface Row {
  model: ModelKind;
  task: 'train' | 'infer';
  column: Column;
  backend: string;
  batch: number;
  steps: number;
  medianMs: number;
  samplesPerSec: number;
}

function kdLoss(student: tf.Tensor, teacher: tf.Tensor): tf.Scalar {
  const logPt = tf.logSoftmax(tf.div(teacher, T));
  const logPs = tf.logSoftmax(tf.div(student, T));
  const kl = tf.sum(tf.mul(tf.exp(logPt), tf.sub(logPt, logPs)), -1);
  return tf.mul(tf.mean(kl), T * T) as tf.Scalar;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function timeSteps(step: () => void, warmup: number, steps: number): number[] {
  for (let i = 0; i < warmup; i++) step();
  const ms: number[] = [];
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    step();
    ms.push(performance.now() - t0);
  }
  return ms;
}

function benchTrain(kind: ModelKind, column: Column, warmup: number, steps: number): Row {
  const model = buildModel({ kind, inputShape: [28, 28, 1], numClasses: 10, seed: 7 });
  const opt = tf.train.adam(1e-3);
  const x = tf.randomUniform([TRAIN_BATCH, 28, 28, 1], 0, 1, 'float32', 1);
  const teacher = tf.randomNormal([TRAIN_BATCH, 10], 0, 2, 'float32', 2);
  const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const step = () => {
    const cost = opt.minimize(() => kdLoss(model.apply(x, { training: true }) as tf.Tensor, teacher), true, vars);
    cost!.dataSync();
    cost!.dispose();
  };
  const ms = timeSteps(step, warmup, steps);
  tf.dispose([x, teacher]);
  opt.dispose();
  model.dispose();
  const med = median(ms);
  return { model: kind, task: 'train', column, backend: tf.getBackend(), batch: TRAIN_BATCH, steps, medianMs: med, samplesPerSec: (TRAIN_BATCH * 1000) / med };
}

function benchInfer(kind: ModelKind, column: Column, warmup: number, steps: number): Row {
  const model = buildModel({ kind, inputShape: [28, 28, 1], numClasses: 10, seed: 7 });
  const x = tf.randomUniform([INFER_BATCH, 28, 28, 1], 0, 1, 'float32', 3);
  // apply() on the whole batch: predict() would split it into batches of 32.
  const step = () => tf.tidy(() => (model.apply(x) as tf.Tensor).dataSync());
  const ms = timeSteps(step, warmup, steps);
  x.dispose();
  model.dispose();
  const med = median(ms);
  return { model: kind, task: 'infer', column, backend: tf.getBackend(), batch: INFER_BATCH, steps, medianMs: med, samplesPerSec: (INFER_BATCH * 1000) / med };
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const rows: Row[] = [];
  const n = (full: number, q: number) => (quick ? q : full);
  const report = (r: Row) => {
    rows.push(r);
    console.log(`  ${r.column.padEnd(17)} ${r.model} ${r.task.padEnd(5)} ${r.samplesPerSec.toFixed(0).padStart(7)} samples/s ` +
      `(median ${r.medianMs.toFixed(1)} ms over ${r.steps} steps of ${r.batch})`);
  };

  const info = await initBackend({ prefer: 'wasm' });
  if (info.name !== 'wasm') throw new Error('bench-compute needs the wasm backend');

  console.log('wasm, all training kernels patched:');
  report(benchTrain('mlp', 'wasm-patched', 3, n(30, 10)));
  report(benchTrain('cnn', 'wasm-patched', 2, n(15, 5)));
  report(benchInfer('mlp', 'wasm-patched', 2, n(15, 5)));
  report(benchInfer('cnn', 'wasm-patched', 2, n(10, 4)));

  console.log('wasm, stock kernels + only the missing Conv2DBackpropFilter:');
  unregisterWasmTrainingKernels();
  registerWasmTrainingKernels({ kernels: ['Conv2DBackpropFilter'] });
  try {
    report(benchTrain('mlp', 'wasm-stock+fgrad', 2, n(15, 5)));
    report(benchTrain('cnn', 'wasm-stock+fgrad', 1, n(6, 3)));
    report(benchInfer('mlp', 'wasm-stock+fgrad', 2, n(10, 4)));
    report(benchInfer('cnn', 'wasm-stock+fgrad', 1, n(6, 3)));
  } finally {
    registerWasmTrainingKernels();
  }

  if (!skipCpu) {
    console.log("cpu (pure JS; the CNN gets only a couple of steps):");
    await tf.setBackend('cpu');
    report(benchTrain('mlp', 'cpu', 1, n(4, 2)));
    report(benchTrain('cnn', 'cpu', 0, 1));
    report(benchInfer('mlp', 'cpu', 1, n(3, 2)));
    report(benchInfer('cnn', 'cpu', 0, 1));
    await tf.setBackend('wasm');
  }

  const columns: Column[] = ['cpu', 'wasm-stock+fgrad', 'wasm-patched'];
  const lines = [
    `| samples/s (${cpus().length} cores, 1 thread) | ${columns.join(' | ')} |`,
    `|---|${columns.map(() => '---:').join('|')}|`,
  ];
  for (const [model, task] of [['mlp', 'train'], ['cnn', 'train'], ['mlp', 'infer'], ['cnn', 'infer']] as const) {
    const cells = columns.map((c) => {
      const r = rows.find((x) => x.model === model && x.task === task && x.column === c);
      return r ? r.samplesPerSec.toFixed(0) : '—';
    });
    const label = `${model.toUpperCase()} ${task === 'train' ? `train B${TRAIN_BATCH}` : `inference B${INFER_BATCH}`}`;
    lines.push(`| ${label} | ${cells.join(' | ')} |`);
  }
  console.log('\n' + lines.join('\n'));

  console.log('\nPyTorch, same models, batch, loss, optimizer, 1 thread:');
  const torch = runTorchBench(quick);
  const torchLines: string[] = [];
  if (torch.result) {
    const t = torch.result;
    torchLines.push(
      `| 1 thread (torch ${t.torch}, ${t.blas}, ${t.matmul1024GflopsPerSec.toFixed(0)} GFLOP/s on a 1024² matmul) | ` +
        `wasm-patched | PyTorch | wasm / PyTorch |`,
      '|---|---:|---:|---:|',
    );
    for (const [model, task] of [['mlp', 'train'], ['cnn', 'train'], ['mlp', 'infer'], ['cnn', 'infer']] as const) {
      const w = rows.find((x) => x.model === model && x.task === task && x.column === 'wasm-patched');
      const p = t.rows.find((x) => x.model === model && x.task === task);
      const label = `${model.toUpperCase()} ${task === 'train' ? `train B${TRAIN_BATCH}` : `inference B${INFER_BATCH}`}`;
      torchLines.push(`| ${label} | ${w ? w.samplesPerSec.toFixed(0) : '—'} | ${p ? p.samplesPerSec.toFixed(0) : '—'} | ` +
        `${p && w ? `${(w.samplesPerSec / p.samplesPerSec).toFixed(2)}×` : '—'} |`);
    }
    console.log('\n' + torchLines.join('\n'));
  } else {
    console.log(`  skipped: ${torch.reason}`);
  }

  const out = {
    date: new Date().toISOString(),
    node: process.versions.node,
    tfjs: tf.version.tfjs,
    cores: cpus().length,
    cpuModel: cpus()[0]?.model,
    loss: `KD T^2*KL(softmax(t/T)||softmax(s/T)), T=${T}, Adam(1e-3)`,
    trainBatch: TRAIN_BATCH,
    inferBatch: INFER_BATCH,
    selfTest: info.selfTest,
    patchedKernels: patchedWasmKernels(),
    quick,
    skippedCpu: skipCpu,
    rows,
    table: lines.join('\n'),
    torch: torch.result ?? { skipped: torch.reason },
    torchTable: torchLines.join('\n'),
    seconds: (performance.now() - t0) / 1000,
  };
  const file = join(dirname(fileURLToPath(import.meta.url)), '..', 'results', 'bench-compute.json');
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(out, null, 2) + '\n');
  console.log(`\nwrote ${file} (${out.seconds.toFixed(0)} s)`);
}

interface TorchResult {
  torch: string;
  python?: string;
  threads: number;
  blas: string;
  matmul1024GflopsPerSec: number;
  rows: { model: ModelKind; task: 'train' | 'infer'; batch: number; steps: number; medianMs: number; samplesPerSec: number }[];
}

/** Run simulations/bench-torch.py with the first python3 that imports torch; never throws. */
function runTorchBench(quickRun: boolean): { result?: TorchResult; reason?: string } {
  const script = join(dirname(fileURLToPath(import.meta.url)), 'bench-torch.py');
  // A pyenv or venv python3 first on PATH often lacks the system's python3-torch: try every python3 on PATH.
  const onPath = (process.env.PATH ?? '').split(delimiter).filter(Boolean).map((d) => join(d, 'python3'))
    .filter((f) => existsSync(f));
  const candidates = [...new Set([process.env.FEDISTILL_PYTHON, 'python3', ...onPath].filter((c): c is string => !!c))];
  const python = candidates.find((py) => spawnSync(py, ['-c', 'import torch'], { stdio: 'ignore', timeout: 60_000 }).status === 0);
  if (python == null) {
    return {
      reason: `no python3 with torch found (tried ${candidates.join(', ')}). For PyTorch's figures side by side: ` +
        '`apt-get install python3-torch libopenblas0` on Debian/Ubuntu (or pip install torch), or set FEDISTILL_PYTHON',
    };
  }
  const r = spawnSync(python, [script, ...(quickRun ? ['--quick'] : [])], {
    encoding: 'utf8', timeout: 300_000, stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, OMP_NUM_THREADS: '1' },
  });
  const last = (r.stdout ?? '').trim().split('\n').at(-1) ?? '';
  try {
    if (r.status !== 0) throw new Error(`exit status ${r.status}${r.error ? ` (${r.error.message})` : ''}`);
    return { result: { ...(JSON.parse(last) as TorchResult), python } };
  } catch (e) {
    return { reason: `${python} ${script} failed: ${(e as Error).message}` };
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
