import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { kdLoss, klDivergence } from '../shared/distill/kd-loss.ts';

before(async () => {
  await tf.setBackend('cpu');
  await tf.ready();
});

const { log } = Math;

/**
 * Hand example, T = 2, α = 0.7, batch 2, 3 classes:
 *   student z0 = [ln4, 0, 0]: softmax(z0/2) = [2,1,1]/4 = [1/2, 1/4, 1/4];  softmax(z0) = [4,1,1]/6 = [2/3, 1/6, 1/6]
 *   student z1 = [0, ln9, 0]: softmax(z1/2) = [1,3,1]/5 = [1/5, 3/5, 1/5];  softmax(z1) = [1,9,1]/11
 *   teacher p0 = [1/4, 1/4, 1/2], p1 = [0, 1/2, 1/2] (a zero entry: 0·log 0 = 0)
 *   KL0 = 1/4·ln(1/2) + 1/4·ln 1 + 1/2·ln 2 = ln2 / 4                       = 0.1732868
 *   KL1 = 0 + 1/2·ln((1/2)/(3/5)) + 1/2·ln((1/2)/(1/5)) = 1/2·ln(25/12)      = 0.3669846
 *   KD  = T²·mean(KL) = 4·(KL0 + KL1)/2 = ln2/2 + ln(25/12)                  = 1.0805428
 *   labels [0, 2]: CE = (−ln(2/3) − ln(1/11))/2 = ln(16.5)/2                 = 1.4016802
 *   loss = 0.7·KD + 0.3·CE                                                    = 1.1768840
 */
const zS = [[log(4), 0, 0], [0, log(9), 0]];
const pT = [[1 / 4, 1 / 4, 1 / 2], [0, 1 / 2, 1 / 2]];
const KL = [log(2) / 4, 0.5 * log(25 / 12)];
const KD = log(2) / 2 + log(25 / 12);
const CE = log(16.5) / 2;

test('klDivergence per row matches the hand values (safe at p = 0)', () => {
  const kl = klDivergence(tf.tensor2d(pT), tf.tensor2d(zS), 2);
  const v = kl.arraySync();
  assert.equal(kl.shape.length, 1);
  assert.ok(Math.abs(v[0] - KL[0]) < 1e-6 && Math.abs(v[1] - KL[1]) < 1e-6, `${v} vs ${KL}`);
  // KL(p‖p) = 0, including with a zero-probability class.
  const self = klDivergence(tf.tensor2d([[0, 0.5, 0.5]]), tf.tensor2d([[-1e4, 0, 0]]), 1).arraySync();
  assert.ok(Math.abs(self[0]) < 1e-6 && Number.isFinite(self[0]));
});

test('kdLoss: hand-computed value with and without labels', () => {
  const student = tf.tensor2d(zS);
  const teacher = tf.tensor2d(pT);
  const before = tf.memory().numTensors;
  const withLabels = kdLoss(student, teacher, { temperature: 2, alpha: 0.7, labels: tf.tensor1d([0, 2], 'int32') });
  assert.equal(withLabels.shape.length, 0);
  assert.ok(Math.abs(withLabels.dataSync()[0] - (0.7 * KD + 0.3 * CE)) < 1e-5, `${withLabels.dataSync()[0]} vs 1.1768840`);
  // No labels: the whole weight on T²·KL (α is ignored).
  const noLabels = kdLoss(student, teacher, { temperature: 2, alpha: 0.7 });
  assert.ok(Math.abs(noLabels.dataSync()[0] - KD) < 1e-5, `${noLabels.dataSync()[0]} vs 1.0805428`);
  // α = 1 with labels equals the KD term alone; α = 0 the CE alone.
  assert.ok(Math.abs(kdLoss(student, teacher, { temperature: 2, alpha: 1, labels: tf.tensor1d([0, 2], 'int32') }).dataSync()[0] - KD) < 1e-5);
  assert.ok(Math.abs(kdLoss(student, teacher, { temperature: 2, alpha: 0, labels: tf.tensor1d([0, 2], 'int32') }).dataSync()[0] - CE) < 1e-5);
  // Each call leaves exactly one tensor alive (its result): no leaked intermediates.
  const lab = tf.tensor1d([0, 2], 'int32');
  const mark = tf.memory().numTensors;
  const outs = [kdLoss(student, teacher, { temperature: 2, alpha: 0.7, labels: lab }), kdLoss(student, teacher, { temperature: 3, alpha: 0.7 })];
  assert.equal(tf.memory().numTensors - mark, outs.length);
  assert.ok(before > 0);
});

