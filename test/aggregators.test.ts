import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  AGGREGATORS,
  accuracyOf,
  aggregate,
  argmaxRows,
  softmaxRows,
  type TeacherLogits,
} from '../shared/distill/aggregators.ts';
import { accuracy, entropyRows, formatSummary, percentile, summarize } from '../shared/metrics.ts';

const { log, sqrt } = Math;

/**
 * 2 teachers × 2 samples × 3 classes, logits chosen as logs so softmax (T = 1) is exact by hand:
 *   A: s0 z = [ln2, 0, 0]      → pA0 = [2,1,1]/4 = [1/2, 1/4, 1/4]
 *      s1 z = [0, ln3, 0]      → pA1 = [1,3,1]/5 = [1/5, 3/5, 1/5]
 *   B: s0 z = [0, ln2, ln5]    → pB0 = [1,2,5]/8 = [1/8, 1/4, 5/8]
 *      s1 z = [ln4, 0, ln3]    → pB1 = [4,1,3]/8 = [1/2, 1/8, 3/8]
 */
const A = new Float32Array([log(2), 0, 0, 0, log(3), 0]);
const B = new Float32Array([0, log(2), log(5), log(4), 0, log(3)]);
const n = 2;
const c = 3;

function close(actual: Float32Array, expected: number[], tol = 2e-6, what = ''): void {
  assert.equal(actual.length, expected.length, what);
  for (let i = 0; i < expected.length; i++) {
    assert.ok(Math.abs(actual[i] - expected[i]) <= tol, `${what}[${i}]: ${actual[i]} vs ${expected[i]}`);
  }
}

test('softmaxRows: exact by-hand values, temperature, stability', () => {
  close(softmaxRows(A, n, c), [1 / 2, 1 / 4, 1 / 4, 1 / 5, 3 / 5, 1 / 5], 1e-7, 'A');
  close(softmaxRows(B, n, c), [1 / 8, 1 / 4, 5 / 8, 1 / 2, 1 / 8, 3 / 8], 1e-7, 'B');
  // T = 2: z/2 = [ln√2, 0, 0] → [√2, 1, 1]/(2 + √2)
  close(softmaxRows(A.subarray(0, 3), 1, c, 2), [sqrt(2) / (2 + sqrt(2)), 1 / (2 + sqrt(2)), 1 / (2 + sqrt(2))], 1e-7, 'T=2');
  // Huge logits: no overflow/NaN.
  close(softmaxRows(new Float32Array([1000, 1000, -1000]), 1, 3), [0.5, 0.5, 0], 0, 'huge');
  assert.throws(() => softmaxRows(A, 3, 3));
  assert.throws(() => softmaxRows(A, n, c, 0));
});

test('mean-logits = softmax(mean z / T)', () => {
  // s0: mean z = [ln2/2, ln2/2, ln5/2] → [√2, √2, √5]/(2√2 + √5)
  // s1: mean z = [ln2, ln√3, ln√3]     → [2, √3, √3]/(2 + 2√3)
  const d0 = 2 * sqrt(2) + sqrt(5);
  const d1 = 2 + 2 * sqrt(3);
  close(aggregate('mean-logits', [{ logits: A }, { logits: B }], n, c),
    [sqrt(2) / d0, sqrt(2) / d0, sqrt(5) / d0, 2 / d1, sqrt(3) / d1, sqrt(3) / d1], 2e-6, 'mean-logits');
  // ≈ [0.279241, 0.279241, 0.441518, 0.366025, 0.316987, 0.316987]
});

test('mean-probs = mean softmax', () => {
  // s0: ([1/2,1/4,1/4] + [1/8,1/4,5/8]) / 2 = [5/16, 1/4, 7/16]
  // s1: ([1/5,3/5,1/5] + [1/2,1/8,3/8]) / 2 = [7/20, 29/80, 23/80]
  close(aggregate('mean-probs', [{ logits: A }, { logits: B }], n, c), [5 / 16, 1 / 4, 7 / 16, 7 / 20, 29 / 80, 23 / 80]);
});

