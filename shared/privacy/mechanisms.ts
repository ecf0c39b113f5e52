import { softmaxRows } from '../distill/aggregators.ts';

/**
 * What a client does to its upload before it leaves: clip to a known L2 norm (which fixes the sensitivity Δ), add
 * N(0, σ²) with σ = z·Δ (z the noise multiplier the accountant in ./rdp.ts is told about), and nothing else — any
 * later processing of the noisy upload (the server's simplex projection, aggregation, distillation) is
 * post-processing and costs no privacy. Isomorphic: randomness only from `crypto.getRandomValues`.
 *
 * Known limit: the noise is float64 Box–Muller, not a discrete Gaussian; floating-point sampling leaks in the low
 * bits in theory (Mironov 2012; Jin et al. 2022). Rounding the upload to float32 removes most of those bits.
 */

function checkNonNegativeFinite(x: number, what: string): void {
  if (!(typeof x === 'number' && Number.isFinite(x) && x >= 0)) {
    throw new Error(`${what} must be a finite number ≥ 0, got ${x}`);
  }
}

function checkPositiveFinite(x: number, what: string): void {
  if (!(typeof x === 'number' && Number.isFinite(x) && x > 0)) {
    throw new Error(`${what} must be a finite number > 0, got ${x}`);
  }
}

/** getRandomValues fills at most 65,536 bytes per call. */
const RANDOM_CHUNK_WORDS = 16_384;
const TWO_POW_26 = 67_108_864;
const TWO_POW_M53 = 2 ** -53;

function cryptoOrThrow(): Crypto {
  const c = (globalThis as { crypto?: Crypto }).crypto;
  if (!c || typeof c.getRandomValues !== 'function') {
    throw new Error('gaussianNoise: globalThis.crypto.getRandomValues is not available');
  }
  return c;
}

/**
 * `count` independent N(0, std²) draws. Box–Muller on uniforms u ∈ (0, 1) with 53 random bits each (two 32-bit words
 * → 27 + 26 bits, plus ½ ulp so u is never 0 or 1): x = √(−2 ln u₁)·cos(2π u₂), y = √(−2 ln u₁)·sin(2π u₂).
 * Cryptographic randomness, never Math.random (whose state can be recovered from outputs). std = 0 → zeros.
 */
export function gaussianNoise(count: number, std: number): Float64Array {
  if (!(Number.isSafeInteger(count) && count >= 0)) {
    throw new Error(`gaussianNoise: count must be an integer ≥ 0, got ${count}`);
  }
  checkNonNegativeFinite(std, 'gaussianNoise: std');
  const out = new Float64Array(count);
  if (std === 0 || count === 0) return out;
  const crypto = cryptoOrThrow();
  const words = new Uint32Array(RANDOM_CHUNK_WORDS);
  let w = RANDOM_CHUNK_WORDS;
  const uniform = (): number => {
    if (w + 2 > RANDOM_CHUNK_WORDS) {
      crypto.getRandomValues(words);
      w = 0;
    }
    const hi = words[w++] >>> 5; // 27 bits
    const lo = words[w++] >>> 6; // 26 bits
    return (hi * TWO_POW_26 + lo + 0.5) * TWO_POW_M53;
  };
  for (let i = 0; i < count; i += 2) {
    const r = std * Math.sqrt(-2 * Math.log(uniform()));
    const theta = 2 * Math.PI * uniform();
    out[i] = r * Math.cos(theta);
    if (i + 1 < count) out[i + 1] = r * Math.sin(theta);
  }
  return out;
}

/** ‖v‖₂ of the float32 rounding of v — what actually leaves the client. */
function float32Norm(v: Float64Array): number {
  let s = 0;
  for (let j = 0; j < v.length; j++) {
    const x = Math.fround(v[j]);
    s += x * x;
  }
  return Math.sqrt(s);
}

/**
 * Scales v (in place) to L2 norm ≤ clip, and keeps that true after rounding to float32 (rounding can add ~1e-7
 * relative; the bound is the sensitivity, so it must hold for what is released, not only in float64).
 */
