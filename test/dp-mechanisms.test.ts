import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  gaussianNoise,
  privatizeProbabilities,
  privatizeUpdate,
  projectRowsToSimplex,
  uploadSensitivity,
} from '../shared/privacy/index.ts';
import { softmaxRows } from '../shared/distill/aggregators.ts';
import { combineNoisyProbs } from '../shared/privacy/noisy-teacher.ts';

function norm(v: ArrayLike<number>, from = 0, to = v.length): number {
  let s = 0;
  for (let j = from; j < to; j++) s += v[j] * v[j];
  return Math.sqrt(s);
}

/** Deterministic test inputs (mulberry32): the inputs are fixed, only the mechanisms' noise is random. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Sample mean, standard deviation, kurtosis E[(x−μ)⁴]/σ⁴ and the fraction within one σ of 0. */
function moments(x: ArrayLike<number>, sigma: number): { mean: number; std: number; kurtosis: number; within1: number } {
  const n = x.length;
  let s = 0;
  for (let i = 0; i < n; i++) s += x[i];
  const mean = s / n;
  let m2 = 0;
  let m4 = 0;
  let inside = 0;
  for (let i = 0; i < n; i++) {
    const d = x[i] - mean;
    m2 += d * d;
    m4 += d * d * d * d;
    if (Math.abs(x[i]) <= sigma) inside++;
  }
  const variance = m2 / (n - 1);
  return { mean, std: Math.sqrt(variance), kurtosis: m4 / n / (variance * variance), within1: inside / n };
}

test('gaussianNoise: N(0, std²) in mean, std, shape; cryptographic randomness, never Math.random', (t) => {
  const original = Math.random;
  Math.random = () => {
    throw new Error('Math.random must not be used for DP noise');
  };
  t.after(() => {
    Math.random = original;
  });
  const N = 200_000;
  const std = 1.7;
  const x = gaussianNoise(N, std);
  assert.equal(x.length, N);
  const m = moments(x, std);
  // Mean of N draws has std σ/√N: 5 of those is a 1-in-3.5-million false alarm.
  assert.ok(Math.abs(m.mean) < (5 * std) / Math.sqrt(N), `mean ${m.mean}`);
  // Sample std has relative std 1/√(2N) ≈ 0.16%: 2% is > 12 of those.
  assert.ok(Math.abs(m.std / std - 1) < 0.02, `std ${m.std}`);
  // Shape: a Gaussian has kurtosis 3 (uniform 1.8, Laplace 6; estimate std ≈ √(96/N) ≈ 0.02) and P(|x| ≤ σ) = 0.6827.
  assert.ok(Math.abs(m.kurtosis - 3) < 0.15, `kurtosis ${m.kurtosis}`);
  assert.ok(Math.abs(m.within1 - 0.682689) < 0.006, `P(|x| ≤ σ) = ${m.within1}`);
  assert.ok(x.every(Number.isFinite));
  // Odd counts, zero count, zero std; two draws differ.
  assert.equal(gaussianNoise(7, 1).length, 7);
  assert.ok(Number.isFinite(gaussianNoise(7, 1)[6]) && gaussianNoise(7, 1)[6] !== 0);
  assert.equal(gaussianNoise(0, 1).length, 0);
  assert.ok(gaussianNoise(100, 0).every((v) => v === 0));
  assert.notDeepEqual(gaussianNoise(16, 1), gaussianNoise(16, 1));
  assert.throws(() => gaussianNoise(-1, 1), /count must be an integer ≥ 0/);
  assert.throws(() => gaussianNoise(1.5, 1), /count must be an integer ≥ 0/);
  assert.throws(() => gaussianNoise(10, -1), /std must be a finite number ≥ 0/);
  assert.throws(() => gaussianNoise(10, Infinity), /std must be a finite number ≥ 0/);
  assert.throws(() => gaussianNoise(10, NaN), /std must be a finite number ≥ 0/);
});

function randomLogits(n: number, c: number, seed: number, scale = 4): Float32Array {
  const r = seeded(seed);
  return Float32Array.from({ length: n * c }, () => (r() * 2 - 1) * scale);
}

