/**
 * Codecs for a rows × cols float matrix (row-major Float32Array) — the logits a client sends for
 * the shared proxy set. Isomorphic: no Node-only APIs; every payload field is a plain typed array so
 * msgpack carries it as binary.
 *
 * Payload layouts (all multi-byte values little-endian, whatever the host):
 *
 * - `fp32`: `data` = rows·cols IEEE-754 binary32.                                  4·cols bytes/row
 * - `fp16`: `data` = rows·cols IEEE-754 binary16, round-to-nearest-even (subnormals kept). Finite inputs
 *   beyond ±65504 (the largest half) saturate to ±65504 rather than becoming ±Inf.
 *   Error: |x̂ − x| ≤ 2⁻¹¹·|x| for |x| ≥ 2⁻¹⁴, ≤ 2⁻²⁵ below.                       2·cols bytes/row
 * - `int8`: per-row affine quantisation. `offsets[r]` = row min, `scales[r]` = (max − min)/255 (rounded up
 *   to the next float32 so 255·scale ≥ max − min), `data` = int8 q − 128 with q = round((x − min)/scale)
 *   ∈ [0, 255]. Decode: x̂ = offset + (q)·scale. Error: |x̂ − x| ≤ scale/2 (+ one float32 rounding of
 *   the result, ≤ 2⁻²⁴·|x̂|). Affine (not symmetric) because logit rows are not centred at 0: symmetric
 *   scaling would waste up to half the 256 levels. A constant row has scale 0 and decodes exactly.
 *                                                                               cols + 8 bytes/row
 * - `topk`: the k largest logits per row. `indices` = rows·k column ids (Uint8Array when cols ≤ 256,
 *   else Uint16Array; cols ≤ 65536), in descending value order (ties: lower column first, so the first
 *   argmax is always kept); `data` = rows·k binary16 values (as in fp16); `offsets[r]` = the "rest"
 *   value written into every dropped column on decode:
 *       rest = log( mean_{j ∉ top-k} exp(z_j) ) = logsumexp(tail) − log(cols − k),
 *   so the softmax (at T = 1) of the decoded row gives every kept class exactly its original probability
 *   (up to fp16 rounding) and the dropped classes share the original tail mass evenly: total softmax
 *   mass is preserved. rest ≤ max(tail) ≤ the k-th kept value (the encoder also clamps it to the
 *   fp16-rounded k-th value). The decoder makes the ranking strict: a kept value that fp16 rounding made
 *   equal to its predecessor is stepped one float32 ulp down, and the fill is kept strictly below the
 *   last kept value — so the decoded top-k order and first argmax always match the sender's (ties in the
 *   input resolve to the lower column, as argmax does). At T ≠ 1 the tail mass is only approximately
 *   preserved (exact for a flat tail).                                   k·(2 + idxBytes) + 4 bytes/row
 * - `topk8`: `topk` in about a third of the bytes, for logits only. Softmax is shift-invariant, so no absolute
 *   value travels: a row is sent as the gaps below its top-1, which decodes as 0.
 *   `indices` = rows·k column ids in descending value order (ties: lower column first), packed 4 bits each when
 *   cols ≤ 16 (two per byte, the even one in the low nibble; an odd total leaves the last high nibble 0: ⌈rows·k/2⌉
 *   bytes), 1 byte when cols ≤ 256, else a Uint16Array (2 bytes LE on the wire; cols ≤ 65536). `step` (a header
 *   number, logits per code) quantises every gap. `data` = rows·g uint8 codes, g = (k − 1) + (k < cols ? 1 : 0):
 *   for row r, first q_t = min(255, round((z_top1 − z_top_t)/step)) for t = 2..k, then (when k < cols) the code of
 *   the rest gap z_top1 − rest, rest as `topk` defines it (log of the mean exp of the dropped columns). Codes are
 *   non-decreasing within a row (the encoder makes them so; the validator refuses a decrease).
 *   Decode: top-1 → 0, the t-th kept → −q_t·step, every dropped column → −q_rest·step, each made strictly lower
 *   than its predecessor where codes are equal (one float32 ulp down; from 0 to −2⁻¹²⁶, the smallest *normal*
 *   float32, so no backend that flushes subnormals can tie it with the top-1). So the decoded top-k order, the
 *   first argmax, and "dropped < every kept" match the sender's exactly, as with `topk` — including gaps that
 *   quantise to 0 and gaps that saturate at 255 together.
 *   Error. Let z̃ be the row `topk` would decode in exact arithmetic (kept values, rest in the dropped columns) and
 *   p̃ = softmax(z̃/T). While no code of the row saturates (every gap ≤ 255.5·step), every decoded gap is within
 *   step/2 of the true one (plus float32 rounding of −q·step, exact for a power-of-two step, and one ulp per
 *   equal-code step-down above), the top-1 exactly, so for every class j
 *       |log p̂_j − log p̃_j| ≤ step/T,  i.e.  p̂_j/p̃_j ∈ [e^(−step/T), e^(step/T)],
 *       and in total variation Σ_j |p̂_j − p̃_j| ≤ e^(step/T) − 1
 *   (the log-normaliser moves by at most step/(2T), a gap by at most step/2). At step = 1/16: 6.5% relative at
 *   T = 1, 3.2% at T = 2 (worst case; the quantisation error is uniform, so typically a third of that).
 *   Saturation: a gap beyond 255·step decodes as 255·step, so that class (or every dropped class, for the rest)
 *   gets probability e^(−255·step/T) relative to the top-1 instead of less: mass moves *towards* far classes, at
 *   most m·e^(−255·step/T) of the top-1's for m saturated classes — at step = 1/16 (saturation at 15.94 logits)
 *   1.2e−7·m at T = 1, 3.4e−4·m at T = 2, 0.019·m at T = 4 (for T ≥ 4 pass a coarser `step`, e.g. 1/8).
 *   The SDK's step: the finest power of two in [1/256, 1/16] whose 255 levels cover the largest gap of the matrix
 *   (powers of two: gap/step is exact); `opts.step` overrides it, within [2⁻²⁰, 2¹⁶]. Any consumer must treat
 *   topk8 rows as logits up to a per-row constant: fine for softmax and for every teacher aggregator here
 *   (mean-logits shifts each row by a constant; the rest work on probabilities), wrong for probabilities — which
 *   is why `VALUE_CODECS` excludes it.                       k·idxBits/8 + g bytes/row (4.5 for k = 3, 10 classes)
 *
 * (fp16 and int8 keep no ranking information: two logits closer than the quantisation step may decode
 * equal, so a near-tied argmax can change; values stay within the stated bounds.)
 *
 * WIRE NOTE: msgpackr 2.x with default options (no `moreTypes`) serialises a Float32Array/Uint16Array by
 * copying its *elements* into bytes (truncating them) — silently corrupting `scales`, `offsets` and 16-bit
 * `indices`. Either use `new Packr({ moreTypes: true })` on both ends, or send `toPortableMatrix(enc)` (every
 * array as little-endian Uint8Array bytes) and run `fromPortableMatrix` on receipt before validating.
 *
 * Encoders throw on non-finite input (a sender must never send NaN/Inf). `validateEncodedMatrix` checks
 * everything a receiver needs (codec, dims, exact lengths, array types, finite scales/offsets/values,
 * index ranges); `decodeMatrix` re-checks the structure and throws, so it never reads out of bounds.
 */

