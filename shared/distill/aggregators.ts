import { ROBUST_DEFAULTS, cappedShares, clampClaims, coordinateCentre, shareCap, trimCount } from './robust.ts';

/**
 * Teacher aggregation: K clients' logits on the same n proxy samples × c classes → one teacher
 * probability matrix (n×c Float32Array, every row sums to 1) at temperature T.
 * Plain typed-array math in float64 accumulators; isomorphic.
 *
 * With p_k = softmax(z_k / T) (row-wise), and every client weighted through *shares* π_k (Σ_k π_k = 1) that are
 * capped: no π_k exceeds maxShare/K (shared/distill/robust.ts: water-filling — the excess over the cap is
 * redistributed to the others in proportion to their weights). A client's `trust` ∈ [0, 1] (its reputation,
 * shared/distill/reputation.ts) multiplies its raw weight before the cap.
 * - `mean-logits`: softmax(Σ_k π_k z_k / T), π ∝ trust             (FedDF logit averaging; a share cap bounds each
 *                  client's weight but not its logits' magnitude, so this one is NOT robust — a baseline)
 * - `mean-probs`:  Σ_k π_k p_k, π ∝ trust
 * - `weighted`:    weight-averaged p_k. Teacher k's claim w_k = `weight` ?? Σ_j classCounts_k[j] ?? 1, clamped to
 *                  claimFactor × the lower median claim of the round (self-reported counts are bounded, not
 *                  believed), times trust. Without any classCounts this is Σ_k π_k p_k with π ∝ w_k. With
 *                  classCounts the average is label-count-aware, per class: teacher k's trust for class j is
 *                  a_kj = w_k · classCounts_k[j] / Σ_j' classCounts_k[j'] (its clamped claim spread over its own
 *                  label histogram — the histogram is used as a distribution only; a teacher without classCounts
 *                  spreads w_k uniformly, a_kj = w_k / c), the column shares π_kj are a_·j capped, then
 *                      q(i,j) = Σ_k π_kj p_k(i,j),   p(i,·) = q(i,·) / Σ_j q(i,j).
 *                  So a client that never saw class j has no say on that class's probability — unless the holders
 *                  of class j are all at the cap, when the rest of the column is spread over the others by w_k
 *                  (a client claiming to be the only holder of a class cannot own that column). A class no teacher
 *                  holds falls back to π ∝ w_k for that column; if all w_k are 0, equal weights are used.
 * - `era`:         DS-FL Entropy Reduction Aggregation: softmax(Σ_k π_k p_k / eraTemperature), π ∝ trust, i.e.
 *                  the averaged probabilities are treated as logits and sharpened (eraTemperature default 0.1).
 * - `confidence`:  selective knowledge transfer: per-sample weights w_k(i) ∝ trust_k · exp(−H(p_k(i))) (entropy in
 *                  nats, so exp(−H) ∈ [1/c, 1]; opts.confidenceMeasure 'max' uses max_j p_k(i,j) instead), capped
 *                  into shares π_k(i) per sample; p(i) = Σ_k π_k(i) p_k(i). The cap is what stops a confident liar
 *                  (one-hot rows, exp(−H) = 1) from owning every row.
 * - `median`:      coordinate-wise median over k of p_k(i,j) (mean of the two middle values for even K),
 *                  renormalised per row; robust to < K/2 arbitrary teachers. An all-zero row becomes uniform.
 * - `trimmed-mean`: coordinate-wise trimmed mean of p_k(i,j): the g = ⌈trimFraction·K⌉ smallest and g largest
 *                  values of each coordinate dropped (at least one kept), the rest averaged, rows renormalised;
 *                  robust to g arbitrary teachers per coordinate, and closer to the mean than the median when
 *                  everyone is honest (default trimFraction 0.2).
 * `median` and `trimmed-mean` weigh nobody, so trust and the cap don't apply to them. `weight` and
 * `classCounts` are used only by `weighted`. Logits are finite but may be huge (float32 up to ±3.4e38): every
 * step is float64 with the row max subtracted, so nothing overflows to NaN.
 * Throws on shape mismatch, an empty teacher list, non-finite logits, or bad options.
 */

export type AggregatorName = 'mean-logits' | 'mean-probs' | 'weighted' | 'era' | 'confidence' | 'median' | 'trimmed-mean';
export const AGGREGATORS: readonly AggregatorName[] = ['mean-logits', 'mean-probs', 'weighted', 'era', 'confidence', 'median', 'trimmed-mean'];

