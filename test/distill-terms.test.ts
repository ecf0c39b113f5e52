import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { mutualLoss } from '../shared/distill/mutual-loss.ts';
import { continualDistillLoss } from '../shared/distill/continual-loss.ts';
import { retemper, scheduledTemperature } from '../shared/distill/temperature.ts';
import { stalenessSummary, stalenessWeight, staleTeacherRow } from '../shared/distill/staleness.ts';
import { klDivergence } from '../shared/distill/kd-loss.ts';
import { buildModel } from '../shared/models/builders.ts';
import { trainSupervised, predictLogits } from '../shared/models/training.ts';
import { softmaxRows } from '../shared/distill/aggregators.ts';
import { Rng } from '../shared/data/rng.ts';

before(async () => {
  await tf.setBackend('cpu');
  await tf.ready();
});

const { log, abs } = Math;
const close = (a: number, b: number, tol = 1e-5) => assert.ok(abs(a - b) < tol, `${a} vs ${b}`);

// The hand example of kd-loss.test.ts, T = 2: student z0 = [ln4,0,0] → softmax(z0/2) = [1/2,1/4,1/4];
// z1 = [0,ln9,0] → softmax(z1/2) = [1/5,3/5,1/5]. Teacher p0 = [1/4,1/4,1/2], p1 = [0,1/2,1/2].
// KD = T²·mean KL = ln2/2 + ln(25/12). With labels [0,2]: CE(softmax(z)) = ln(16.5)/2.
const z = () => tf.tensor2d([[log(4), 0, 0], [0, log(9), 0]]);
const pT = () => tf.tensor2d([[1 / 4, 1 / 4, 1 / 2], [0, 1 / 2, 1 / 2]]);
const oneHot = () => tf.tensor2d([[1, 0, 0], [0, 0, 1]]);
const KD = log(2) / 2 + log(25 / 12);
const CE = log(16.5) / 2;

test('mutual loss = CE(private) + β·T²·KL(p_student ‖ p_client) on proxy rows: hand values', () => {
  // Private batch = the same logits with labels [0, 2]; proxy batch logits z, student probabilities pT.
  close(mutualLoss(z(), oneHot(), z(), pT(), { beta: 0.5, temperature: 2 }).arraySync(), CE + 0.5 * KD);
  close(mutualLoss(z(), oneHot(), z(), pT(), { beta: 0, temperature: 2 }).arraySync(), CE);
  // With the logit adjustment log π = [ln½, ln¼, ln¼]: row 0 → softmax ∝ [2, ¼, ¼], p(0) = 0.8;
  // row 1 → ∝ [½, 9/4, ¼], p(2) = 1/12. CE = (−ln 0.8 + ln 12)/2 = ln(15)/2.
  const prior = tf.tensor1d([log(1 / 2), log(1 / 4), log(1 / 4)]);
  close(mutualLoss(z(), oneHot(), z(), pT(), { beta: 2, temperature: 2, logPrior: prior }).arraySync(), log(15) / 2 + 2 * KD);
  assert.throws(() => mutualLoss(z(), oneHot(), z(), pT(), { beta: -1, temperature: 2 }), /beta/);
});

test('a client trained with the mutual term ends closer to the student on the proxy rows', async () => {
  const rng = new Rng('mutual-behaviour');
  const shape: [number, number, number] = [4, 4, 1];
  const mk = (n: number, labelled: boolean) => ({
    images: Uint8Array.from({ length: n * 16 }, () => Math.floor(rng.next() * 256)),
    labels: labelled ? Uint8Array.from({ length: n }, () => Math.floor(rng.next() * 3)) : null,
    count: n,
    shape,
    numClasses: 3,
  });
  const priv = mk(64, true);
  const proxy = mk(64, false);
  const student = Float32Array.from({ length: 64 * 3 }, (_, i) => [0.8, 0.1, 0.1][i % 3]); // "always class 0"
  const kl = async (beta: number) => {
    const m = buildModel({ kind: 'mlp', inputShape: shape, numClasses: 3, seed: 5 });
    const opt = tf.train.adam(0.01);
    const r = new Rng('same-order');
    await trainSupervised(m, opt, priv, { epochs: 5, batchSize: 16, random: () => r.next(), mimic: { src: proxy, probs: student, beta, temperature: 1, numClasses: 3 } });
    const q = await predictLogits(m, proxy);
    const v = klDivergence(tf.tensor2d(student, [64, 3]), tf.tensor2d(q, [64, 3]), 1).mean().arraySync() as number;
    opt.dispose();
    return v;
  };
  const without = await kl(0);
  const withTerm = await kl(2);
  assert.ok(withTerm < without / 2, `KL to the student: ${withTerm} with β=2 vs ${without} without`);
});