export type LogitCodecName = 'fp32' | 'fp16' | 'int8' | 'topk' | 'topk8';
export const LOGIT_CODECS: readonly LogitCodecName[] = ['fp32', 'fp16', 'int8', 'topk', 'topk8'];
/**
 * The codecs that carry a matrix's values themselves (up to rounding), the only ones fit for probabilities (soft
 * labels, noisy DP probabilities). `topk8` carries each row only up to an additive constant: logits only.
 */
export const VALUE_CODECS: readonly LogitCodecName[] = ['fp32', 'fp16', 'int8', 'topk'];

/** topk8: the range a `step` must lie in (wider than any useful step; keeps every decoded value a normal float32). */
export const TOPK8_MIN_STEP = 2 ** -20;
export const TOPK8_MAX_STEP = 2 ** 16;
/** topk8: the SDK's default step lies in [1/256, 1/16] (saturating at 255/16 ≈ 15.94 logits below the top-1). */
export const TOPK8_FINEST_DEFAULT_STEP = 1 / 256;
export const TOPK8_COARSEST_DEFAULT_STEP = 1 / 16;

export interface EncodedMatrix {
  codec: LogitCodecName;
  rows: number;
  cols: number;
  /** Raw little-endian payload bytes: Float32 / IEEE half / int8 per element (see the module doc). */
  data: Uint8Array;
  /** int8: per-row quantisation step. */
  scales?: Float32Array;
  /** int8: per-row minimum; topk: per-row value of the dropped columns. */
  offsets?: Float32Array;
  /** topk, topk8: entries kept per row. */
  k?: number;
  /** topk, topk8: rows·k column ids (topk8 with cols ≤ 16: packed two per byte). */
  indices?: Uint8Array | Uint16Array;
  /** topk8: logits per gap code. */
  step?: number;
}

/** Largest finite binary16 value. */
export const FP16_MAX = 65504;
/** Largest element count accepted by the validator/decoder (keeps every byte count a safe integer and allocations sane). */
export const MAX_ELEMENTS = 2 ** 30;

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// Shared scratch views for bit-level float conversion (no per-element allocation).
const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/**
 * IEEE binary32 → binary16 bits, round-to-nearest-even, with subnormals, ±Inf, NaN (→ quiet NaN 0x7e00).
 * Finite values ≥ 65520 in magnitude round to ±Inf (as IEEE prescribes); the encoders saturate first.
 */
export function float32ToFloat16Bits(x: number): number {
  scratchF32[0] = x;
  let u = scratchU32[0];
  const sign = (u >>> 16) & 0x8000;
  u &= 0x7fffffff;
  if (u >= 0x47800000) {
    // |x| ≥ 65536, Inf or NaN.
    return sign | (u > 0x7f800000 ? 0x7e00 : 0x7c00);
  }
  if (u < 0x38800000) {
    // |x| < 2^-14: half subnormal (or zero). Adding 0.5 puts the half mantissa in the low float bits;
    // the float32 store rounds to nearest even. (The float64 sum is exact whenever it matters.)
    scratchU32[0] = u;
    scratchF32[0] = scratchF32[0] + 0.5;
    return sign | (scratchU32[0] - 0x3f000000);
  }
  // Normal: rebias the exponent (127 → 15) and round the 13 dropped mantissa bits to nearest even.
  const mantOdd = (u >>> 13) & 1;
  u = u - 0x38000000 + 0xfff + mantOdd;
  return sign | (u >>> 13);
}

