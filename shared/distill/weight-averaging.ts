import { ROBUST_DEFAULTS, cappedShares, clampClaims, coordinateCentre, lowerMedian, shareCap, trimCount } from './robust.ts';

/**
 * FedAvg's aggregation of K clients' model weights, with robust counterparts so that the baseline faces the same
 * attackers on equal terms as the distillation strategies. Every tensor is a flat Float32Array; math is float64.
 *
 * - `mean`:         Σ_k π_k w_k (McMahan et al.), π ∝ claimed sample counts clamped to claimFactor × the round's
 *                   lower median claim, then capped at maxShare/K (robust.ts) — bounded trust in counts, but one
 *                   client's arbitrary weights still move the mean arbitrarily far: not robust.
 * - `clipped-mean`: the same shares applied to norm-clipped updates. With the global model g and δ_k = w_k − g,
 *                   every δ_k is scaled to ‖δ_k‖₂ ≤ B, B = the lower median of the round's ‖δ_k‖ (Sun et al. 2019,
 *                   "Can you really backdoor federated learning?"; the median makes the bound adaptive and
 *                   unmovable by a minority), then g' = g + Σ_k π_k·min(1, B/‖δ_k‖)·δ_k. An attacker's effect on
 *                   g' is at most π_k·B ≤ (maxShare/K)·B, as small as an honest client's. Honest rounds lose
 *                   little: only the above-median updates are shortened — but a client's share is still up to
 *                   maxShare/K, so 20% label-flipped clients claiming 1e9 samples (clamped to 3× the median, capped
 *                   at 2/K each) cost 16 points in a 10-client run (README, Robust aggregation).
 * - `median`:       coordinate-wise median of the w_k (Yin et al. 2018); robust to < K/2 arbitrary clients.
 * - `trimmed-mean`: coordinate-wise mean after dropping ⌈trimFraction·K⌉ values from each end (Yin et al. 2018).
 *                   The default: measured (10 clients, Dirichlet α = 0.5, 4 rounds) it kept or beat its clean accuracy
 *                   under every attack and was also the best clean (81.7% vs 79.3% for clipped-mean).
 * `median` and `trimmed-mean` are unweighted (a weighted order statistic would hand the claims back their power).
 */
export type FedAvgAggregatorName = 'mean' | 'clipped-mean' | 'median' | 'trimmed-mean';
export const FEDAVG_AGGREGATORS: readonly FedAvgAggregatorName[] = ['mean', 'clipped-mean', 'median', 'trimmed-mean'];

export interface WeightAverageOptions {
  trimFraction?: number;
  maxShare?: number;
  claimFactor?: number;
}

/** The per-client shares of `mean` and `clipped-mean`: clamped claims, capped. */
export function claimShares(claims: number[], opts: WeightAverageOptions = {}): Float64Array {
  const w = clampClaims(claims, opts.claimFactor ?? ROBUST_DEFAULTS.claimFactor);
  return cappedShares(w, shareCap(claims.length, opts.maxShare ?? ROBUST_DEFAULTS.maxShare));
}

/** ‖w_k − g‖₂ over all tensors (float64: even ±3e38 values square to 9e76, far from overflow). */
export function updateNorm(update: Float32Array[], global: Float32Array[]): number {
  let s = 0;
  update.forEach((t, i) => {
    const g = global[i];
    for (let x = 0; x < t.length; x++) {
      const d = t[x] - g[x];
      s += d * d;
    }
  });
  return Math.sqrt(s);
}

/**
 * Aggregate K clients' weights (updates[k][tensor]) given the current global weights and each client's claimed
 * sample count. Returns fresh tensors; throws on an empty round or mismatched shapes.
 */
export function averageWeights(
  name: FedAvgAggregatorName,
  global: Float32Array[],
  updates: Float32Array[][],
  claims: number[],
  opts: WeightAverageOptions = {},
): Float32Array[] {
  const K = updates.length;
  if (K === 0) throw new Error('averageWeights: no updates');
  if (claims.length !== K) throw new Error(`averageWeights: ${claims.length} claims for ${K} updates`);
  updates.forEach((u, k) => {
    if (u.length !== global.length || u.some((t, i) => t.length !== global[i].length)) throw new Error(`averageWeights: update ${k} does not match the global model's shapes`);
  });
  switch (name) {
    case 'mean':
    case 'clipped-mean': {
      const shares = claimShares(claims, opts);
      const scale = new Float64Array(K).fill(1);
      if (name === 'clipped-mean') {
        const norms = updates.map((u) => updateNorm(u, global));
        const bound = lowerMedian(norms);
        norms.forEach((nk, k) => (scale[k] = nk > bound ? bound / nk : 1));
      }
      return global.map((g, i) => {
        const acc = new Float64Array(g.length);
        for (let k = 0; k < K; k++) {
          const f = shares[k] * scale[k];
          if (f === 0) continue;
          const t = updates[k][i];
          for (let x = 0; x < g.length; x++) acc[x] += f * (t[x] - g[x]);
        }
        const out = new Float32Array(g.length);
        for (let x = 0; x < g.length; x++) out[x] = g[x] + acc[x];
        return out;
      });
    }
    case 'median':
    case 'trimmed-mean': {
      const g = name === 'median' ? 0 : trimCount(K, opts.trimFraction ?? ROBUST_DEFAULTS.trimFraction);
      return global.map((_, i) => Float32Array.from(coordinateCentre(updates.map((u) => u[i]), g, name === 'median')));
    }
    default:
      throw new Error(`averageWeights: unknown aggregator ${String(name)}`);
  }
}