test('weighted: sample-count weights', () => {
  // wA = 3, wB = 1: s0 = (3·pA0 + pB0)/4 = [13/32, 8/32, 11/32]; s1 = (3·pA1 + pB1)/4 = [44, 77, 39]/160
  close(aggregate('weighted', [{ logits: A, weight: 3 }, { logits: B, weight: 1 }], n, c),
    [13 / 32, 8 / 32, 11 / 32, 44 / 160, 77 / 160, 39 / 160]);
  // No weights at all → mean-probs.
  close(aggregate('weighted', [{ logits: A }, { logits: B }], n, c), [5 / 16, 1 / 4, 7 / 16, 7 / 20, 29 / 80, 23 / 80]);
  // All-zero weights → equal weights.
  close(aggregate('weighted', [{ logits: A, weight: 0 }, { logits: B, weight: 0 }], n, c), [5 / 16, 1 / 4, 7 / 16, 7 / 20, 29 / 80, 23 / 80]);
});

test('weighted: label-count-aware per-class trust', () => {
  // A holds classes {0, 2} (10 each), B holds {1, 2}. Class 0 comes from A only, class 1 from B only,
  // class 2 is the equal-weight average; then renormalise.
  // s0: q = [1/2, 1/4, (1/4 + 5/8)/2 = 7/16], Σ = 19/16 → [8, 4, 7]/19
  // s1: q = [1/5, 1/8, (1/5 + 3/8)/2 = 23/80] = [16, 10, 23]/80, Σ = 49/80 → [16, 10, 23]/49
  const expected = [8 / 19, 4 / 19, 7 / 19, 16 / 49, 10 / 49, 23 / 49];
  close(aggregate('weighted', [{ logits: A, classCounts: [10, 0, 10] }, { logits: B, classCounts: [0, 10, 10] }], n, c), expected);
  // Explicit weights consistent with the histograms give the same result.
  close(aggregate('weighted', [{ logits: A, weight: 20, classCounts: [10, 0, 10] }, { logits: B, weight: 20, classCounts: [0, 10, 10] }], n, c), expected);
  // Class 2 held by nobody → that column falls back to sample weights (10, 10): same numbers.
  close(aggregate('weighted', [{ logits: A, classCounts: [10, 0, 0] }, { logits: B, classCounts: [0, 10, 0] }], n, c), expected);
  // A teacher without a histogram spreads its weight uniformly: A (weight 30 → 10 per class) vs B [0, 10, 10]:
  // class 0: A only; class 1: (10·pA + 10·pB)/20; class 2: same.
  // s0: q = [1/2, 1/4, 7/16], same as above; s1: q = [1/5, (3/5 + 1/8)/2 = 29/80, 23/80] = [16, 29, 23]/80 → /68
  close(aggregate('weighted', [{ logits: A, weight: 30 }, { logits: B, classCounts: [0, 10, 10] }], n, c),
    [8 / 19, 4 / 19, 7 / 19, 16 / 68, 29 / 68, 23 / 68]);
});

test('era = softmax(mean probs / 0.1)', () => {
  // s0: [5/16, 1/4, 7/16]/0.1 = [3.125, 2.5, 4.375] → e^[-1.25, -1.875, 0] / Σ
  //     = [0.2865048, 0.1533550, 1]/1.4398598 = [0.1989810, 0.1065069, 0.6945121]
  // s1: [3.5, 3.625, 2.875] → e^[-0.125, 0, -0.75]/Σ = [0.8824969, 1, 0.4723666]/2.3548635
  //     = [0.3747550, 0.4246531, 0.2005919]
  close(aggregate('era', [{ logits: A }, { logits: B }], n, c),
    [0.1989810, 0.1065069, 0.6945121, 0.3747550, 0.4246531, 0.2005919], 2e-6, 'era');
  // eraTemperature 1 on mean probs [5/16,1/4,7/16]: e^[5/16,4/16,7/16] / Σ — still sums to 1 and keeps the ranking.
  const soft = aggregate('era', [{ logits: A }, { logits: B }], n, c, { eraTemperature: 1 });
  const e = [Math.exp(5 / 16), Math.exp(4 / 16), Math.exp(7 / 16)];
  const s = e[0] + e[1] + e[2];
  close(soft.subarray(0, 3), e.map((x) => x / s), 2e-6, 'era T=1');
});