/** IEEE binary16 bits → number (exact). */
export function float16BitsToFloat32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 5.960464477539063e-8; // 2^-24
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1024 + m) * 2 ** (e - 25);
}

let halfTable: Float32Array | null = null;
/** 65536-entry binary16 → float32 lookup (256 KiB, built on first use). */
function halfToFloatTable(): Float32Array {
  if (!halfTable) {
    const t = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) t[h] = float16BitsToFloat32(h);
    halfTable = t;
  }
  return halfTable;
}

/** Round a number through binary16 (saturating finite values to ±65504). */
export function roundToFloat16(x: number): number {
  return float16BitsToFloat32(float32ToFloat16Bits(saturate16(x)));
}

function saturate16(x: number): number {
  return x > FP16_MAX ? FP16_MAX : x < -FP16_MAX ? -FP16_MAX : x;
}

// ---------------------------------------------------------------------------------------------
// Little-endian byte helpers.

function f32ToBytes(values: Float32Array, count: number): Uint8Array {
  const out = new Uint8Array(count * 4);
  if (LITTLE_ENDIAN) {
    new Float32Array(out.buffer).set(values.subarray(0, count));
  } else {
    const dv = new DataView(out.buffer);
    for (let i = 0; i < count; i++) dv.setFloat32(i * 4, values[i], true);
  }
  return out;
}

/** Host-order Float32Array from little-endian bytes (always a fresh copy). */
function bytesToF32(data: Uint8Array, count: number): Float32Array {
  if (LITTLE_ENDIAN) {
    const out = new Float32Array(count);
    if (data.byteOffset % 4 === 0) out.set(new Float32Array(data.buffer, data.byteOffset, count));
    else new Uint8Array(out.buffer).set(data.subarray(0, count * 4));
    return out;
  }
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = dv.getFloat32(i * 4, true);
  return out;
}

/** Host-order Uint16Array view/copy of little-endian bytes (read only). */
function bytesToU16(data: Uint8Array, count: number): Uint16Array {
  if (LITTLE_ENDIAN) {
    if (data.byteOffset % 2 === 0) return new Uint16Array(data.buffer, data.byteOffset, count);
    // Copy through a fresh buffer (not data.slice(): a Node Buffer's slice is a view, not a copy).
    const out = new Uint16Array(count);
    new Uint8Array(out.buffer).set(data.subarray(0, count * 2));
    return out;
  }
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const out = new Uint16Array(count);
  for (let i = 0; i < count; i++) out[i] = dv.getUint16(i * 2, true);
  return out;
}

function u16ToBytes(halves: Uint16Array): Uint8Array {
  if (LITTLE_ENDIAN) return new Uint8Array(halves.buffer, halves.byteOffset, halves.byteLength);
  const out = new Uint8Array(halves.length * 2);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < halves.length; i++) dv.setUint16(i * 2, halves[i], true);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Encode.

/** Default k for `topk`: max(3, ⌈cols/10⌉), at most cols (10 classes → 3, 100 classes → 10). */
export function defaultTopK(cols: number): number {
  return Math.min(cols, Math.max(3, Math.ceil(cols / 10)));
}

/** Bytes per matrix row of a codec's payload (excluding the msgpack envelope). */
export function bytesPerRow(codec: LogitCodecName, cols: number, k?: number): number {
  switch (codec) {
    case 'fp32':
      return 4 * cols;
    case 'fp16':
      return 2 * cols;
    case 'int8':
      return cols + 8;
    case 'topk': {
      const kk = Math.min(cols, k ?? defaultTopK(cols));
      return kk * (2 + (cols <= 256 ? 1 : 2)) + 4;
    }
    case 'topk8': {
      // Amortised: with 4-bit ids a matrix holds ⌈rows·k/2⌉ id bytes, so an odd rows·k adds half a byte once.
      const kk = Math.min(cols, k ?? defaultTopK(cols));
      return (kk * topk8IndexBits(cols)) / 8 + topk8GapCount(kk, cols);
    }
  }
}

/** topk8: bits per column id — 4 when cols ≤ 16, 8 when cols ≤ 256, else 16. */
export function topk8IndexBits(cols: number): 4 | 8 | 16 {
  return cols <= 16 ? 4 : cols <= 256 ? 8 : 16;
}

/** topk8: gap codes per row — the k − 1 kept below the top-1, and the rest when any column is dropped. */
export function topk8GapCount(k: number, cols: number): number {
  return k - 1 + (k < cols ? 1 : 0);
}

/** topk8 index bytes for `count` ids. */
function topk8IndexBytes(count: number, cols: number): number {
  const bits = topk8IndexBits(cols);
  return bits === 4 ? Math.ceil(count / 2) : (count * bits) / 8;
}

/**
 * Encode `values` (rows·cols, row-major) with `codec`. Throws on a shape mismatch, on any non-finite
 * value, (topk, topk8) on cols > 65536 or a k that is not an integer ≥ 1 (k > cols is clamped to cols), and
 * (topk8) on a `step` outside [TOPK8_MIN_STEP, TOPK8_MAX_STEP] (absent: chosen per matrix, see the module doc).
 */
