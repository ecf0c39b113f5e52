/**
 * Codecs for model weights on the downlink (the student a round hands to clients of its architecture). Browser-safe:
 * no tfjs, no Node; the server encodes, the SDK decodes (shared/models/wire.ts applyWireWeights does it for every
 * caller, so no consumer ever reads encoded bytes as floats).
 *
 * - `fp32`: `data` = the float32 values (lossless; what checkpoints, exports, FedAvg and the final student use).
 * - `fp16`: `bytes` = n IEEE-754 binary16 values, little-endian, round-to-nearest-even. Relative error ≤ 2^-11 for
 *   normal values; a tensor with a value beyond fp16's range (|x| > 65504) is sent fp32 instead of being clipped.
 * - `int8`: symmetric linear quantisation with one step per output channel: `bytes` = n int8 values q, `scales` = C
 *   float32 steps s_c, and x̂ = q·s_c. C is the last axis of a tensor of rank ≥ 2 (a dense kernel [in, out] or a conv
 *   filter [h, w, in, out] gets one step per output unit, element i belonging to channel i mod C in row-major order)
 *   and 1 for a bias or any rank ≤ 1 tensor. s_c = max|x| over the channel / 127 and q = round(x / s_c) ∈ [−127, 127],
 *   so |x − x̂| ≤ s_c / 2 per element (s_c is rounded to float32 first and q computed against the rounded step, so
 *   the bound holds for the step actually sent). A channel of zeros gets s_c = 0. Per-channel steps matter: one
 *   step per tensor would be set by its largest filter and zero out the small ones.
 *
 * int8 is 4× smaller than fp32 plus 4 bytes per channel (the CNN student: 56,714 weights → ~57 KB instead of 227 KB).
 */
import type { WireTensor, EncodedTensor } from '../protocol/messages.ts';
import { float16BitsToFloat32, float32ToFloat16Bits } from '../tensor/logit-codec.ts';

export type WeightCodecName = 'fp32' | 'fp16' | 'int8';
export const WEIGHT_CODECS: readonly WeightCodecName[] = ['fp32', 'fp16', 'int8'];

const FP16_MAX = 65504;
const INT8_LEVELS = 127;
/** Largest int8 step whose every level (q ∈ [−128, 127]) decodes to a finite float32. */
const INT8_SCALE_MAX = 3.4028234663852886e38 / 128;

/** Elements of a tensor of this shape (1 for a scalar). */
export function sizeOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** int8 quantisation channels: the last axis of a tensor of rank ≥ 2 (its output units), else 1. */
export function channelsOf(shape: readonly number[]): number {
  return shape.length >= 2 ? shape[shape.length - 1] : 1;
}

/** Payload bytes of an encoded tensor (data, bytes and scales; not its name or shape). */
export function tensorPayloadBytes(t: EncodedTensor): number {
  return (t.data?.byteLength ?? 0) + (t.bytes?.byteLength ?? 0) + (t.scales?.byteLength ?? 0);
}

/** Encode one fp32 tensor with `codec`. Throws on a non-finite value (a broken student must not be sent). */
export function encodeTensor(t: WireTensor, codec: WeightCodecName): EncodedTensor {
  const x = t.data;
  for (let i = 0; i < x.length; i++) if (!Number.isFinite(x[i])) throw new Error(`weight '${t.name}' holds a non-finite value at index ${i}`);
  const head = { name: t.name, shape: t.shape.slice() };
  switch (codec) {
    case 'fp32':
      return { ...head, data: x };
    case 'fp16': {
      for (let i = 0; i < x.length; i++) if (Math.abs(x[i]) > FP16_MAX) return { ...head, data: x };
      const bytes = new Uint8Array(2 * x.length);
      const view = new DataView(bytes.buffer);
      for (let i = 0; i < x.length; i++) view.setUint16(2 * i, float32ToFloat16Bits(x[i]), true);
      return { ...head, encoding: 'fp16', bytes };
    }
    case 'int8':
      return { ...head, ...quantizeInt8(x, channelsOf(t.shape)) };
    default:
      throw new Error(`unknown weight codec '${String(codec)}'`);
  }
}

