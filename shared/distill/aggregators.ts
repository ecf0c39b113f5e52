/**
 * Teacher aggregation: K clients' logits on the same n proxy samples × c classes → one teacher
 * probability matrix (n×c Float32Array, every row sums to 1) at temperature T.
 * Plain typed-array math in float64 accumulators; isomorphic.
 *
 * With p_k = softmax(z_k / T) (row-wise):
 * - `mean-logits`: softmax(mean_k z_k / T)                                     (FedDF logit averaging)
 * - `mean-probs`:  mean_k p_k
 * - `weighted`:    weight-averaged p_k. Teacher k has a total weight w_k = `weight` ?? Σ_j classCounts_k[j]
 *                  ?? 1. Without any classCounts this is Σ_k w_k p_k / Σ_k w_k. With classCounts the
 *                  average is label-count-aware, per class: teacher k's trust for class j is
 *                  a_kj = w_k · classCounts_k[j] / Σ_j' classCounts_k[j'] (its weight spread over its own
 *                  label histogram; a teacher without classCounts spreads w_k uniformly, a_kj = w_k / c), then
 *                      q(i,j) = Σ_k a_kj p_k(i,j) / Σ_k a_kj,   p(i,·) = q(i,·) / Σ_j q(i,j).
 *                  So a client that never saw class j has no say on that class's probability. A class
 *                  no teacher holds (Σ_k a_kj = 0) falls back to the w_k-weighted average for that column;
 *                  if all w_k are 0, equal weights are used.
 * - `era`:         DS-FL Entropy Reduction Aggregation: softmax(mean_k p_k / eraTemperature), i.e. the
 *                  averaged probabilities are treated as logits and sharpened (eraTemperature default 0.1).
 * - `confidence`:  selective knowledge transfer: per-sample weights w_k(i) ∝ exp(−H(p_k(i))) (entropy in nats,
 *                  so w ∈ [1/c, 1]; opts.confidenceMeasure 'max' uses max_j p_k(i,j) instead), normalised
 *                  over k per sample; p(i) = Σ_k w_k(i) p_k(i).
 * - `median`:      coordinate-wise median over k of p_k(i,j) (mean of the two middle values for even K),
 *                  renormalised per row; robust to < K/2 arbitrary teachers. An all-zero row becomes uniform.
 * `weight` and `classCounts` are used only by `weighted`.
 * Throws on shape mismatch, an empty teacher list, non-finite logits, or bad options.
 */

export type AggregatorName = 'mean-logits' | 'mean-probs' | 'weighted' | 'era' | 'confidence' | 'median';
export const AGGREGATORS: readonly AggregatorName[] = ['mean-logits', 'mean-probs', 'weighted', 'era', 'confidence', 'median'];

export interface TeacherLogits {
  /** n·c logits, row-major. */
  logits: Float32Array;
  /** e.g. the client's private sample count (used by `weighted`). */
  weight?: number;
  /** the client's private label histogram, length c (used by `weighted`). */
  classCounts?: number[];
}