test('kdLoss gradient: analytic formula and finite differences', () => {
  const T = 2;
  const alpha = 0.7;
  const labels = tf.tensor1d([0, 2], 'int32');
  const teacher = tf.tensor2d(pT);
  const f = (z: tf.Tensor2D) => kdLoss(z, teacher, { temperature: T, alpha, labels });
  const g = tf.grad((z: tf.Tensor) => f(z as tf.Tensor2D))(tf.tensor2d(zS)).arraySync() as number[][];
  // d/dz [α·T²·KL(p‖softmax(z/T))] = α·T·(softmax(z/T) − p)/B;  d/dz [(1−α)·CE] = (1−α)·(softmax(z) − onehot)/B
  const qT = [[1 / 2, 1 / 4, 1 / 4], [1 / 5, 3 / 5, 1 / 5]];
  const q1 = [[2 / 3, 1 / 6, 1 / 6], [1 / 11, 9 / 11, 1 / 11]];
  const onehot = [[1, 0, 0], [0, 0, 1]];
  for (let i = 0; i < 2; i++) {
    for (let j = 0; j < 3; j++) {
      const want = (alpha * T * (qT[i][j] - pT[i][j]) + (1 - alpha) * (q1[i][j] - onehot[i][j])) / 2;
      assert.ok(Math.abs(g[i][j] - want) < 1e-5, `analytic grad[${i}][${j}] ${g[i][j]} vs ${want}`);
    }
  }
  // Central finite differences on a random batch (float32: h = 1e-2, tolerance 2e-3).
  const z0 = tf.randomNormal([4, 5], 0, 2, 'float32', 3).arraySync() as number[][];
  const p = tf.softmax(tf.randomNormal([4, 5], 0, 2, 'float32', 4)) as tf.Tensor2D;
  const lab = tf.tensor1d([1, 0, 4, 2], 'int32');
  const loss = (z: number[][]) => kdLoss(tf.tensor2d(z), p, { temperature: 3, alpha: 0.4, labels: lab }).dataSync()[0];
  const grad = tf.grad((z: tf.Tensor) => kdLoss(z as tf.Tensor2D, p, { temperature: 3, alpha: 0.4, labels: lab }))(tf.tensor2d(z0)).arraySync() as number[][];
  const h = 1e-2;
  for (let i = 0; i < 4; i++) {
    for (let j = 0; j < 5; j++) {
      const up = z0.map((r) => r.slice());
      const dn = z0.map((r) => r.slice());
      up[i][j] += h;
      dn[i][j] -= h;
      const fd = (loss(up) - loss(dn)) / (2 * h);
      assert.ok(Math.abs(fd - grad[i][j]) < 2e-3, `fd grad[${i}][${j}] ${fd} vs ${grad[i][j]}`);
    }
  }
});

test('kdLoss input checks', () => {
  const s = tf.tensor2d(zS);
  const t = tf.tensor2d(pT);
  assert.throws(() => kdLoss(s, tf.tensor2d([[1, 0]]), { temperature: 1, alpha: 0.5 }), /shape/);
  assert.throws(() => kdLoss(s, t, { temperature: 0, alpha: 0.5 }), /temperature/);
  assert.throws(() => kdLoss(s, t, { temperature: 1, alpha: 1.5 }), /alpha/);
  assert.throws(() => kdLoss(s, t, { temperature: 1, alpha: 0.5, labels: tf.tensor1d([0], 'int32') }), /labels/);
  // float labels are accepted (cast to int32)
  const v = kdLoss(s, t, { temperature: 2, alpha: 0.7, labels: tf.tensor1d([0, 2]) }).dataSync()[0];
  assert.ok(Math.abs(v - (0.7 * KD + 0.3 * CE)) < 1e-5);
});

test('kdLoss sampleWeights: a weighted mean of per-row KL (weights [1, 0] = the first row alone)', () => {
  const z = tf.tensor2d([[1, 0, -1], [0, 2, 0]]);
  const p = tf.tensor2d([[0.2, 0.5, 0.3], [0.6, 0.2, 0.2]]);
  const T = 2;
  const perRow = klDivergence(p, z, T).arraySync() as number[];
  const first = kdLoss(z, p, { temperature: T, alpha: 1, sampleWeights: tf.tensor1d([1, 0]) }).arraySync() as number;
  assert.ok(Math.abs(first - T * T * perRow[0]) < 1e-6);
  const mixed = kdLoss(z, p, { temperature: T, alpha: 1, sampleWeights: tf.tensor1d([3, 1]) }).arraySync() as number;
  assert.ok(Math.abs(mixed - T * T * (3 * perRow[0] + perRow[1]) / 4) < 1e-6);
  const plain = kdLoss(z, p, { temperature: T, alpha: 1 }).arraySync() as number;
  assert.ok(Math.abs(plain - T * T * (perRow[0] + perRow[1]) / 2) < 1e-6);
  assert.ok(Math.abs(perRow[0] - perRow[1]) > 0.05, 'rows differ, so the weights matter');
  assert.throws(() => kdLoss(z, p, { temperature: T, alpha: 1, sampleWeights: tf.tensor1d([1]) }), /sampleWeights/);
});
