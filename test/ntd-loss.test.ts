import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { notTrueDistillation } from '../shared/distill/ntd-loss.ts';
import { logLabelPrior } from '../shared/models/training.ts';

await tf.setBackend('cpu');

test('not-true distillation matches hand-computed values and ignores the true class', () => {
  const oneHot = tf.tensor2d([[1, 0, 0]]);
  const zl = tf.tensor2d([[1, 2, 3]]);
  const zg = tf.tensor2d([[0, 1, 0]]);
  // Not-true classes {1,2}. T=1: p_l = softmax([2,3]) = [σ(-1), σ(1)], p_g = softmax([1,0]) = [σ(1), σ(-1)];
  // KL = σ(1)·ln(σ(1)/σ(-1)) + σ(-1)·ln(σ(-1)/σ(1)) = σ(1)·1 − σ(-1)·1 = 0.7310586 − 0.2689414 = 0.4621172.
  assert.ok(Math.abs(notTrueDistillation(zl, zg, oneHot, 1).dataSync()[0] - 0.4621172) < 1e-5);
  // T=2: logits halve, so the log-ratios are ±0.5: KL = 0.5·(σ(0.5) − σ(−0.5)) = 0.5·0.2449187 = 0.1224593; ×T² = 0.4898373.
  assert.ok(Math.abs(notTrueDistillation(zl, zg, oneHot, 2).dataSync()[0] - 0.4898373) < 1e-5);
  // The true class's logit plays no part: neither in the value nor in the gradient.
  const other = tf.tensor2d([[-7, 2, 3]]);
  assert.ok(Math.abs(notTrueDistillation(other, zg, oneHot, 1).dataSync()[0] - 0.4621172) < 1e-5);
  const g = tf.grad((z: tf.Tensor) => notTrueDistillation(z as tf.Tensor2D, zg, oneHot, 1))(zl).dataSync();
  assert.ok(Math.abs(g[0]) < 1e-6, `true-class gradient ${g[0]}`);
  assert.ok(Math.abs(g[1] + g[2]) < 1e-6 && g[2] > 0, `not-true gradients ${g[1]}, ${g[2]}`); // pushes class 2 down, class 1 up
  // Identical distributions: zero.
  assert.ok(Math.abs(notTrueDistillation(zg, zg, oneHot, 1).dataSync()[0]) < 1e-6);
});

test('the label prior for the logit-adjusted loss is add-one smoothed', () => {
  // 3 classes, labels [0,0,0,1]: counts+1 = [4,2,1], total 7.
  const p = logLabelPrior([0, 0, 0, 1], 3);
  assert.deepEqual(Array.from(p, (v) => Math.round(Math.exp(v) * 7 * 1000) / 1000), [4, 2, 1]);
});