function clipInPlace(v: Float64Array, clip: number): void {
  const norm = float32Norm(v);
  if (norm <= clip) return;
  const base = Float64Array.from(v);
  let scale = clip / norm;
  for (let attempt = 0; attempt < 8; attempt++) {
    for (let j = 0; j < v.length; j++) v[j] = base[j] * scale;
    if (float32Norm(v) <= clip) return;
    scale *= 1 - 2 ** -22; // a few float32 ulps down
  }
  throw new Error('clip: could not meet the norm bound in float32'); // unreachable for finite input
}

/**
 * Row-wise p = softmax(z/T), each row scaled to L2 norm ≤ clip, plus N(0, noiseStd²) on every entry. Returns n·c
 * float32 (entries may be negative or > 1: the server projects back onto the simplex, which is post-processing).
 * A probability row has ‖p‖₂ ≤ ‖p‖₁ = 1, so clip ≥ 1 never changes it; clip < 1 shrinks confident rows.
 */
export function privatizeProbabilities(
  logits: Float32Array,
  n: number,
  c: number,
  o: { temperature: number; clip: number; noiseStd: number },
): Float32Array {
  checkPositiveFinite(o.clip, 'privatizeProbabilities: clip');
  checkNonNegativeFinite(o.noiseStd, 'privatizeProbabilities: noiseStd');
  for (let i = 0; i < logits.length; i++) {
    if (!Number.isFinite(logits[i])) throw new Error(`privatizeProbabilities: logit ${i} is not finite (${logits[i]})`);
  }
  const probs = softmaxRows(logits, n, c, o.temperature); // checks shape and temperature
  const noise = gaussianNoise(n * c, o.noiseStd);
  const out = new Float32Array(n * c);
  const row = new Float64Array(c);
  for (let i = 0; i < n; i++) {
    const base = i * c;
    for (let j = 0; j < c; j++) row[j] = probs[base + j];
    clipInPlace(row, o.clip);
    for (let j = 0; j < c; j++) out[base + j] = Math.fround(row[j]) + noise[base + j];
  }
  return out;
}

/**
 * DP-FedAvg client step (McMahan et al. 2018, "Learning differentially private recurrent language models"):
 * d = local − global over ALL tensors as one vector, scaled to ‖d‖₂ ≤ clip, plus N(0, noiseStd²) per coordinate;
 * returns global + noisy d (same shapes) and the pre-clip norm ‖d‖₂ (for logs and for tuning clip).
 */
export function privatizeUpdate(
  local: Float32Array[],
  global: Float32Array[],
  o: { clip: number; noiseStd: number },
): { weights: Float32Array[]; norm: number } {
  checkPositiveFinite(o.clip, 'privatizeUpdate: clip');
  checkNonNegativeFinite(o.noiseStd, 'privatizeUpdate: noiseStd');
  if (local.length !== global.length) {
    throw new Error(`privatizeUpdate: ${local.length} local tensors vs ${global.length} global`);
  }
  let total = 0;
  for (let k = 0; k < local.length; k++) {
    if (local[k].length !== global[k].length) {
      throw new Error(`privatizeUpdate: tensor ${k} has ${local[k].length} values locally, ${global[k].length} globally`);
    }
    total += local[k].length;
  }
  const d = new Float64Array(total);
  let off = 0;
  for (let k = 0; k < local.length; k++) {
    const l = local[k];
    const g = global[k];
    for (let j = 0; j < l.length; j++) {
      const v = l[j] - g[j];
      if (!Number.isFinite(v)) {
        throw new Error(`privatizeUpdate: tensor ${k} value ${j} is not finite (local ${l[j]}, global ${g[j]})`);
      }
      d[off++] = v;
    }
  }
  let sq = 0;
  for (let j = 0; j < total; j++) sq += d[j] * d[j];
  const norm = Math.sqrt(sq);
  const scale = norm > o.clip ? o.clip / norm : 1;
  const noise = gaussianNoise(total, o.noiseStd);
  const weights: Float32Array[] = [];
  off = 0;
  for (let k = 0; k < local.length; k++) {
    const g = global[k];
    const w = new Float32Array(g.length);
    for (let j = 0; j < g.length; j++, off++) w[j] = g[j] + scale * d[off] + noise[off];
    weights.push(w);
  }
  return { weights, norm };
}