test('confidence: per-sample weights exp(−H) or max prob', () => {
  // s0: H(pA0) = 1.5 ln2 → wA = 2^-1.5 = 0.3535534;  H(pB0) = 2.75 ln2 − 0.625 ln5 → wB = 2^-2.75·5^0.625 = 0.4064656
  //     p = (wA·pA0 + wB·pB0)/(wA + wB) = [0.2994463, 0.25, 0.4505537]
  // s1: wA = 0.2^0.4·0.6^0.6 = 0.3866364;  wB = exp(−(0.5 ln2 + 0.125 ln8 + 0.375 ln(8/3))) = 0.3774509
  //     p = [0.3481968, 0.3653551, 0.2864481]
  close(aggregate('confidence', [{ logits: A }, { logits: B }], n, c),
    [0.2994463, 0.25, 0.4505537, 0.3481968, 0.3653551, 0.2864481], 2e-6, 'confidence');
  // max prob: s0 wA = 1/2, wB = 5/8 → (0.5·pA0 + 0.625·pB0)/1.125 = [7/24, 1/4, 11/24]
  //           s1 wA = 3/5, wB = 1/2 → [0.37, 0.4225, 0.3075]/1.1
  close(aggregate('confidence', [{ logits: A }, { logits: B }], n, c, { confidenceMeasure: 'max' }),
    [7 / 24, 1 / 4, 11 / 24, 0.37 / 1.1, 0.4225 / 1.1, 0.3075 / 1.1], 2e-6, 'confidence max');
});

test('median: coordinate-wise, renormalised, robust', () => {
  // Two teachers: the median of two is their mean → mean-probs.
  close(aggregate('median', [{ logits: A }, { logits: B }], n, c), [5 / 16, 1 / 4, 7 / 16, 7 / 20, 29 / 80, 23 / 80]);
  // Third teacher C: s0 z = [0, 0, ln6] → [1/8, 1/8, 3/4];  s1 z = [ln6, 0, 0] → [3/4, 1/8, 1/8]
  // s0 medians: {1/2,1/8,1/8}=1/8, {1/4,1/4,1/8}=1/4, {1/4,5/8,3/4}=5/8 → Σ = 1 → [1/8, 1/4, 5/8]
  // s1 medians: {1/5,1/2,3/4}=1/2, {3/5,1/8,1/8}=1/8, {1/5,3/8,1/8}=1/5 → Σ = 0.825 → [20, 5, 8]/33
  const C = new Float32Array([0, 0, log(6), log(6), 0, 0]);
  close(aggregate('median', [{ logits: A }, { logits: B }, { logits: C }], n, c), [1 / 8, 1 / 4, 5 / 8, 20 / 33, 5 / 33, 8 / 33]);
  // Three agreeing honest teachers and two colluding attackers: the median returns the honest answer
  // exactly, while mean-probs flips the argmax of both samples to the attacked class 2.
  const evil = { logits: new Float32Array([0, 0, 50, 0, 0, 50]) };
  const med = aggregate('median', [{ logits: A }, evil, { logits: A }, evil, { logits: A }], n, c);
  close(med, [1 / 2, 1 / 4, 1 / 4, 1 / 5, 3 / 5, 1 / 5], 1e-7, 'median under attack');
  const mean = aggregate('mean-probs', [{ logits: A }, evil, { logits: A }, evil, { logits: A }], n, c);
  assert.deepEqual(Array.from(argmaxRows(mean, n, c)), [2, 2]);
});