test('previous-student term: loss = KD(teacher) + λ·T²·KL(p_prev ‖ p_student), hand values', () => {
  // p_prev0 = [⅓,⅓,⅓] vs q0 = [½,¼,¼]: KL = ⅓·ln(32/27); p_prev1 = q1 = [1/5,3/5,1/5]: KL = 0.
  // Previous term = T²·mean = 4·(⅓ ln(32/27))/2 = (2/3)·ln(32/27).
  const prev = tf.tensor2d([[1 / 3, 1 / 3, 1 / 3], [1 / 5, 3 / 5, 1 / 5]]);
  const PREV = (2 / 3) * log(32 / 27);
  close(continualDistillLoss(z(), pT(), prev, { temperature: 2, lambda: 0.5 }).arraySync(), KD + 0.5 * PREV);
  close(continualDistillLoss(z(), pT(), prev, { temperature: 2, lambda: 0 }).arraySync(), KD);
  close(continualDistillLoss(z(), pT(), null, { temperature: 2, lambda: 3 }).arraySync(), KD);
  // Row weights apply to the teacher term only: w = [1, 0] → KD = T²·KL0 = ln2.
  close(continualDistillLoss(z(), pT(), prev, { temperature: 2, lambda: 1, sampleWeights: tf.tensor1d([1, 0]) }).arraySync(), log(2) + PREV);
  // The term's gradient pulls the student toward the previous one: at z = prev logits it vanishes.
  const zPrev = tf.variable(tf.tensor2d([[0, 0, 0], [0, log(9), 0]]));
  const g = tf.grad((x: tf.Tensor) => continualDistillLoss(x as tf.Tensor2D, prev, prev, { temperature: 2, lambda: 1 }))(zPrev);
  assert.ok((g.abs().max().arraySync() as number) < 1e-6);
});

test('temperature schedule T(t) = T_max·exp(−k·t), floored at 1', () => {
  close(scheduledTemperature(4, 0, 50), 4);
  close(scheduledTemperature(4, 0.1, 10), 4 * Math.exp(-1));
  assert.equal(scheduledTemperature(4, 0.1, 100), 1);
  assert.throws(() => scheduledTemperature(0, 0.1, 1), /T_max/);
  // A bank label made at T=4 moved to T=2 equals the softmax at T=2 of the same logits.
  const zRow = [1, -0.5, 2.5];
  const out = new Float64Array(3);
  retemper(softmaxRows(zRow, 1, 3, 4), 4 / 2, out);
  const want = softmaxRows(zRow, 1, 3, 2);
  out.forEach((v, j) => close(v, want[j], 1e-6));
});

test('online staleness weighting: (1+s)^−a, per-row teacher of the latest contributions, and the summary', () => {
  assert.equal(stalenessWeight(0, 0.5), 1);
  close(stalenessWeight(3, 0.5), 0.5);
  close(stalenessWeight(3, 0), 1);
  assert.throws(() => stalenessWeight(-1, 1), /staleness/);
  // Student at v5; client A labelled at v5 (s = 0, w = 1), client B at v2 (s = 3, w = 1/4 with a = 1).
  const out = new Float64Array(2);
  const total = staleTeacherRow([{ probs: [1, 0], version: 5 }, { probs: [0, 1], version: 2 }], 5, 2, { exponent: 1, confidence: false }, out);
  close(total, 1.25);
  close(out[0], 0.8);
  close(out[1], 0.2);
  // Equal staleness: the plain mean. Confidence weighting favours the sharper one: w ∝ exp(−H).
  staleTeacherRow([{ probs: [1, 0], version: 1 }, { probs: [0, 1], version: 1 }], 4, 2, { exponent: 2, confidence: false }, out);
  close(out[0], 0.5);
  staleTeacherRow([{ probs: [1, 0], version: 0 }, { probs: [0.5, 0.5], version: 0 }], 0, 2, { exponent: 0, confidence: true }, out);
  close(out[0], (1 * 1 + 0.5 * 0.5) / (1 + 0.5)); // exp(−0) = 1, exp(−ln2) = ½
  // No contributions: zero weight, zero row.
  assert.equal(staleTeacherRow([], 3, 2, { exponent: 1, confidence: true }, out), 0);
  // Histogram [2, 1, 0, 1]: staleness values 0,0,1,3.
  assert.deepEqual(stalenessSummary([2, 1, 0, 1]), { count: 4, mean: 1, p50: 0, p90: 3, max: 3 });
  assert.deepEqual(stalenessSummary([]), { count: 0, mean: 0, p50: 0, p90: 0, max: 0 });
  // Sanity against softmaxRows at T: a teacher row stays a distribution.
  const p = softmaxRows([1, 2, 3, 0, 0, 0], 2, 3, 2);
  const row = new Float64Array(3);
  staleTeacherRow([{ probs: p.subarray(0, 3), version: 0 }, { probs: p.subarray(3, 6), version: 1 }], 2, 3, { exponent: 0.5, confidence: true }, row);
  close(row[0] + row[1] + row[2], 1);
});