/** Symmetric per-channel int8 (see the header): element i is in channel i mod C. */
export function quantizeInt8(x: Float32Array, channels: number): { encoding: 'int8'; bytes: Uint8Array; scales: Float32Array } {
  const maxAbs = new Float64Array(channels);
  for (let i = 0; i < x.length; i++) {
    const c = i % channels;
    const a = Math.abs(x[i]);
    if (a > maxAbs[c]) maxAbs[c] = a;
  }
  const scales = Float32Array.from(maxAbs, (m) => m / INT8_LEVELS);
  const q = new Int8Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const s = scales[i % channels];
    // Against the float32 step actually sent; the clamp only catches max/s rounding a hair above 127.
    q[i] = s === 0 ? 0 : Math.max(-INT8_LEVELS, Math.min(INT8_LEVELS, Math.round(x[i] / s)));
  }
  return { encoding: 'int8', bytes: new Uint8Array(q.buffer), scales };
}

/**
 * Why an encoded tensor can't be decoded (lengths per encoding, finite steps and fp16 values), or null. fp32 values
 * are not walked here: validate.ts checks them with the same code for uploads and downloads.
 */
export function tensorContentError(t: EncodedTensor): string | null {
  const n = sizeOf(t.shape);
  switch (t.encoding ?? 'fp32') {
    case 'fp32':
      if (!t.data) return "has no 'data'";
      return t.data.length === n ? null : `has ${t.data.length} values for shape [${t.shape}]`;
    case 'fp16': {
      if (!t.bytes) return "has no 'bytes'";
      if (t.bytes.byteLength !== 2 * n) return `fp16 needs ${2 * n} bytes for shape [${t.shape}], got ${t.bytes.byteLength}`;
      const view = new DataView(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength);
      // Exponent bits all ones: ±Inf or NaN.
      for (let i = 0; i < n; i++) if ((view.getUint16(2 * i, true) & 0x7c00) === 0x7c00) return `holds a non-finite fp16 value at index ${i}`;
      return null;
    }
    case 'int8': {
      if (!t.bytes) return "has no 'bytes'";
      if (!t.scales) return "has no 'scales'";
      if (t.bytes.byteLength !== n) return `int8 needs ${n} bytes for shape [${t.shape}], got ${t.bytes.byteLength}`;
      const c = channelsOf(t.shape);
      if (t.scales.length !== c) return `int8 needs ${c} scales (one per ${c === 1 ? 'tensor' : 'output channel, the last axis'}), got ${t.scales.length}`;
      for (let i = 0; i < c; i++) {
        const s = t.scales[i];
        if (!Number.isFinite(s) || s < 0) return `scale ${i} must be a finite number ≥ 0, got ${s}`;
        // q·s must stay a finite float32 for every q in [−128, 127].
        if (s > INT8_SCALE_MAX) return `scale ${i} is ${s}: times 128 it is non-finite in float32`;
      }
      return null;
    }
    default:
      return `has unknown encoding '${String(t.encoding)}'`;
  }
}

/** Decode one tensor to fp32 (an fp32 tensor is returned as is). Throws on malformed content. */
export function decodeTensor(t: EncodedTensor): WireTensor {
  const err = tensorContentError(t);
  if (err) throw new Error(`weight '${t.name}' ${err}`);
  const head = { name: t.name, shape: t.shape };
  const n = sizeOf(t.shape);
  if (t.encoding === 'fp16') {
    const view = new DataView(t.bytes!.buffer, t.bytes!.byteOffset, t.bytes!.byteLength);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = float16BitsToFloat32(view.getUint16(2 * i, true));
    return { ...head, data };
  }
  if (t.encoding === 'int8') {
    const q = new Int8Array(t.bytes!.buffer, t.bytes!.byteOffset, n);
    const scales = t.scales!;
    const c = scales.length;
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = q[i] * scales[i % c];
    return { ...head, data };
  }
  return { ...head, data: t.data! };
}

export function encodeWeights(ts: readonly WireTensor[], codec: WeightCodecName): EncodedTensor[] {
  return ts.map((t) => encodeTensor(t, codec));
}

export function decodeWeights(ts: readonly EncodedTensor[]): WireTensor[] {
  return ts.map(decodeTensor);
}