test('privatizeProbabilities: zero noise and clip ≥ 1 is softmax; the clip bound holds exactly on every row', () => {
  const n = 300;
  const c = 10;
  const logits = randomLogits(n, c, 1, 8);
  for (const T of [1, 3]) {
    const p = softmaxRows(logits, n, c, T);
    for (const clip of [1, 100]) {
      assert.deepEqual(privatizeProbabilities(logits, n, c, { temperature: T, clip, noiseStd: 0 }), p, `T=${T} clip ${clip}`);
    }
  }
  const p = softmaxRows(logits, n, c, 1);
  for (const clip of [0.9, 0.5, 0.35, 0.1, 1e-3]) {
    const out = privatizeProbabilities(logits, n, c, { temperature: 1, clip, noiseStd: 0 });
    let clipped = 0;
    for (let i = 0; i < n; i++) {
      const got = norm(out, i * c, (i + 1) * c); // of the float32 values that leave the client, in float64
      assert.ok(got <= clip, `row ${i}: ‖·‖ = ${got} > clip ${clip}`);
      const before = norm(p, i * c, (i + 1) * c);
      if (before > clip) {
        clipped++;
        assert.ok(got > clip * (1 - 1e-6), `row ${i}: clipped to ${got}, not to the bound ${clip}`);
        // Clipping only rescales: same direction.
        for (let j = 0; j < c; j++) {
          const k = i * c + j;
          assert.ok(Math.abs(out[k] - (p[k] * clip) / before) <= 1e-6 * clip, `row ${i} col ${j} direction`);
        }
      } else {
        for (let j = 0; j < c; j++) assert.equal(out[i * c + j], p[i * c + j], `row ${i} under the bound is untouched`);
      }
    }
    if (clip <= 0.35) assert.ok(clipped > 0, `clip ${clip} clipped nothing: the test would prove nothing`);
  }
});

test('privatizeProbabilities: the noise is N(0, noiseStd²) around the clipped rows', () => {
  const n = 2000;
  const c = 10;
  const logits = randomLogits(n, c, 2);
  const clean = privatizeProbabilities(logits, n, c, { temperature: 2, clip: 0.4, noiseStd: 0 });
  const noiseStd = 0.3;
  const noisy = privatizeProbabilities(logits, n, c, { temperature: 2, clip: 0.4, noiseStd });
  const diff = Float64Array.from(noisy, (v, k) => v - clean[k]);
  const m = moments(diff, noiseStd);
  assert.ok(Math.abs(m.mean) < (5 * noiseStd) / Math.sqrt(n * c), `mean ${m.mean}`);
  assert.ok(Math.abs(m.std / noiseStd - 1) < 0.03, `std ${m.std}`);
  assert.ok(noisy.some((v) => v < 0), 'noise makes some entries negative (the server projects them back)');

  const plain = { temperature: 1, clip: 1, noiseStd: 0 };
  assert.throws(() => privatizeProbabilities(logits, n, c, { ...plain, clip: 0 }), /clip must be a finite number > 0/);
  assert.throws(() => privatizeProbabilities(logits, n, c, { ...plain, noiseStd: -1 }), /noiseStd must be a finite number ≥ 0/);
  assert.throws(() => privatizeProbabilities(logits, n, c, { ...plain, temperature: 0 }), /temperature/);
  assert.throws(() => privatizeProbabilities(logits, n + 1, c, plain), /expected/);
  const nan = logits.slice();
  nan[5] = NaN;
  assert.throws(() => privatizeProbabilities(nan, n, c, plain), /logit 5 is not finite/);
});

function tensors(sizes: number[], seed: number, scale = 1): Float32Array[] {
  const r = seeded(seed);
  return sizes.map((s) => Float32Array.from({ length: s }, () => (r() * 2 - 1) * scale));
}

