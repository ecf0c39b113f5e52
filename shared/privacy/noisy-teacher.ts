import type { AggregatorName } from '../distill/aggregators.ts';
import { coordinateCentre, trimCount } from '../distill/robust.ts';
import { projectRowsToSimplex } from './mechanisms.ts';

/**
 * The teacher from K clients' noisy probabilities (n×c each, DP noise on every entry, so rows leave the simplex).
 * The noise is zero-mean, so the plain coordinate-wise mean is the unbiased estimate, and its noise shrinks as 1/√K;
 * `median` and `trimmed-mean` are kept when asked for (robust to a few arbitrary uploads, at some variance). Every
 * other aggregator weighs clients by their clean probabilities (confidence, claimed counts, sharpening), which noisy
 * rows cannot give, so it becomes the mean. The result is projected onto the simplex (Euclidean projection).
 */
export function combineNoisyProbs(aggregator: AggregatorName, noisy: Float32Array[], n: number, c: number, trimFraction: number): Float32Array {
  const K = noisy.length;
  if (K === 0) throw new Error('combineNoisyProbs: no uploads');
  for (const [k, x] of noisy.entries()) if (x.length !== n * c) throw new Error(`combineNoisyProbs: upload ${k} has ${x.length} values, expected ${n * c}`);
  // The same coordinate-wise centre the robust aggregators use (g = 0: the plain mean).
  const out = coordinateCentre(noisy, aggregator === 'trimmed-mean' ? trimCount(K, trimFraction) : 0, aggregator === 'median');
  return projectRowsToSimplex(out, n, c);
}

/**
 * Probabilities softmax(z/T₁) moved to temperature T₂: softmax(z/T₂) ∝ p^(T₁/T₂), row by row (zeros stay zero).
 * The clients noise probabilities at one temperature; the student distills at the round's.
 */
export function retemper(p: Float32Array, n: number, c: number, from: number, to: number): Float32Array {
  if (from === to) return p;
  const e = from / to;
  const out = new Float32Array(n * c);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < c; j++) s += out[i * c + j] = p[i * c + j] > 0 ? Math.pow(p[i * c + j], e) : 0;
    for (let j = 0; j < c; j++) out[i * c + j] = s > 0 ? out[i * c + j] / s : 1 / c;
  }
  return out;
}