export interface TeacherLogits {
  /** n·c logits, row-major. */
  logits: Float32Array;
  /** e.g. the client's private sample count (used by `weighted`). */
  weight?: number;
  /** the client's private label histogram, length c (used by `weighted`). */
  classCounts?: number[];
  /** Multiplier in [0, 1] of the client's weight, e.g. its reputation. Default 1. */
  trust?: number;
}

export interface AggregateOptions {
  /** Softmax temperature of the teachers (and of the output). Default 1. */
  temperature?: number;
  /** ERA sharpening temperature. Default 0.1. */
  eraTemperature?: number;
  /** Confidence measure of `confidence`. Default 'entropy' (w = exp(−H)). */
  confidenceMeasure?: 'entropy' | 'max';
  /** `trimmed-mean`: fraction of teachers dropped from each end of every coordinate, in [0, 0.5). Default 0.2. */
  trimFraction?: number;
  /** No client's share of any row's teacher exceeds maxShare/K (at least 1/K); 0 = no cap. Default 2. */
  maxShare?: number;
  /** `weighted`: claims are clamped to claimFactor × the round's lower median claim; 0 = no clamp. Default 3. */
  claimFactor?: number;
}

function checkShape(n: number, c: number): void {
  if (!Number.isSafeInteger(n) || n < 0 || !Number.isSafeInteger(c) || c < 1) throw new Error(`bad shape ${n}×${c}`);
}

function checkTemperature(T: number, what: string): void {
  if (!(typeof T === 'number' && Number.isFinite(T) && T > 0)) throw new Error(`${what} must be a positive finite number, got ${T}`);
}

/** Softmax of one row z[base .. base+c) / T into out (float64 math, max subtracted). */
function softmaxRowInto(z: ArrayLike<number>, base: number, c: number, invT: number, out: Float64Array | Float32Array, outBase: number): void {
  let m = -Infinity;
  for (let j = 0; j < c; j++) {
    const v = z[base + j] * invT;
    if (v > m) m = v;
  }
  let s = 0;
  for (let j = 0; j < c; j++) {
    const e = Math.exp(z[base + j] * invT - m);
    out[outBase + j] = e;
    s += e;
  }
  const inv = 1 / s;
  for (let j = 0; j < c; j++) out[outBase + j] *= inv;
}

/** Row-wise softmax(z / T) of an n×c matrix, as a fresh Float32Array. Numerically stable (row max subtracted). */
export function softmaxRows(z: ArrayLike<number>, n: number, c: number, T = 1): Float32Array {
  checkShape(n, c);
  checkTemperature(T, 'temperature');
  if (z.length !== n * c) throw new Error(`softmaxRows: expected ${n * c} values, got ${z.length}`);
  const out = new Float32Array(n * c);
  const row = new Float64Array(c);
  for (let i = 0; i < n; i++) {
    softmaxRowInto(z, i * c, c, 1 / T, row, 0);
    for (let j = 0; j < c; j++) out[i * c + j] = row[j];
  }
  return out;
}

/** Row-wise argmax (first maximum; NaN never wins). Uint8Array when c ≤ 256, else Int32Array. */
export function argmaxRows(p: ArrayLike<number>, n: number, c: number): Uint8Array | Int32Array {
  checkShape(n, c);
  if (p.length !== n * c) throw new Error(`argmaxRows: expected ${n * c} values, got ${p.length}`);
  const out = c <= 256 ? new Uint8Array(n) : new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const base = i * c;
    let best = 0;
    let bv = -Infinity;
    for (let j = 0; j < c; j++) {
      const v = p[base + j];
      if (v > bv) {
        bv = v;
        best = j;
      }
    }
    out[i] = best;
  }
  return out;
}

/** Fraction of rows whose argmax equals the label (works on probabilities or logits). 0 when n = 0. */
export function accuracyOf(probsOrLogits: ArrayLike<number>, labels: ArrayLike<number>, n: number, c: number): number {
  if (labels.length !== n) throw new Error(`accuracyOf: expected ${n} labels, got ${labels.length}`);
  const pred = argmaxRows(probsOrLogits, n, c);
  let hit = 0;
  for (let i = 0; i < n; i++) if (pred[i] === labels[i]) hit++;
  return n === 0 ? 0 : hit / n;
}

/** Each teacher's tempered probabilities, as float64 n·c arrays. */
function teacherProbs(teachers: TeacherLogits[], n: number, c: number, T: number): Float64Array[] {
  return teachers.map((t) => {
    const p = new Float64Array(n * c);
    for (let i = 0; i < n; i++) softmaxRowInto(t.logits, i * c, c, 1 / T, p, i * c);
    return p;
  });
}