export function encodeMatrix(
  values: Float32Array,
  rows: number,
  cols: number,
  codec: LogitCodecName,
  opts: { k?: number; step?: number } = {},
): EncodedMatrix {
  if (!Number.isSafeInteger(rows) || rows < 0 || !Number.isSafeInteger(cols) || cols < 1) {
    throw new Error(`encodeMatrix: bad shape ${rows}×${cols}`);
  }
  const n = rows * cols;
  if (n > MAX_ELEMENTS) throw new Error(`encodeMatrix: ${rows}×${cols} exceeds ${MAX_ELEMENTS} elements`);
  if (!(values instanceof Float32Array) || values.length !== n) {
    throw new Error(`encodeMatrix: expected a Float32Array of ${n} values, got ${(values as { length?: number })?.length}`);
  }
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (v - v !== 0) {
      throw new Error(`encodeMatrix: non-finite value ${v} at row ${Math.floor(i / cols)}, col ${i % cols}`);
    }
  }
  switch (codec) {
    case 'fp32':
      return { codec, rows, cols, data: f32ToBytes(values, n) };
    case 'fp16': {
      const halves = new Uint16Array(n);
      for (let i = 0; i < n; i++) halves[i] = float32ToFloat16Bits(saturate16(values[i]));
      return { codec, rows, cols, data: u16ToBytes(halves) };
    }
    case 'int8':
      return encodeInt8(values, rows, cols);
    case 'topk':
      return encodeTopK(values, rows, cols, opts.k);
    case 'topk8':
      return encodeTopK8(values, rows, cols, opts.k, opts.step);
    default:
      throw new Error(`encodeMatrix: unknown codec ${String(codec)}`);
  }
}

function encodeInt8(values: Float32Array, rows: number, cols: number): EncodedMatrix {
  const data = new Uint8Array(rows * cols);
  const q8 = new Int8Array(data.buffer);
  const scales = new Float32Array(rows);
  const offsets = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    let min = Infinity;
    let max = -Infinity;
    for (let j = 0; j < cols; j++) {
      const v = values[base + j];
      if (v < min) min = v;
      if (v > max) max = v;
    }
    const range = max - min; // exact in float64
    let scale = Math.fround(range / 255);
    if (scale * 255 < range) {
      // Round the step up one float32 ulp so 255 levels always cover [min, max].
      scratchF32[0] = scale;
      scratchU32[0] += 1;
      scale = scratchF32[0];
    }
    scales[r] = scale;
    offsets[r] = min;
    if (scale === 0) {
      for (let j = 0; j < cols; j++) q8[base + j] = -128;
      continue;
    }
    const inv = 1 / scale;
    for (let j = 0; j < cols; j++) {
      let q = Math.round((values[base + j] - min) * inv);
      // Guard the single-rounding `inv` approximation: pick the nearer of q and its neighbours.
      const x = values[base + j] - min;
      if (q > 0 && Math.abs(x - (q - 1) * scale) < Math.abs(x - q * scale)) q--;
      else if (q < 255 && Math.abs(x - (q + 1) * scale) < Math.abs(x - q * scale)) q++;
      if (q < 0) q = 0;
      else if (q > 255) q = 255;
      q8[base + j] = q - 128;
    }
  }
  return { codec: 'int8', rows, cols, data, scales, offsets };
}

/** The k of a top-k codec: `kOpt` (default `defaultTopK`) clamped to cols; throws on cols > 65536 or a bad k. */
function topKOf(codec: string, cols: number, kOpt: number | undefined): number {
  if (cols > 65536) throw new Error(`encodeMatrix(${codec}): cols ${cols} > 65536`);
  const kReq = kOpt ?? defaultTopK(cols);
  if (!Number.isInteger(kReq) || kReq < 1) throw new Error(`encodeMatrix(${codec}): k must be an integer ≥ 1, got ${kReq}`);
  return Math.min(kReq, cols);
}

/**
 * The k largest values of row `base` into topV/topI, descending; ties keep the lower column first (so the first
 * argmax is always topI[0]). Partial insertion selection: O(cols·k), and k is small.
 */
function selectTopK(values: Float32Array, base: number, cols: number, k: number, topV: Float64Array, topI: Int32Array): void {
  let count = 0;
  for (let j = 0; j < cols; j++) {
    const v = values[base + j];
    if (count === k && !(v > topV[k - 1])) continue;
    let p = count < k ? count++ : k - 1;
    while (p > 0 && topV[p - 1] < v) {
      topV[p] = topV[p - 1];
      topI[p] = topI[p - 1];
      p--;
    }
    topV[p] = v;
    topI[p] = j;
  }
}

/**
 * `rest` of a row whose columns flagged in `kept` are kept: log(mean over the others of exp(z_j)), in float64
 * with the tail max subtracted (never overflows). ≤ the tail max, since the mean of exp is ≤ its max.
 */
function restOfRow(values: Float32Array, base: number, cols: number, kept: Uint8Array, logTail: number): number {
  let m = -Infinity;
  for (let j = 0; j < cols; j++) if (!kept[j] && values[base + j] > m) m = values[base + j];
  let s = 0;
  for (let j = 0; j < cols; j++) if (!kept[j]) s += Math.exp(values[base + j] - m);
  return m + Math.log(s) - logTail;
}