test('privatizeUpdate: clips the combined norm over all tensors, returns the pre-clip norm', () => {
  // Two tensors whose deltas have norms 3 and 4: combined 5. Clip 1 scales BOTH by 1/5 (→ 0.6 and 0.8);
  // per-tensor clipping would have given 1 and 1.
  const global = [new Float32Array([1, 1]), new Float32Array([0, 0, 0])];
  const local = [new Float32Array([4, 1]), new Float32Array([0, 4, 0])];
  const { weights, norm: pre } = privatizeUpdate(local, global, { clip: 1, noiseStd: 0 });
  assert.equal(pre, 5);
  assert.ok(Math.abs(weights[0][0] - 1.6) < 1e-6 && weights[0][1] === 1, `tensor 0 → ${weights[0]}`);
  const [w0, w1, w2] = weights[1];
  assert.ok(Math.abs(w1 - 0.8) < 1e-6 && w0 === 0 && w2 === 0, `tensor 1 → ${weights[1]}`);

  // Random model-sized lists: after clipping, ‖w − g‖ over everything is the clip (up to float32 rounding).
  const sizes = [784 * 32, 32, 32 * 10, 10];
  const g = tensors(sizes, 3);
  const l = tensors(sizes, 4);
  for (const clip of [0.5, 5, 50]) {
    const out = privatizeUpdate(l, g, { clip, noiseStd: 0 });
    let sq = 0;
    let sqLocal = 0;
    out.weights.forEach((w, k) => {
      assert.equal(w.length, sizes[k]);
      for (let j = 0; j < w.length; j++) {
        sq += (w[j] - g[k][j]) ** 2;
        sqLocal += (l[k][j] - g[k][j]) ** 2;
      }
    });
    closeRel(out.norm, Math.sqrt(sqLocal), 1e-12, 'pre-clip norm');
    const expected = Math.min(clip, out.norm);
    const got = Math.sqrt(sq);
    assert.ok(Math.abs(got - expected) <= 1e-5 * expected, `clip ${clip}: ‖Δ‖ = ${got} vs ${expected}`);
  }
});

function closeRel(actual: number, expected: number, rtol: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= rtol * Math.abs(expected), `${what}: ${actual} vs ${expected}`);
}

test('privatizeUpdate: zero noise and a big clip is the identity; noise is N(0, noiseStd²) per coordinate', () => {
  const sizes = [1000, 20, 300];
  const g = tensors(sizes, 5);
  const l = tensors(sizes, 6);
  const same = privatizeUpdate(l, g, { clip: 1e6, noiseStd: 0 });
  same.weights.forEach((w, k) => assert.deepEqual(w, l[k], `tensor ${k}`));

  const big = [20_000, 30_000];
  const g2 = tensors(big, 7);
  const l2 = tensors(big, 8, 0.001);
  const clean = privatizeUpdate(l2, g2, { clip: 0.1, noiseStd: 0 });
  const noiseStd = 0.05;
  const noisy = privatizeUpdate(l2, g2, { clip: 0.1, noiseStd });
  const diff = new Float64Array(50_000);
  let o = 0;
  noisy.weights.forEach((w, k) => w.forEach((v, j) => (diff[o++] = v - clean.weights[k][j])));
  const m = moments(diff, noiseStd);
  assert.ok(Math.abs(m.mean) < (5 * noiseStd) / Math.sqrt(diff.length), `mean ${m.mean}`);
  assert.ok(Math.abs(m.std / noiseStd - 1) < 0.02, `std ${m.std}`);

  assert.throws(() => privatizeUpdate(l, g.slice(1), { clip: 1, noiseStd: 0 }), /3 local tensors vs 2 global/);
  const swapped = [l[0], l[2], l[1]];
  assert.throws(() => privatizeUpdate(swapped, g, { clip: 1, noiseStd: 0 }), /tensor 1 has 300 values locally, 20 globally/);
  assert.throws(() => privatizeUpdate(l, g, { clip: -1, noiseStd: 0 }), /clip must be a finite number > 0/);
  assert.throws(() => privatizeUpdate(l, g, { clip: 1, noiseStd: NaN }), /noiseStd must be a finite number ≥ 0/);
  const bad = l.map((x) => x.slice());
  bad[2][7] = Infinity;
  assert.throws(() => privatizeUpdate(bad, g, { clip: 1, noiseStd: 0 }), /tensor 2 value 7 is not finite/);
});