/** Σ_k π_k p_k over the whole matrix with fixed shares π (Σ π = 1). */
function sharedMean(probs: Float64Array[], shares: ArrayLike<number>, nc: number): Float64Array {
  const out = new Float64Array(nc);
  probs.forEach((p, k) => {
    const f = shares[k];
    if (f > 0) for (let x = 0; x < nc; x++) out[x] += f * p[x];
  });
  return out;
}

/** Renormalise every row to sum 1 (an all-zero row becomes uniform) and narrow to float32. */
function normalisedRows(q: Float64Array, n: number, c: number): Float32Array {
  const out = new Float32Array(n * c);
  for (let i = 0; i < n; i++) {
    const base = i * c;
    let s = 0;
    for (let j = 0; j < c; j++) s += q[base + j];
    if (s > 0 && Number.isFinite(s)) for (let j = 0; j < c; j++) out[base + j] = q[base + j] / s;
    else out.fill(1 / c, base, base + c);
  }
  return out;
}

/** Per-row shares of `confidence`: trust_k·conf_k(i), capped (water-filling only when some share is over the cap). */
/**
 * A probability row's confidence, `confidence`'s per-sample weight: exp(−H(p)) (entropy in nats, so in [1/c, 1]), or
 * max_j p(j) with measure 'max'. Clients under secure aggregation weigh their own rows with it (client/client.ts).
 */
export function rowConfidence(p: ArrayLike<number>, base: number, c: number, measure: 'entropy' | 'max' = 'entropy'): number {
  if (measure === 'max') {
    let v = 0;
    for (let j = 0; j < c; j++) if (p[base + j] > v) v = p[base + j];
    return v;
  }
  let h = 0;
  for (let j = 0; j < c; j++) {
    const pj = p[base + j];
    if (pj > 0) h -= pj * Math.log(pj);
  }
  return Math.exp(-h);
}

function confidenceTeacher(probs: Float64Array[], trust: number[], n: number, c: number, cap: number, measure: 'entropy' | 'max'): Float64Array {
  const K = probs.length;
  const q = new Float64Array(n * c);
  const wk = new Float64Array(K);
  for (let i = 0; i < n; i++) {
    const base = i * c;
    let ws = 0;
    for (let k = 0; k < K; k++) {
      wk[k] = rowConfidence(probs[k], base, c, measure) * trust[k];
      ws += wk[k];
    }
    let shares: ArrayLike<number>;
    let over = !(ws > 0);
    for (let k = 0; k < K && !over; k++) if (wk[k] > cap * ws) over = true;
    if (over) shares = cappedShares(wk, cap);
    else {
      for (let k = 0; k < K; k++) wk[k] /= ws;
      shares = wk;
    }
    for (let k = 0; k < K; k++) {
      const f = shares[k];
      if (f === 0) continue;
      const p = probs[k];
      for (let j = 0; j < c; j++) q[base + j] += f * p[base + j];
    }
  }
  return q;
}

/** `weighted`: clamped claims × trust spread over each client's label histogram, capped per class column. */
function weightedTeacher(teachers: TeacherLogits[], probs: Float64Array[], trust: number[], n: number, c: number, cap: number, claimFactor: number): Float64Array {
  const K = teachers.length;
  const claims = clampClaims(teachers.map((t) => t.weight ?? (t.classCounts ? t.classCounts.reduce((a, b) => a + b, 0) : 1)), claimFactor);
  let w = Array.from(claims, (x, k) => x * trust[k]);
  if (w.every((x) => x === 0)) w = trust.some((x) => x > 0) ? trust.slice() : w.map(() => 1);
  const anyCounts = teachers.some((t) => t.classCounts !== undefined);
  // Per-class trust a[k][j]: the claim spread over the client's own histogram (a distribution: its total is ignored).
  const a = teachers.map((t, k) => {
    const row = new Float64Array(c);
    const cc = t.classCounts;
    const tot = cc ? cc.reduce((x, y) => x + y, 0) : 0;
    for (let j = 0; j < c; j++) row[j] = !anyCounts ? w[k] : cc ? (tot > 0 && Number.isFinite(tot) ? (w[k] * cc[j]) / tot : 0) : w[k] / c;
    return row;
  });
  const q = new Float64Array(n * c);
  const col = new Float64Array(K);
  for (let j = 0; j < c; j++) {
    for (let k = 0; k < K; k++) col[k] = a[k][j];
    // A class nobody holds (all zero) takes the claim weights; capped holders spill to the others by claim too.
    const shares = cappedShares(col, cap, w);
    for (let k = 0; k < K; k++) {
      const f = shares[k];
      if (f === 0) continue;
      const p = probs[k];
      for (let i = 0; i < n; i++) q[i * c + j] += f * p[i * c + j];
    }
  }
  return q;
}