function encodeTopK(values: Float32Array, rows: number, cols: number, kOpt: number | undefined): EncodedMatrix {
  const k = topKOf('topk', cols, kOpt);
  const indices = cols <= 256 ? new Uint8Array(rows * k) : new Uint16Array(rows * k);
  const halves = new Uint16Array(rows * k);
  const offsets = new Float32Array(rows);
  const topV = new Float64Array(k);
  const topI = new Int32Array(k);
  const kept = new Uint8Array(cols);
  const logTail = Math.log(cols - k);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    selectTopK(values, base, cols, k, topV, topI);
    for (let t = 0; t < k; t++) {
      indices[r * k + t] = topI[t];
      halves[r * k + t] = float32ToFloat16Bits(saturate16(topV[t]));
      kept[topI[t]] = 1;
    }
    const kthDecoded = float16BitsToFloat32(halves[r * k + k - 1]);
    let rest = kthDecoded;
    if (k < cols) rest = Math.min(restOfRow(values, base, cols, kept, logTail), kthDecoded);
    offsets[r] = rest; // kthDecoded is float32-exact and fround is monotone, so offsets[r] ≤ kthDecoded.
    for (let t = 0; t < k; t++) kept[topI[t]] = 0;
  }
  return { codec: 'topk', rows, cols, data: u16ToBytes(halves), offsets, k, indices };
}

/** topk8's default step: the finest power of two in [1/256, 1/16] with 255·step ≥ maxGap (1/16 beyond 15.94). */
export function defaultTopK8Step(maxGap: number): number {
  let step = TOPK8_FINEST_DEFAULT_STEP;
  while (step < TOPK8_COARSEST_DEFAULT_STEP && 255 * step < maxGap) step *= 2;
  return step;
}

function isTopK8Step(step: unknown): step is number {
  return typeof step === 'number' && step >= TOPK8_MIN_STEP && step <= TOPK8_MAX_STEP; // false for NaN
}

function encodeTopK8(
  values: Float32Array,
  rows: number,
  cols: number,
  kOpt: number | undefined,
  stepOpt: number | undefined,
): EncodedMatrix {
  const k = topKOf('topk8', cols, kOpt);
  if (stepOpt !== undefined && !isTopK8Step(stepOpt)) {
    throw new Error(`encodeMatrix(topk8): step must be a number in [2^-20, 2^16], got ${stepOpt}`);
  }
  const g = topk8GapCount(k, cols);
  const ids = new Int32Array(rows * k);
  // The gaps z_top1 − z_t (and z_top1 − rest) in float64, kept until the matrix's step is known.
  const gaps = new Float64Array(rows * g);
  const topV = new Float64Array(k);
  const topI = new Int32Array(k);
  const kept = new Uint8Array(cols);
  const logTail = Math.log(cols - k);
  let maxGap = 0;
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    selectTopK(values, base, cols, k, topV, topI);
    for (let t = 0; t < k; t++) {
      ids[r * k + t] = topI[t];
      if (t > 0) gaps[r * g + t - 1] = topV[0] - topV[t];
    }
    if (k < cols) {
      for (let t = 0; t < k; t++) kept[topI[t]] = 1;
      // rest ≤ tail max ≤ the k-th kept value; the max() only guards float64 rounding of that inequality.
      gaps[r * g + k - 1] = Math.max(topV[0] - restOfRow(values, base, cols, kept, logTail), topV[0] - topV[k - 1]);
      for (let t = 0; t < k; t++) kept[topI[t]] = 0;
    }
    // Gaps grow along the row, so its last one is its largest.
    if (g > 0 && gaps[r * g + g - 1] > maxGap) maxGap = gaps[r * g + g - 1];
  }
  const step = stepOpt ?? defaultTopK8Step(maxGap);
  const data = new Uint8Array(rows * g);
  for (let r = 0; r < rows; r++) {
    let prev = 0;
    for (let i = r * g; i < (r + 1) * g; i++) {
      // Nearest code (round() is monotone, and the max() keeps codes non-decreasing along the row whatever the
      // float64 rounding of gap/step did); saturating at 255.
      const q = Math.max(prev, Math.min(255, Math.round(gaps[i] / step)));
      data[i] = q;
      prev = q;
    }
  }
  return { codec: 'topk8', rows, cols, data, k, indices: packTopK8Indices(ids, cols), step };
}

/** Pack column ids at topk8's width: two per byte (even id in the low nibble), one per byte, or a Uint16Array. */
function packTopK8Indices(ids: Int32Array, cols: number): Uint8Array | Uint16Array {
  const bits = topk8IndexBits(cols);
  if (bits === 16) return Uint16Array.from(ids);
  if (bits === 8) return Uint8Array.from(ids);
  const out = new Uint8Array(Math.ceil(ids.length / 2));
  for (let i = 0; i < ids.length; i++) out[i >> 1] |= ids[i] << ((i & 1) << 2);
  return out;
}

/** The i-th column id of topk8 `indices` packed for `cols` (the caller has checked the length). */
function topK8Index(indices: Uint8Array | Uint16Array, bits: 4 | 8 | 16, i: number): number {
  return bits === 4 ? (indices[i >> 1] >> ((i & 1) << 2)) & 15 : indices[i];
}