/**
 * Euclidean projection of each row onto the probability simplex {p ≥ 0, Σp = 1} (Duchi, Shalev-Shwartz, Singer &
 * Chandra 2008, Fig. 1): sort u = row descending, ρ = max{j : u_j − (Σ_{r≤j} u_r − 1)/j > 0},
 * θ = (Σ_{r≤ρ} u_r − 1)/ρ, p = max(row − θ, 0). O(c log c) per row, float64 inside, float32 out.
 */
export function projectRowsToSimplex(x: ArrayLike<number>, n: number, c: number): Float32Array {
  if (!Number.isSafeInteger(n) || n < 0 || !Number.isSafeInteger(c) || c < 1) {
    throw new Error(`projectRowsToSimplex: bad shape ${n}×${c}`);
  }
  if (x.length !== n * c) throw new Error(`projectRowsToSimplex: expected ${n * c} values, got ${x.length}`);
  const out = new Float32Array(n * c);
  const u = new Float64Array(c);
  for (let i = 0; i < n; i++) {
    const base = i * c;
    for (let j = 0; j < c; j++) {
      const v = x[base + j];
      if (!Number.isFinite(v)) throw new Error(`projectRowsToSimplex: value (${i}, ${j}) is not finite (${v})`);
      u[j] = v;
    }
    u.sort();
    u.reverse();
    let cum = 0;
    let theta = 0;
    for (let j = 0; j < c; j++) {
      cum += u[j];
      const t = (cum - 1) / (j + 1);
      if (u[j] - t > 0) theta = t; // the condition holds for a prefix of j, so the last hit is ρ
    }
    for (let j = 0; j < c; j++) out[base + j] = Math.max(x[base + j] - theta, 0);
  }
  return out;
}

/**
 * L2 sensitivity Δ of one client's whole upload, and the neighbouring relation it is relative to. The noise
 * multiplier the accountant needs is z = noiseStd / Δ.
 * - probabilities, R rows, clip C: clipped rows are non-negative with norm ≤ C, so two of them differ by at most
 *   √2·C (‖a − b‖² = ‖a‖² + ‖b‖² − 2a·b ≤ 2C² since a·b ≥ 0: 'replace', one client's data swapped for any other's,
 *   the local-DP view of an upload) and one is at most C from zero ('add-remove', the view of a sum over clients);
 *   the R×c matrix: × √R.
 * - model update, clip S: 'replace' 2S (two vectors in the S-ball), 'add-remove' S.
 */
export function uploadSensitivity(
  o: { kind: 'probs'; rows: number; clip: number } | { kind: 'update'; clip: number },
  adjacency: 'replace' | 'add-remove',
): number {
  if (adjacency !== 'replace' && adjacency !== 'add-remove') {
    throw new Error(`uploadSensitivity: unknown adjacency ${String(adjacency)}`);
  }
  checkPositiveFinite(o.clip, 'uploadSensitivity: clip');
  if (o.kind === 'probs') {
    if (!(Number.isSafeInteger(o.rows) && o.rows >= 1)) {
      throw new Error(`uploadSensitivity: rows must be an integer ≥ 1, got ${o.rows}`);
    }
    return (adjacency === 'replace' ? Math.SQRT2 : 1) * o.clip * Math.sqrt(o.rows);
  }
  if (o.kind === 'update') return (adjacency === 'replace' ? 2 : 1) * o.clip;
  throw new Error(`uploadSensitivity: unknown kind ${String((o as { kind: unknown }).kind)}`);
}

/**
 * The noise multiplier the accountant charges for one upload whose noise is z times its clip-based norm (C·√rows for
 * probabilities, S for an update): z · norm / Δ. Alone (`local`: the upload must hide any change of the client's
 * data) Δ is the replace sensitivity, so z/√2 for probabilities and z/2 for updates; for a sum the noise is split
 * over (`central`, `distributed`), Δ is the add/remove sensitivity, so z. The server's ledger and the clients' own
 * accountants both charge this, so their ε agree.
 */
export function accountedNoiseMultiplier(z: number, upload: 'probs' | 'update', mode: 'local' | 'central' | 'distributed'): number {
  const unit = upload === 'probs' ? ({ kind: 'probs', rows: 1, clip: 1 } as const) : ({ kind: 'update', clip: 1 } as const);
  return z / uploadSensitivity(unit, mode === 'local' ? 'replace' : 'add-remove');
}