test('every aggregator: rows sum to 1, temperature, shape checks', () => {
  const K = 5;
  const nn = 40;
  const cc = 10;
  let seed = 12345;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const teachers: TeacherLogits[] = Array.from({ length: K }, (_, k) => ({
    logits: Float32Array.from({ length: nn * cc }, () => (rnd() - 0.5) * 20),
    weight: 10 + k,
    classCounts: Array.from({ length: cc }, () => Math.floor(rnd() * 5)),
  }));
  for (const name of AGGREGATORS) {
    for (const temperature of [1, 3]) {
      const p = aggregate(name, teachers, nn, cc, { temperature });
      assert.equal(p.length, nn * cc);
      for (let i = 0; i < nn; i++) {
        let s = 0;
        for (let j = 0; j < cc; j++) {
          assert.ok(p[i * cc + j] >= 0 && Number.isFinite(p[i * cc + j]));
          s += p[i * cc + j];
        }
        assert.ok(Math.abs(s - 1) < 1e-5, `${name} T=${temperature} row ${i} sums to ${s}`);
      }
    }
  }
  // Higher T softens: mean-logits max prob decreases.
  const sharp = aggregate('mean-logits', teachers, nn, cc, { temperature: 1 });
  const softer = aggregate('mean-logits', teachers, nn, cc, { temperature: 4 });
  assert.ok(Math.max(...softer) < Math.max(...sharp));
  // Shape and input errors.
  assert.throws(() => aggregate('mean-probs', [], n, c), /no teachers/);
  assert.throws(() => aggregate('mean-probs', [{ logits: A }, { logits: B.subarray(0, 5) }], n, c), /teacher 1/);
  assert.throws(() => aggregate('mean-probs', [{ logits: A }], 3, c));
  assert.throws(() => aggregate('weighted', [{ logits: A, classCounts: [1, 2] }], n, c), /classCounts/);
  assert.throws(() => aggregate('weighted', [{ logits: A, weight: -1 }], n, c), /weight/);
  assert.throws(() => aggregate('mean-logits', [{ logits: new Float32Array([NaN, 0, 0, 0, 0, 0]) }], n, c), /non-finite/);
  assert.throws(() => aggregate('era', [{ logits: A }], n, c, { eraTemperature: 0 }));
  assert.throws(() => aggregate('nope' as never, [{ logits: A }], n, c), /unknown/);
});

test('argmaxRows and accuracyOf', () => {
  const p = new Float32Array([0.1, 0.7, 0.2, 0.5, 0.5, 0, -1, -3, -0.5]);
  assert.deepEqual(Array.from(argmaxRows(p, 3, 3)), [1, 0, 2]); // ties → first
  assert.ok(argmaxRows(p, 3, 3) instanceof Uint8Array);
  assert.ok(argmaxRows(new Float32Array(300), 1, 300) instanceof Int32Array);
  assert.equal(accuracyOf(p, [1, 1, 2], 3, 3), 2 / 3);
  assert.equal(accuracyOf(A, new Uint8Array([0, 1]), n, c), 1);
  assert.equal(accuracyOf(new Float32Array(0), [], 0, 3), 0);
  assert.throws(() => accuracyOf(p, [1, 1], 3, 3));
});

test('metrics: accuracy, entropyRows, summarize', () => {
  assert.equal(accuracy(A, new Uint8Array([0, 1]), c), 1);
  assert.equal(accuracy(A, new Uint8Array([2, 1]), c), 0.5);
  assert.throws(() => accuracy(A, new Uint8Array([0]), c));
  // H([1/2,1/4,1/4]) = 1.5 ln2; H(uniform over 4) = ln4; H(one-hot) = 0
  const h = entropyRows(new Float32Array([0.5, 0.25, 0.25, 0, 1 / 3, 1 / 3, 1 / 3, 0, 0, 0, 1, 0]), 3, 4);
  assert.ok(Math.abs(h[0] - 1.5 * log(2)) < 1e-6 && Math.abs(h[1] - log(3)) < 1e-6 && h[2] === 0, `${h}`);
  // 1..100: mean 50.5, p50 50.5, p90 = 1 + 0.9·99 = 90.1 (linear interpolation), min 1, max 100
  const xs = Array.from({ length: 100 }, (_, i) => 100 - i);
  const s = summarize([...xs, NaN, Infinity]);
  assert.equal(s.count, 100);
  assert.equal(s.mean, 50.5);
  assert.equal(s.min, 1);
  assert.equal(s.max, 100);
  assert.equal(s.p50, 50.5);
  assert.ok(Math.abs(s.p90 - 90.1) < 1e-9);
  assert.ok(Math.abs(s.std - sqrt((100 * 100 - 1) / 12)) < 1e-9);
  assert.equal(percentile([3, 1, 2], 0), 1);
  assert.ok(Number.isNaN(summarize([]).mean));
  assert.match(formatSummary(s, 'ms'), /^n=100 mean=50\.5 .* ms$/);
});
