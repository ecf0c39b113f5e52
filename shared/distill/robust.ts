/**
 * Building blocks of Byzantine-robust aggregation, shared by the teacher aggregators (aggregators.ts), reputation
 * (reputation.ts) and FedAvg's robust averages (weight-averaging.ts). Plain float64 math on typed arrays; isomorphic.
 *
 * Nothing here trusts a client's numbers: shares are capped (no one client's weight can exceed a fixed fraction of
 * any average), claims are clamped to a multiple of what the round's typical client claims, and the coordinate-wise
 * median / trimmed mean ignore the extreme values of each coordinate whatever their magnitude.
 */

/** Defaults every caller shares, so `aggregate()` and the server's settings table agree. */
export const ROBUST_DEFAULTS = {
  /** Fraction of the teachers trimmed from EACH end of every coordinate by `trimmed-mean`. */
  trimFraction: 0.2,
  /**
   * No client's share of an average exceeds maxShare/K (K = clients averaged). Why 2: with a fraction f of attackers
   * each at the cap, their total share is at most f·K·(2/K) = 2f; for f ≤ 0.2 that is ≤ 0.4 < 1/2, so attackers who
   * agree on a wrong class can never outweigh honest teachers that agree on the right one (the right class keeps
   * ≥ 0.6·p_honest against ≤ 0.4 for the wrong one whenever p_honest > 2/3), while a client that is confident where
   * the others are not (non-IID: the expert on its own classes) may still weigh twice the average — which is what
   * confidence weighting needs (measured: README, Robust aggregation). 1 forces equal shares; 0 turns the cap off.
   */
  maxShare: 2,
  /** A client's claimed sample count is clamped to claimFactor × the lower median claim of the round. */
  claimFactor: 3,
} as const;

/**
 * Water-filling: shares π_k ≥ 0 with Σ_k π_k = total, π_k ≤ cap, proportional to w_k among the uncapped:
 *
 *   π_k = min(cap, λ·w_k),   λ chosen so that Σ_k π_k = total.
 *
 * Σ_k min(cap, λ w_k) is continuous and non-decreasing in λ, so λ exists iff total ≤ cap·#{k : w_k > 0}. It is found
 * exactly by sorting: if the t largest weights are capped, λ = (total − t·cap) / Σ_{uncapped} w_k, and t is the
 * smallest count for which the largest uncapped weight stays under the cap (λ·w_(t) ≤ cap). When the positive weights
 * cannot absorb `total` (too few of them), each gets the cap and the sum falls short: the caller spills the rest.
 * This is the Euclidean-free analogue of projecting onto the capped simplex: among all capped share vectors it moves
 * the least relative mass — every uncapped client keeps its relative weight.
 */
export function waterFill(w: ArrayLike<number>, cap: number, total = 1): Float64Array {
  const K = w.length;
  const out = new Float64Array(K);
  const order = Array.from({ length: K }, (_, k) => k).filter((k) => w[k] > 0).sort((a, b) => w[b] - w[a]);
  if (order.length === 0 || total <= 0) return out;
  if (order.length * cap <= total) {
    for (const k of order) out[k] = cap;
    return out;
  }
  // Suffix sums of the sorted weights (float64; weights are finite, so no overflow for any realistic K).
  const suffix = new Float64Array(order.length + 1);
  for (let t = order.length - 1; t >= 0; t--) suffix[t] = suffix[t + 1] + w[order[t]];
  for (let t = 0; t < order.length; t++) {
    const lambda = (total - t * cap) / suffix[t];
    if (lambda * w[order[t]] <= cap) {
      for (let u = 0; u < order.length; u++) out[order[u]] = u < t ? cap : lambda * w[order[u]];
      return out;
    }
  }
  for (const k of order) out[k] = cap; // unreachable: t = order.length − 1 always satisfies the test
  return out;
}

/** The absolute cap for K clients under a `maxShare` multiple: max(maxShare, 1)/K; 0 (off) → 1. */
export function shareCap(K: number, maxShare: number): number {
  if (!(maxShare >= 0) || !Number.isFinite(maxShare)) throw new Error(`maxShare must be a finite number ≥ 0, got ${maxShare}`);
  if (maxShare === 0 || K <= 0) return 1;
  return Math.min(1, Math.max(maxShare, 1) / K);
}

