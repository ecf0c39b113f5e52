import { cappedShares, shareCap } from './robust.ts';

/**
 * Staleness-weighted teachers for online (asynchronous) distillation. Every contribution to a proxy row is tagged with
 * the student version the client trained from; at student version V its staleness is s = V − v and it weighs
 *
 *   w(s) = (1 + s)^−a                      (FedAsync's polynomial staleness function, Xie et al. 2019)
 *
 * times, optionally, the contribution's own confidence exp(−H(p)) on that row (as the synchronous 'confidence'
 * aggregator). The teacher of a row is the weighted mean of the latest contribution of each client to it.
 */
export function stalenessWeight(staleness: number, exponent: number): number {
  if (!(staleness >= 0) || !(exponent >= 0)) throw new Error(`stalenessWeight: need staleness ≥ 0 and exponent ≥ 0, got ${staleness}, ${exponent}`);
  return (1 + staleness) ** -exponent;
}

export interface Contribution {
  /** Probabilities for one row (length c, at the distillation temperature). */
  probs: ArrayLike<number>;
  /** Student version the contributing client had trained from. */
  version: number;
  /** Multiplier in [0, 1] of the contribution's weight (the client's reputation). Default 1. */
  trust?: number;
}

/** Teacher probabilities for one row at student version `current`, written into `out` (length c). Returns Σ weights. */
export function staleTeacherRow(
  contributions: Contribution[],
  current: number,
  c: number,
  opts: { exponent: number; confidence: boolean; maxShare?: number },
  out: Float32Array | Float64Array = new Float64Array(c),
): number {
  out.fill(0);
  const w = contributions.map((k) => {
    let v = stalenessWeight(Math.max(0, current - k.version), opts.exponent) * (k.trust ?? 1);
    if (opts.confidence) {
      let h = 0;
      for (let j = 0; j < c; j++) if (k.probs[j] > 0) h -= k.probs[j] * Math.log(k.probs[j]);
      v *= Math.exp(-h);
    }
    return v;
  });
  const total = w.reduce((a, b) => a + b, 0);
  if (!(total > 0)) return total;
  // No contribution above maxShare/K of the row (robust.ts water-filling), as in the synchronous aggregators.
  const shares = cappedShares(w, shareCap(w.length, opts.maxShare ?? 0));
  contributions.forEach((k, i) => {
    for (let j = 0; j < c; j++) out[j] += shares[i] * k.probs[j];
  });
  return total;
}

/** Counts of staleness values (index = staleness in versions) and their summary, for reports. */
export function stalenessSummary(hist: ArrayLike<number>): { count: number; mean: number; p50: number; p90: number; max: number } {
  let count = 0;
  let sum = 0;
  let max = 0;
  for (let s = 0; s < hist.length; s++) {
    count += hist[s];
    sum += s * hist[s];
    if (hist[s] > 0) max = s;
  }
  const quantile = (q: number) => {
    let seen = 0;
    for (let s = 0; s < hist.length; s++) {
      seen += hist[s];
      if (seen >= q * count && count > 0) return s;
    }
    return 0;
  };
  return { count, mean: count ? sum / count : 0, p50: quantile(0.5), p90: quantile(0.9), max };
}