// ---------------------------------------------------------------------------------------------
// Decode / validate.

/** Largest float32 strictly below finite x. */
function nextDown32(x: number): number {
  if (x === 0) return -1.401298464324817e-45;
  scratchF32[0] = x;
  scratchU32[0] += x > 0 ? -1 : 1;
  return scratchF32[0];
}

/** A float32 strictly below finite x ≤ 0: one ulp down, but from 0 to −2⁻¹²⁶ (normal: survives flush-to-zero). */
function normalBelow(x: number): number {
  return x === 0 ? -(2 ** -126) : nextDown32(x);
}

/** Payload bytes of an encoding: data + scales + offsets + indices (the msgpack envelope adds ~40 bytes). */
export function encodedByteLength(enc: EncodedMatrix): number {
  return (
    enc.data.byteLength +
    (enc.scales?.byteLength ?? 0) +
    (enc.offsets?.byteLength ?? 0) +
    (enc.indices?.byteLength ?? 0)
  );
}

const absent = (v: unknown) => v === undefined || v === null;

/** A value from a peer, for a message: numbers as they are, anything else by its type (never its own toString). */
const shown = (v: unknown): string => (typeof v === 'number' ? String(v) : v === null ? 'null' : typeof v);

/** Structural checks: enough for a decoder never to read out of bounds. Returns an error or null. */
function structuralError(enc: unknown): string | null {
  if (typeof enc !== 'object' || enc === null) return 'encoded matrix must be an object';
  const e = enc as Record<string, unknown>;
  const codec = e.codec;
  if (typeof codec !== 'string' || !(LOGIT_CODECS as readonly string[]).includes(codec)) {
    // Never JSON.stringify/String a peer's value: a BigInt or a map holding `toString` would throw instead.
    return `unknown codec ${typeof codec === 'string' ? `'${codec.slice(0, 32)}'` : typeof codec}`;
  }
  const { rows, cols } = e;
  if (typeof rows !== 'number' || !Number.isSafeInteger(rows) || rows < 0) return `rows must be a non-negative integer, got ${shown(rows)}`;
  if (typeof cols !== 'number' || !Number.isSafeInteger(cols) || cols < 1) return `cols must be a positive integer, got ${shown(cols)}`;
  const n = rows * cols;
  if (n > MAX_ELEMENTS) return `matrix ${rows}×${cols} exceeds ${MAX_ELEMENTS} elements`;
  if (!(e.data instanceof Uint8Array)) return 'data must be a Uint8Array';
  const data = e.data;
  const onlyFields = (allowed: string[]): string | null => {
    for (const f of ['scales', 'offsets', 'k', 'indices', 'step']) {
      if (!allowed.includes(f) && !absent(e[f])) return `field ${f} is not allowed for codec ${codec}`;
    }
    return null;
  };
  switch (codec as LogitCodecName) {
    case 'fp32':
      if (data.byteLength !== n * 4) return `fp32 data must be ${n * 4} bytes, got ${data.byteLength}`;
      return onlyFields([]);
    case 'fp16':
      if (data.byteLength !== n * 2) return `fp16 data must be ${n * 2} bytes, got ${data.byteLength}`;
      return onlyFields([]);
    case 'int8': {
      if (data.byteLength !== n) return `int8 data must be ${n} bytes, got ${data.byteLength}`;
      if (!(e.scales instanceof Float32Array) || e.scales.length !== rows) return `int8 scales must be a Float32Array of ${rows}`;
      if (!(e.offsets instanceof Float32Array) || e.offsets.length !== rows) return `int8 offsets must be a Float32Array of ${rows}`;
      return onlyFields(['scales', 'offsets']);
    }
    case 'topk': {
      const k = e.k;
      if (typeof k !== 'number' || !Number.isInteger(k) || k < 1 || k > cols) return `topk k must be an integer in [1, ${cols}], got ${shown(k)}`;
      if (cols > 65536) return `topk cols ${cols} > 65536`;
      if (data.byteLength !== rows * k * 2) return `topk data must be ${rows * k * 2} bytes, got ${data.byteLength}`;
      if (!(e.indices instanceof Uint8Array || e.indices instanceof Uint16Array) || e.indices.length !== rows * k) {
        return `topk indices must be a Uint8Array or Uint16Array of ${rows * k}`;
      }
      if (!(e.offsets instanceof Float32Array) || e.offsets.length !== rows) return `topk offsets must be a Float32Array of ${rows}`;
      return onlyFields(['offsets', 'k', 'indices']);
    }
    case 'topk8': {
      const k = e.k;
      if (typeof k !== 'number' || !Number.isInteger(k) || k < 1 || k > cols) return `topk8 k must be an integer in [1, ${cols}], got ${shown(k)}`;
      if (cols > 65536) return `topk8 cols ${cols} > 65536`;
      if (!isTopK8Step(e.step)) return `topk8 step must be a number in [2^-20, 2^16], got ${shown(e.step)}`;
      const g = topk8GapCount(k, cols);
      if (data.byteLength !== rows * g) return `topk8 data must be ${rows * g} bytes (${g} codes a row), got ${data.byteLength}`;
      const bits = topk8IndexBits(cols);
      const idxBytes = topk8IndexBytes(rows * k, cols);
      const idx = e.indices;
      const okIdx = bits === 16 ? idx instanceof Uint16Array && idx.length === rows * k : idx instanceof Uint8Array && idx.length === idxBytes;
      if (!okIdx) {
        return `topk8 indices for ${cols} cols must be ${bits === 16 ? `a Uint16Array of ${rows * k}` : `${idxBytes} bytes (${bits} bits per id)`}`;
      }
      return onlyFields(['k', 'indices', 'step']);
    }
  }
}

