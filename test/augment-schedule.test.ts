import { test } from 'node:test';
import assert from 'node:assert/strict';
import { augmentBatch } from '../shared/data/augment.ts';
import { balanceWorkers } from '../simulations/simulate.ts';
import { distillEpochsFor } from '../server/strategies/ensemble.ts';

/** A 4×5 single-channel image whose pixel (y, x) holds 1 + 10·y + x, so every move is visible. */
function image(h = 4, w = 5): Float32Array {
  const f = new Float32Array(h * w);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) f[y * w + x] = 1 + 10 * y + x;
  return f;
}

/** A random() that replays the given draws (augmentBatch takes dy, dx, then the flip coin, per image). */
function draws(...xs: number[]): () => number {
  let i = 0;
  return () => {
    if (i >= xs.length) throw new Error('more draws than expected');
    return xs[i++];
  };
}

test('augmentBatch shifts with a zero border and mirrors left-right, per image', () => {
  const shape = [4, 5, 1] as const;
  // maxShift 1: a draw d in [0,1) picks floor(3d) − 1. dy: 0.9 → +1 (down), dx: 0.0 → −1 (left), coin 0.9 → no flip.
  const a = image();
  augmentBatch(a, 1, shape, draws(0.9, 0.0, 0.9), { maxShift: 1, flip: true });
  for (let y = 0; y < 4; y++) {
    for (let x = 0; x < 5; x++) {
      const sy = y - 1;
      const sx = x + 1;
      const want = sy < 0 || sx >= 5 ? 0 : 1 + 10 * sy + sx;
      assert.equal(a[y * 5 + x], want, `shifted pixel (${y}, ${x})`);
    }
  }
  // No shift, coin 0.1 → flip: each row reversed.
  const b = image();
  augmentBatch(b, 1, shape, draws(0.5, 0.5, 0.1), { maxShift: 1, flip: true });
  for (let y = 0; y < 4; y++) for (let x = 0; x < 5; x++) assert.equal(b[y * 5 + x], 1 + 10 * y + (4 - x));
  // Two images, the first untouched (no shift, no flip), the second flipped: one draw triple each.
  const two = new Float32Array([...image(), ...image()]);
  augmentBatch(two, 2, shape, draws(0.5, 0.5, 0.9, 0.5, 0.5, 0.1), { maxShift: 1, flip: true });
  assert.deepEqual(Array.from(two.subarray(0, 20)), Array.from(image()));
  assert.equal(two[20], 5);
  // Channels move together.
  const rgb = new Float32Array([1, 2, 3, 4, 5, 6]); // 1×2 image, 3 channels
  augmentBatch(rgb, 1, [1, 2, 3], draws(0.1), { maxShift: 0, flip: true });
  assert.deepEqual(Array.from(rgb), [4, 5, 6, 1, 2, 3]);
  assert.throws(() => augmentBatch(new Float32Array(7), 1, shape, Math.random, { maxShift: 1, flip: true }), /not 1 images/);
});

test('augmentBatch keeps every image a permutation-with-zeros of itself (mass only lost at the border)', () => {
  const shape = [28, 28, 1] as const;
  let seed = 7;
  const random = () => ((seed = (seed * 16807) % 2147483647) - 1) / 2147483646;
  const batch = new Float32Array(16 * 784);
  for (let i = 0; i < batch.length; i++) batch[i] = random();
  const before = batch.slice();
  augmentBatch(batch, 16, shape, random, { maxShift: 2, flip: true });
  let moved = 0;
  for (let n = 0; n < 16; n++) {
    const src = new Set(before.subarray(n * 784, (n + 1) * 784));
    const out = batch.subarray(n * 784, (n + 1) * 784);
    for (const v of out) assert.ok(v === 0 || src.has(v), 'every output pixel comes from the same image');
    if (out.some((v, i) => v !== before[n * 784 + i])) moved++;
  }
  assert.ok(moved >= 12, `most images change (${moved} of 16)`);
});

test('balanceWorkers deals the largest loads first to the lightest worker', () => {
  // The demo split's client sizes (seed 1): round-robin gives 27,371 vs 22,629 samples.
  const sizes = [3071, 5714, 5691, 1832, 6165, 5729, 7483, 3878, 4961, 5476];
  const bins = balanceWorkers(sizes, 2);
  assert.deepEqual(bins.flat().sort((a, b) => a - b), sizes.map((_, i) => i), 'every client once');
  const loads = bins.map((b) => b.reduce((s, i) => s + sizes[i], 0));
  // Round-robin leaves 4,742 samples between the workers; LPT's gap is at most the smallest load it placed last.
  assert.ok(Math.abs(loads[0] - loads[1]) <= 1500, `balanced: ${loads}`);
  for (const b of bins) assert.deepEqual(b, [...b].sort((x, y) => x - y), 'positions in order within a worker');
  assert.deepEqual(balanceWorkers([5, 5, 5], 1), [[0, 1, 2]]);
  assert.deepEqual(balanceWorkers([1], 3), [[0], [], []]);
});

test('distillEpochsFor: early rounds take the samples of a full bank (--distill-fill), later ones --distill-epochs', () => {
  // The demo: 3 epochs, 10,000 proxy rows, 4,500 asked a round: round 1 takes 7 epochs (31,500 samples ≥ 30,000).
  assert.equal(distillEpochsFor(3, 1, 10_000, 4_500), 7);
  assert.equal(distillEpochsFor(3, 1, 10_000, 9_000), 4);
  assert.equal(distillEpochsFor(3, 1, 10_000, 10_000), 3);
  assert.equal(distillEpochsFor(3, 0.5, 10_000, 4_500), 4);
  assert.equal(distillEpochsFor(3, 0, 10_000, 1_500), 3, 'fill 0: --distill-epochs over the bank only');
  assert.equal(distillEpochsFor(3, 1, 10_000, 0), 3);
});