export interface AggregateOptions {
  /** Softmax temperature of the teachers (and of the output). Default 1. */
  temperature?: number;
  /** ERA sharpening temperature. Default 0.1. */
  eraTemperature?: number;
  /** Confidence measure of `confidence`. Default 'entropy' (w = exp(−H)). */
  confidenceMeasure?: 'entropy' | 'max';
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

function meanProbs(probs: Float64Array[], n: number, c: number): Float64Array {
  const out = new Float64Array(n * c);
  for (const p of probs) for (let x = 0; x < n * c; x++) out[x] += p[x];
  const inv = 1 / probs.length;
  for (let x = 0; x < n * c; x++) out[x] *= inv;
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
    if (t.classCounts !== undefined) {
      if (!Array.isArray(t.classCounts) || t.classCounts.length !== c) throw new Error(`aggregate: teacher ${k} classCounts must have ${c} entries`);
      for (const v of t.classCounts) if (!(Number.isFinite(v) && v >= 0)) throw new Error(`aggregate: teacher ${k} has a bad class count ${v}`);
    }
  });
  const K = teachers.length;
  const nc = n * c;

  switch (name) {
    case 'mean-logits': {
      const mean = new Float64Array(nc);
      for (const t of teachers) for (let x = 0; x < nc; x++) mean[x] += t.logits[x];
      for (let x = 0; x < nc; x++) mean[x] /= K;
      const out = new Float32Array(nc);
      const row = new Float64Array(c);
      for (let i = 0; i < n; i++) {
        softmaxRowInto(mean, i * c, c, 1 / T, row, 0);
        for (let j = 0; j < c; j++) out[i * c + j] = row[j];
      }
      return out;
    }
    case 'mean-probs':
      return normalisedRows(meanProbs(teacherProbs(teachers, n, c, T), n, c), n, c);
    case 'era': {
      const eraT = opts.eraTemperature ?? 0.1;
      checkTemperature(eraT, 'eraTemperature');
      const mean = meanProbs(teacherProbs(teachers, n, c, T), n, c);
      const out = new Float32Array(nc);
      const row = new Float64Array(c);
      for (let i = 0; i < n; i++) {
        softmaxRowInto(mean, i * c, c, 1 / eraT, row, 0);
        for (let j = 0; j < c; j++) out[i * c + j] = row[j];
      }
      return out;
    }
    case 'weighted': {
      const probs = teacherProbs(teachers, n, c, T);
      let w = teachers.map((t) => t.weight ?? (t.classCounts ? t.classCounts.reduce((a, b) => a + b, 0) : 1));
      if (w.every((x) => x === 0)) w = w.map(() => 1);
      // Per-class trust a[k][j].
      const anyCounts = teachers.some((t) => t.classCounts !== undefined);
      const a = teachers.map((t, k) => {
        const row = new Float64Array(c);
        const cc = t.classCounts;
        const tot = cc ? cc.reduce((x, y) => x + y, 0) : 0;
        for (let j = 0; j < c; j++) row[j] = !anyCounts ? w[k] : cc ? (tot > 0 ? (w[k] * cc[j]) / tot : 0) : w[k] / c;
        return row;
      });
      for (let j = 0; j < c; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += a[k][j];
        if (s === 0) for (let k = 0; k < K; k++) a[k][j] = w[k];
      }
      const q = new Float64Array(nc);
      for (let j = 0; j < c; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += a[k][j];
        for (let k = 0; k < K; k++) {
          const f = a[k][j] / s;
          if (f === 0) continue;
          const p = probs[k];
          for (let i = 0; i < n; i++) q[i * c + j] += f * p[i * c + j];
        }
      }
      return normalisedRows(q, n, c);
    }
    case 'confidence': {
      const probs = teacherProbs(teachers, n, c, T);
      const measure = opts.confidenceMeasure ?? 'entropy';
      if (measure !== 'entropy' && measure !== 'max') throw new Error(`aggregate: unknown confidenceMeasure ${String(measure)}`);
      const q = new Float64Array(nc);
      const wk = new Float64Array(K);
      for (let i = 0; i < n; i++) {
        const base = i * c;
        let ws = 0;
        for (let k = 0; k < K; k++) {
          const p = probs[k];
          let v: number;
          if (measure === 'max') {
            v = 0;
            for (let j = 0; j < c; j++) if (p[base + j] > v) v = p[base + j];
          } else {
            let h = 0;
            for (let j = 0; j < c; j++) {
              const pj = p[base + j];
              if (pj > 0) h -= pj * Math.log(pj);
            }
            v = Math.exp(-h);
          }
          wk[k] = v;
          ws += v;
        }
        for (let k = 0; k < K; k++) {
          const f = wk[k] / ws;
          const p = probs[k];
          for (let j = 0; j < c; j++) q[base + j] += f * p[base + j];
        }
      }
      return normalisedRows(q, n, c);
    }
    case 'median': {
      const probs = teacherProbs(teachers, n, c, T);
      const q = new Float64Array(nc);
      const col = new Float64Array(K);
      const mid = K >> 1;
      for (let x = 0; x < nc; x++) {
        for (let k = 0; k < K; k++) col[k] = probs[k][x];
        col.sort();
        q[x] = K % 2 === 1 ? col[mid] : 0.5 * (col[mid - 1] + col[mid]);
      }
      return normalisedRows(q, n, c);
    }
    default:
      throw new Error(`aggregate: unknown aggregator ${String(name)}`);
  }
}