/**
 * Full receiver-side validation: structure (as `decodeMatrix` needs), expected dims, a byte budget,
 * and content: every decoded value finite (no NaN/Inf halves or floats, finite non-negative int8 scales,
 * finite offsets, int8 rows whose range stays finite in float32, a topk8 step in range), topk/topk8 indices < cols
 * and distinct per row, topk8 codes non-decreasing within a row and its 4-bit padding nibble 0.
 * Returns an error message, or null when `enc` is safe to decode and aggregate.
 */
export function validateEncodedMatrix(
  enc: unknown,
  expect: { rows?: number; cols?: number; maxBytes?: number } = {},
): string | null {
  const err = structuralError(enc);
  if (err) return err;
  const e = enc as EncodedMatrix;
  const { rows, cols } = e;
  if (expect.rows !== undefined && rows !== expect.rows) return `expected ${expect.rows} rows, got ${rows}`;
  if (expect.cols !== undefined && cols !== expect.cols) return `expected ${expect.cols} cols, got ${cols}`;
  const bytes = encodedByteLength(e);
  if (expect.maxBytes !== undefined && bytes > expect.maxBytes) return `payload ${bytes} bytes exceeds limit ${expect.maxBytes}`;
  const n = rows * cols;
  switch (e.codec) {
    case 'fp32': {
      const v = bytesToF32(e.data, n);
      for (let i = 0; i < n; i++) if (v[i] - v[i] !== 0) return `non-finite value at element ${i}`;
      return null;
    }
    case 'fp16':
    case 'topk': {
      const count = e.codec === 'fp16' ? n : rows * e.k!;
      const h = bytesToU16(e.data, count);
      for (let i = 0; i < count; i++) if ((h[i] & 0x7c00) === 0x7c00) return `non-finite half at element ${i}`;
      if (e.codec === 'fp16') return null;
      const k = e.k!;
      const idx = e.indices!;
      const off = e.offsets!;
      const seen = new Int32Array(cols).fill(-1);
      for (let r = 0; r < rows; r++) {
        if (!Number.isFinite(off[r])) return `non-finite rest value in row ${r}`;
        for (let t = 0; t < k; t++) {
          const j = idx[r * k + t];
          if (j >= cols) return `index ${j} out of range in row ${r}`;
          if (seen[j] === r) return `duplicate index ${j} in row ${r}`;
          seen[j] = r;
        }
      }
      return null;
    }
    case 'topk8': {
      const k = e.k!;
      const g = topk8GapCount(k, cols);
      const idx = e.indices!;
      const bits = topk8IndexBits(cols);
      if (bits === 4 && (rows * k) % 2 === 1 && idx[idx.length - 1] >> 4 !== 0) return 'topk8 padding nibble must be 0';
      const seen = new Int32Array(cols).fill(-1);
      for (let r = 0; r < rows; r++) {
        for (let t = 0; t < k; t++) {
          const j = topK8Index(idx, bits, r * k + t);
          if (j >= cols) return `index ${j} out of range in row ${r}`;
          if (seen[j] === r) return `duplicate index ${j} in row ${r}`;
          seen[j] = r;
        }
        for (let i = r * g + 1; i < (r + 1) * g; i++) {
          if (e.data[i] < e.data[i - 1]) return `topk8 gap codes must not decrease along a row (row ${r})`;
        }
      }
      return null;
    }
    case 'int8': {
      const sc = e.scales!;
      const off = e.offsets!;
      for (let r = 0; r < rows; r++) {
        const s = sc[r];
        const o = off[r];
        if (!Number.isFinite(s) || s < 0) return `bad scale ${s} in row ${r}`;
        if (!Number.isFinite(o)) return `bad offset ${o} in row ${r}`;
        if (!Number.isFinite(Math.fround(o + 255 * s))) return `row ${r} range overflows float32`;
      }
      return null;
    }
  }
}