/** Aggregate K teachers' logits into teacher probabilities (n×c, rows sum to 1). See the module doc. */
export function aggregate(
  name: AggregatorName,
  teachers: TeacherLogits[],
  n: number,
  c: number,
  opts: AggregateOptions = {},
): Float32Array {
  checkShape(n, c);
  const T = opts.temperature ?? 1;
  checkTemperature(T, 'temperature');
  if (!Array.isArray(teachers) || teachers.length === 0) throw new Error('aggregate: no teachers');
  teachers.forEach((t, k) => {
    if (!t || !(t.logits instanceof Float32Array) || t.logits.length !== n * c) {
      throw new Error(`aggregate: teacher ${k} logits must be a Float32Array of ${n}×${c} = ${n * c}, got ${t?.logits?.length}`);
    }
    const z = t.logits;
    for (let x = 0; x < z.length; x++) if (z[x] - z[x] !== 0) throw new Error(`aggregate: teacher ${k} has a non-finite logit at ${x}`);
    if (t.weight !== undefined && !(Number.isFinite(t.weight) && t.weight >= 0)) throw new Error(`aggregate: teacher ${k} weight ${t.weight} must be finite ≥ 0`);
    if (t.trust !== undefined && !(t.trust >= 0 && t.trust <= 1)) throw new Error(`aggregate: teacher ${k} trust ${t.trust} must be in [0, 1]`);
    if (t.classCounts !== undefined) {
      if (!Array.isArray(t.classCounts) || t.classCounts.length !== c) throw new Error(`aggregate: teacher ${k} classCounts must have ${c} entries`);
      for (const v of t.classCounts) if (!(Number.isFinite(v) && v >= 0)) throw new Error(`aggregate: teacher ${k} has a bad class count ${v}`);
    }
  });
  const K = teachers.length;
  const nc = n * c;
  const cap = shareCap(K, opts.maxShare ?? ROBUST_DEFAULTS.maxShare);
  const trust = teachers.map((t) => t.trust ?? 1);
  // Whole-matrix shares of the unweighted averages: trust, capped (everyone distrusted → equal shares).
  const trustShares = () => cappedShares(trust, cap);

  switch (name) {
    case 'mean-logits': {
      const shares = trustShares();
      const mean = new Float64Array(nc);
      teachers.forEach((t, k) => {
        const f = shares[k];
        if (f > 0) for (let x = 0; x < nc; x++) mean[x] += f * t.logits[x];
      });
      return softmaxRows(mean, n, c, T);
    }
    case 'mean-probs':
      return normalisedRows(sharedMean(teacherProbs(teachers, n, c, T), trustShares(), nc), n, c);
    case 'era': {
      const eraT = opts.eraTemperature ?? 0.1;
      checkTemperature(eraT, 'eraTemperature');
      return softmaxRows(sharedMean(teacherProbs(teachers, n, c, T), trustShares(), nc), n, c, eraT);
    }
    case 'weighted':
      return normalisedRows(weightedTeacher(teachers, teacherProbs(teachers, n, c, T), trust, n, c, cap, opts.claimFactor ?? ROBUST_DEFAULTS.claimFactor), n, c);
    case 'confidence': {
      const measure = opts.confidenceMeasure ?? 'entropy';
      if (measure !== 'entropy' && measure !== 'max') throw new Error(`aggregate: unknown confidenceMeasure ${String(measure)}`);
      return normalisedRows(confidenceTeacher(teacherProbs(teachers, n, c, T), trust, n, c, cap, measure), n, c);
    }
    case 'median':
      return normalisedRows(coordinateCentre(teacherProbs(teachers, n, c, T), 0, true), n, c);
    case 'trimmed-mean': {
      const g = trimCount(K, opts.trimFraction ?? ROBUST_DEFAULTS.trimFraction);
      return normalisedRows(coordinateCentre(teacherProbs(teachers, n, c, T), g), n, c);
    }
    default:
      throw new Error(`aggregate: unknown aggregator ${String(name)}`);
  }
}