test('projectRowsToSimplex: known projections', () => {
  const cases: [number[], number[]][] = [
    [[0.2, 0.3, 0.5], [0.2, 0.3, 0.5]], // already on the simplex
    [[0.5, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]],
    [[2, 0], [1, 0]],
    [[0.6, 0.6], [0.5, 0.5]],
    [[-1, 0.2, 3], [0, 0, 1]],
    [[0, 0, 0, 0], [0.25, 0.25, 0.25, 0.25]],
    [[0.9, 0.8, -0.5], [0.55, 0.45, 0]],
    [[5], [1]],
  ];
  for (const [x, expected] of cases) {
    const got = projectRowsToSimplex(x, 1, x.length);
    expected.forEach((v, j) => assert.ok(Math.abs(got[j] - v) < 1e-7, `${x} → ${Array.from(got)}, expected ${expected}`));
  }
  assert.equal(projectRowsToSimplex([], 0, 3).length, 0);
  assert.throws(() => projectRowsToSimplex([1, 2], 1, 3), /expected 3 values, got 2/);
  assert.throws(() => projectRowsToSimplex([1, NaN, 2], 1, 3), /value \(0, 1\) is not finite/);
  assert.throws(() => projectRowsToSimplex([1], 1, 0), /bad shape/);
});

test('projectRowsToSimplex: the true Euclidean projection (KKT conditions and nearest simplex point)', () => {
  const r = seeded(9);
  for (const c of [2, 3, 5, 10, 37]) {
    const n = 200;
    // Noisy probability rows, as the server receives them: p + N(0, 0.3²)-ish spread, plus some wild rows.
    const x = Float64Array.from({ length: n * c }, (_, k) =>
      k % 7 === 0 ? (r() - 0.5) * 20 : r() / c + (r() - 0.5) * 0.6,
    );
    const p = projectRowsToSimplex(x, n, c);
    for (let i = 0; i < n; i++) {
      const row = Array.from(p.subarray(i * c, (i + 1) * c));
      const xr = Array.from(x.subarray(i * c, (i + 1) * c));
      assert.ok(row.every((v) => v >= 0), `row ${i} non-negative`);
      const sum = row.reduce((a, b) => a + b, 0);
      assert.ok(Math.abs(sum - 1) < 1e-6, `row ${i} sums to ${sum}`);
      // KKT of min ½‖p − x‖² s.t. p ≥ 0, Σp = 1: there is θ with x_j − p_j = θ where p_j > 0 and x_j ≤ θ where p_j = 0.
      const support = row.map((v, j) => [v, j] as const).filter(([v]) => v > 0);
      const theta = xr[support[0][1]] - support[0][0];
      for (const [v, j] of support) assert.ok(Math.abs(xr[j] - v - theta) < 1e-6, `row ${i}: KKT equality at ${j}`);
      row.forEach((v, j) => v === 0 && assert.ok(xr[j] <= theta + 1e-6, `row ${i}: KKT inequality at ${j}`));
      // No other simplex point is closer: random interior points, the vertices, and the barycentre.
      const dist = (q: ArrayLike<number>): number => Math.sqrt(xr.reduce((s, v, j) => s + (v - q[j]) ** 2, 0));
      const best = dist(row);
      const others: number[][] = [Array(c).fill(1 / c)];
      for (let j = 0; j < c; j++) others.push(Array.from({ length: c }, (_, k) => (k === j ? 1 : 0)));
      for (let s = 0; s < 20; s++) {
        const e = Array.from({ length: c }, () => -Math.log(r() + 1e-12));
        const tot = e.reduce((a, b) => a + b, 0);
        others.push(e.map((v) => v / tot));
      }
      for (const q of others) assert.ok(best <= dist(q) + 1e-6, `row ${i}: a simplex point is closer than its projection`);
    }
  }
});