/** Decode to a fresh rows·cols Float32Array. Throws on a structurally invalid encoding (never reads out of bounds). */
export function decodeMatrix(enc: EncodedMatrix): Float32Array {
  const err = structuralError(enc);
  if (err) throw new Error(`decodeMatrix: ${err}`);
  const { rows, cols } = enc;
  const n = rows * cols;
  switch (enc.codec) {
    case 'fp32':
      return bytesToF32(enc.data, n);
    case 'fp16': {
      const h = bytesToU16(enc.data, n);
      const table = halfToFloatTable();
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = table[h[i]];
      return out;
    }
    case 'int8': {
      const q8 = new Int8Array(enc.data.buffer, enc.data.byteOffset, n);
      const sc = enc.scales!;
      const off = enc.offsets!;
      const out = new Float32Array(n);
      for (let r = 0; r < rows; r++) {
        const s = sc[r];
        const o = off[r];
        const base = r * cols;
        for (let j = 0; j < cols; j++) out[base + j] = o + (q8[base + j] + 128) * s;
      }
      return out;
    }
    case 'topk': {
      const k = enc.k!;
      const h = bytesToU16(enc.data, rows * k);
      const idx = enc.indices!;
      const off = enc.offsets!;
      const table = halfToFloatTable();
      const out = new Float32Array(n);
      const vals = new Float64Array(k);
      for (let r = 0; r < rows; r++) {
        const base = r * cols;
        // Entries are stored best-first; where fp16 rounding made one equal to its predecessor, step it one
        // float32 ulp down so the decoded ranking (and hence the first argmax) matches the sender's.
        let prev = Infinity;
        for (let t = 0; t < k; t++) {
          let v = table[h[r * k + t]];
          if (v === prev) v = nextDown32(v);
          vals[t] = v;
          prev = v;
        }
        // Dropped columns: the stored rest value, kept strictly below the last kept value.
        if (k < cols) out.fill(Math.min(off[r], nextDown32(prev)), base, base + cols);
        for (let t = 0; t < k; t++) {
          const j = idx[r * k + t];
          if (j >= cols) throw new Error(`decodeMatrix: topk index ${j} out of range in row ${r}`);
          out[base + j] = vals[t];
        }
      }
      return out;
    }
    case 'topk8': {
      const k = enc.k!;
      const step = enc.step!;
      const g = topk8GapCount(k, cols);
      const codes = enc.data;
      const idx = enc.indices!;
      const bits = topk8IndexBits(cols);
      const out = new Float32Array(n);
      const vals = new Float64Array(k);
      for (let r = 0; r < rows; r++) {
        const base = r * cols;
        // Top-1 at 0; each later entry strictly below its predecessor (equal codes: one float32 step down), so the
        // decoded ranking is the sender's. `!(v < prev)` also catches a decreasing code an unvalidated peer sent.
        let prev = 0;
        vals[0] = 0;
        for (let t = 1; t < k; t++) {
          let v = Math.fround(-codes[r * g + t - 1] * step);
          if (!(v < prev)) v = normalBelow(prev);
          vals[t] = v;
          prev = v;
        }
        if (k < cols) {
          let rest = Math.fround(-codes[r * g + k - 1] * step);
          if (!(rest < prev)) rest = normalBelow(prev);
          out.fill(rest, base, base + cols);
        }
        for (let t = 0; t < k; t++) {
          const j = topK8Index(idx, bits, r * k + t);
          if (j >= cols) throw new Error(`decodeMatrix: topk8 index ${j} out of range in row ${r}`);
          out[base + j] = vals[t];
        }
      }
      return out;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Byte-only form, safe with any msgpack configuration.

/** EncodedMatrix with every array as little-endian Uint8Array bytes (indices: 1 or 2 bytes each). */
export interface PortableEncodedMatrix {
  codec: LogitCodecName;
  rows: number;
  cols: number;
  data: Uint8Array;
  scales?: Uint8Array;
  offsets?: Uint8Array;
  k?: number;
  indices?: Uint8Array;
  step?: number;
}

function u16ArrayToBytes(a: Uint16Array): Uint8Array {
  if (LITTLE_ENDIAN) return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  return u16ToBytes(a);
}

/** Byte-only copy of `enc` for a transport that only carries Uint8Array binaries (arrays are shared, not copied, on little-endian hosts). */
export function toPortableMatrix(enc: EncodedMatrix): PortableEncodedMatrix {
  const out: PortableEncodedMatrix = { codec: enc.codec, rows: enc.rows, cols: enc.cols, data: enc.data };
  if (enc.scales) out.scales = f32ToBytes(enc.scales, enc.scales.length);
  if (enc.offsets) out.offsets = f32ToBytes(enc.offsets, enc.offsets.length);
  if (enc.k !== undefined) out.k = enc.k;
  if (enc.step !== undefined) out.step = enc.step;
  if (enc.indices) out.indices = enc.indices instanceof Uint16Array ? u16ArrayToBytes(enc.indices) : enc.indices;
  return out;
}

/**
 * Inverse of `toPortableMatrix` for untrusted input: byte fields of the right size become Float32Array /
 * Uint16Array (indices are 16-bit when their byte length is 2·rows·k); fields that already have typed-array
 * types (a `moreTypes` msgpack peer) pass through; anything else is left as is. Never throws — pass the
 * result to `validateEncodedMatrix` before using it.
 */
export function fromPortableMatrix(x: unknown): unknown {
  if (typeof x !== 'object' || x === null) return x;
  const e = { ...(x as Record<string, unknown>) };
  const asF32 = (v: unknown): unknown =>
    v instanceof Uint8Array && v.byteLength % 4 === 0 ? bytesToF32(v, v.byteLength / 4) : v;
  e.scales = asF32(e.scales);
  e.offsets = asF32(e.offsets);
  if (e.scales === undefined) delete e.scales;
  if (e.offsets === undefined) delete e.offsets;
  const rows = e.rows;
  const k = e.k;
  const idx = e.indices;
  if (idx instanceof Uint8Array && typeof rows === 'number' && typeof k === 'number' &&
      Number.isSafeInteger(rows * k) && rows * k > 0 && idx.byteLength === 2 * rows * k) {
    e.indices = Uint16Array.from(bytesToU16(idx, rows * k));
  }
  return e;
}
