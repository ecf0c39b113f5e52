/** Small, isomorphic evaluation and reporting helpers. */
import { accuracyOf } from './distill/aggregators.ts';

/** Fraction of rows of an n×c logit (or probability) matrix whose first argmax equals the label; n = labels.length. 0 when n = 0. */
export function accuracy(predLogits: Float32Array, labels: Uint8Array, c: number): number {
  if (!Number.isSafeInteger(c) || c < 1) throw new Error(`accuracy: bad class count ${c}`);
  return accuracyOf(predLogits, labels, labels.length, c);
}

/** Shannon entropy (nats) of each row of an n×c probability matrix; 0·log 0 = 0. Rows are used as given (not renormalised). */
export function entropyRows(probs: ArrayLike<number>, n: number, c: number): Float32Array {
  if (probs.length !== n * c) throw new Error(`entropyRows: expected ${n * c} values, got ${probs.length}`);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let h = 0;
    for (let j = 0; j < c; j++) {
      const p = probs[i * c + j];
      if (p > 0) h -= p * Math.log(p);
    }
    out[i] = h;
  }
  return out;
}

/** Distribution summary, e.g. of latencies (ms) or staleness (rounds). All fields NaN when count = 0. */
export interface Summary {
  count: number;
  mean: number;
  std: number;
  min: number;
  max: number;
  p50: number;
  p90: number;
  p95: number;
  p99: number;
}

/** q-quantile (q ∈ [0, 1]) of ascending-sorted values with linear interpolation (numpy's default). NaN when empty. */
export function quantileSorted(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) return NaN;
  const pos = Math.min(Math.max(q, 0), 1) * (n - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, n - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/** q-quantile of unsorted values (copies and sorts). */
export function percentile(values: ArrayLike<number>, q: number): number {
  return quantileSorted(Float64Array.from(values).sort(), q);
}

/** Summary of finite values (non-finite entries are ignored). std is the population standard deviation. */
export function summarize(values: ArrayLike<number>): Summary {
  const xs = Float64Array.from(values).filter((v) => Number.isFinite(v)).sort();
  const n = xs.length;
  if (n === 0) return { count: 0, mean: NaN, std: NaN, min: NaN, max: NaN, p50: NaN, p90: NaN, p95: NaN, p99: NaN };
  let s = 0;
  for (let i = 0; i < n; i++) s += xs[i];
  const mean = s / n;
  let v = 0;
  for (let i = 0; i < n; i++) v += (xs[i] - mean) ** 2;
  return {
    count: n,
    mean,
    std: Math.sqrt(v / n),
    min: xs[0],
    max: xs[n - 1],
    p50: quantileSorted(xs, 0.5),
    p90: quantileSorted(xs, 0.9),
    p95: quantileSorted(xs, 0.95),
    p99: quantileSorted(xs, 0.99),
  };
}

/** One-line rendering, e.g. `n=20 mean=12.3 p50=11.0 p95=20.1 max=25.0 ms`. */
export function formatSummary(s: Summary, unit = '', digits = 1): string {
  if (s.count === 0) return 'n=0';
  const f = (x: number) => x.toFixed(digits);
  return `n=${s.count} mean=${f(s.mean)} min=${f(s.min)} p50=${f(s.p50)} p95=${f(s.p95)} max=${f(s.max)}${unit ? ' ' + unit : ''}`;
}

/** Accuracy on a task's classes from per-class accuracies, weighted by the test rows of each class
 * (the simulator's continual report and the dashboard's per-task plot). */
export function taskAccuracy(perClass: number[], classes: number[], rowsPerClass: number[]): number {
  let hit = 0;
  let n = 0;
  for (const j of classes) {
    if (perClass[j] === undefined || Number.isNaN(perClass[j])) continue;
    hit += perClass[j] * rowsPerClass[j];
    n += rowsPerClass[j];
  }
  return n ? hit / n : NaN;
}