/**
 * Shares of an average: w normalised to sum 1 with no share above `cap`. A client with weight 0 gets nothing unless
 * all the positive ones sit at the cap and mass is left; that remainder is spread over the zero-weight clients by
 * `fallback` (water-filled under the same cap; equal when fallback is absent or zero) — e.g. the `weighted`
 * aggregator's clients that hold none of a class still answer for it when its holders are capped. All weights zero:
 * equal shares. Since cap ≥ 1/K, the shares always sum to 1.
 */
export function cappedShares(w: ArrayLike<number>, cap: number, fallback?: ArrayLike<number>): Float64Array {
  const K = w.length;
  const c = Math.max(cap, 1 / K);
  const out = waterFill(w, c, 1);
  let s = 0;
  for (let k = 0; k < K; k++) s += out[k];
  const left = 1 - s;
  if (left > 1e-12) {
    const zero = Array.from({ length: K }, (_, k) => k).filter((k) => !(w[k] > 0));
    const fw = zero.map((k) => (fallback && fallback[k] > 0 ? fallback[k] : 0));
    const use = fw.some((x) => x > 0) ? fw : zero.map(() => 1);
    const spill = waterFill(use, c, left);
    zero.forEach((k, i) => (out[k] = spill[i]));
  }
  return out;
}

/** Lower median (the ⌊(m−1)/2⌋-th smallest): with two claims it is the smaller, so one liar can't lift it. */
export function lowerMedian(values: ArrayLike<number>): number {
  const v = Float64Array.from(values).sort();
  return v.length ? v[(v.length - 1) >> 1] : NaN;
}

/**
 * Bounded trust in self-reported sample counts: each claim is clamped to claimFactor × the lower median claim of the
 * round (0 = no clamp). A client may legitimately hold a few times more data than the typical one; a claim of 1e9
 * next to a median of 600 counts as 1800. The median itself can only be moved by a majority of liars.
 */
export function clampClaims(claims: ArrayLike<number>, claimFactor: number): Float64Array {
  if (!(claimFactor >= 0) || !Number.isFinite(claimFactor)) throw new Error(`claimFactor must be a finite number ≥ 0, got ${claimFactor}`);
  const out = Float64Array.from(claims);
  if (claimFactor === 0 || out.length === 0) return out;
  const bound = claimFactor * lowerMedian(out);
  for (let k = 0; k < out.length; k++) out[k] = Math.min(out[k], bound);
  return out;
}

/** How many values `trimmed-mean` drops from each end of K: ⌈f·K⌉, but always keeping at least one (K − 2g ≥ 1). */
export function trimCount(K: number, trimFraction: number): number {
  if (!(trimFraction >= 0 && trimFraction < 0.5)) throw new Error(`trimFraction must be in [0, 0.5), got ${trimFraction}`);
  // ⌈f·K⌉ so that "up to a fraction f of arbitrary teachers" is always covered (0.2 of 3 trims 1, not 0); the epsilon
  // keeps 0.1·30 = 3.0000000000000004 from rounding up to 4.
  return Math.min(Math.ceil(trimFraction * K - 1e-9), (K - 1) >> 1);
}

/**
 * Coordinate-wise robust centre of K arrays of equal length: the mean of the values left after dropping the g
 * smallest and g largest of each coordinate (g = 0: the mean; g = (K−1)/2: the median for odd K). `median: true`
 * takes the median instead (mean of the two middle values for even K). Whatever the dropped values are — ±3e38
 * included — they cannot move the result outside the range of the kept ones.
 */
export function coordinateCentre(arrays: ArrayLike<number>[], g: number, median = false): Float64Array {
  const K = arrays.length;
  if (K === 0) throw new Error('coordinateCentre: no arrays');
  const len = arrays[0].length;
  const out = new Float64Array(len);
  const col = new Float64Array(K);
  const mid = K >> 1;
  for (let x = 0; x < len; x++) {
    for (let k = 0; k < K; k++) col[k] = arrays[k][x];
    col.sort();
    if (median) out[x] = K % 2 === 1 ? col[mid] : 0.5 * col[mid - 1] + 0.5 * col[mid];
    else {
      let s = 0;
      for (let k = g; k < K - g; k++) s += col[k];
      out[x] = s / (K - 2 * g);
    }
  }
  return out;
}

/** Total-variation distance ½·Σ_j |p_j − q_j| between two probability rows: in [0, 1], bounded whatever the input. */
export function totalVariation(p: ArrayLike<number>, pBase: number, q: ArrayLike<number>, qBase: number, c: number): number {
  let s = 0;
  for (let j = 0; j < c; j++) s += Math.abs(p[pBase + j] - q[qBase + j]);
  return 0.5 * s;
}