test('uploadSensitivity: the formulas, and the √2·C bound is tight for clipped non-negative rows', () => {
  assert.equal(uploadSensitivity({ kind: 'probs', rows: 1, clip: 1 }, 'add-remove'), 1);
  assert.equal(uploadSensitivity({ kind: 'probs', rows: 1, clip: 1 }, 'replace'), Math.SQRT2);
  assert.equal(uploadSensitivity({ kind: 'probs', rows: 400, clip: 0.5 }, 'add-remove'), 0.5 * 20);
  const replace400 = uploadSensitivity({ kind: 'probs', rows: 400, clip: 0.5 }, 'replace');
  closeRel(replace400, Math.SQRT2 * 0.5 * 20, 1e-15, 'replace R=400');
  assert.equal(uploadSensitivity({ kind: 'update', clip: 3 }, 'replace'), 6);
  assert.equal(uploadSensitivity({ kind: 'update', clip: 3 }, 'add-remove'), 3);

  // Empirically: any two privatized (noise-free) uploads of R rows differ by at most the 'replace' sensitivity,
  // and one-hot rows on different classes attain it.
  const n = 50;
  const c = 10;
  const clip = 0.6;
  const bound = uploadSensitivity({ kind: 'probs', rows: n, clip }, 'replace');
  const privatize = (logits: Float32Array): Float32Array =>
    privatizeProbabilities(logits, n, c, { temperature: 1, clip, noiseStd: 0 });
  const uploads = [1, 2, 3, 4].map((s) => privatize(randomLogits(n, c, 10 + s, 30)));
  for (let a = 0; a < uploads.length; a++) {
    for (let b = a + 1; b < uploads.length; b++) {
      const d = norm(Float64Array.from(uploads[a], (v, k) => v - uploads[b][k]));
      assert.ok(d <= bound, `uploads ${a}, ${b} differ by ${d} > ${bound}`);
    }
  }
  const oneHot = (cls: number): Float32Array => {
    const z = new Float32Array(n * c);
    for (let i = 0; i < n; i++) z[i * c + cls] = 1000;
    return privatize(z);
  };
  const [u0, u1] = [oneHot(0), oneHot(1)];
  const worst = norm(Float64Array.from(u0, (v, k) => v - u1[k]));
  assert.ok(worst <= bound && worst > bound * (1 - 1e-6), `one-hot rows: ${worst} vs ${bound}`);
  const toZero = uploadSensitivity({ kind: 'probs', rows: n, clip }, 'add-remove');
  assert.ok(norm(u0) <= toZero && norm(u0) > toZero * (1 - 1e-6), `distance to zero ${norm(u0)} vs ${toZero}`);

  assert.throws(() => uploadSensitivity({ kind: 'probs', rows: 0, clip: 1 }, 'replace'), /rows must be an integer ≥ 1/);
  assert.throws(() => uploadSensitivity({ kind: 'update', clip: 0 }, 'replace'), /clip must be a finite number > 0/);
  assert.throws(() => uploadSensitivity({ kind: 'update', clip: 1 }, 'swap' as 'replace'), /unknown adjacency/);
  const weird = { kind: 'weights', clip: 1 } as unknown as { kind: 'update'; clip: number };
  assert.throws(() => uploadSensitivity(weird, 'replace'), /unknown kind/);
});

test('the teacher from noisy rows: the mean (or median / trimmed mean) projected onto the simplex', () => {
  const rows = [Float32Array.from([0.9, 0.3, -0.2]), Float32Array.from([0.5, 0.5, 0.0]), Float32Array.from([0.7, 0.1, 0.2])];
  const mean = combineNoisyProbs('confidence', rows, 1, 3, 0.2); // not computable from noisy rows: the mean
  assert.deepEqual(Array.from(mean, (v) => Math.round(v * 1e6) / 1e6), Array.from(projectRowsToSimplex([0.7, 0.3, 0], 1, 3), (v) => Math.round(v * 1e6) / 1e6));
  // One wild upload moves the mean far, the median not at all.
  const wild = [...rows, Float32Array.from([100, -100, 0]), Float32Array.from([0.6, 0.4, 0])];
  assert.ok(combineNoisyProbs('mean-probs', wild, 1, 3, 0.2)[0] > 0.999);
  const med = combineNoisyProbs('median', wild, 1, 3, 0.2);
  assert.ok(Math.abs(med[0] - 0.7) < 1e-6 && Math.abs(med[1] - 0.3) < 1e-6, `median ${Array.from(med)}`);
  const trimmed = combineNoisyProbs('trimmed-mean', wild, 1, 3, 0.2);
  // K = 5, trim 0.2: the lowest and highest of each coordinate go; (0.6+0.7+0.9)/3 and (0.1+0.3+0.4)/3 remain.
  assert.ok(Math.abs(trimmed[0] - 2.2 / 3) < 1e-6 && Math.abs(trimmed[1] - 0.8 / 3) < 1e-6, `trimmed ${Array.from(trimmed)}`);
});
