/**
 * Training kernels for the tfjs 'wasm' backend, built from kernels the backend already has.
 *
 * Why: on @tensorflow/tfjs-backend-wasm 4.22.0 `Conv2DBackpropFilter` is missing (no conv training at all),
 * `MaxPoolGrad` drops the gradient of every window whose maximum is <= 0, `Conv2DBackpropInput` is a scalar loop
 * and `BatchMatMul` with transposeA/transposeB is ~10x slower than without (`npm run bench` measures the effect).
 * Smaller wins: `Sum` over leading axes (every bias gradient) transposes a full copy of dy before reducing, and
 * `Identity` copies its input where sharing the buffer is enough.
 *
 * Isomorphic: no Node-only imports (the wasm backend is only referenced as a type).
 *
 * These kernels rely on tfjs-backend-wasm internals (`backend.dataIdMap`, `makeOutput`, `typedArrayFromHeap`,
 * `disposeData`, the registered kernels' calling conventions). The tfjs version is pinned, and
 * `selfTestWasmKernels()` compares every patched kernel against the 'cpu' backend and reverts any that disagree.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { Rng } from '../data/rng.ts';

type TensorInfo = tf.TensorInfo;
type Shape4 = [number, number, number, number];
type ExplicitPadding = [[number, number], [number, number], [number, number], [number, number]];
type PadAttr = 'valid' | 'same' | number | ExplicitPadding;
type RoundingMode = 'floor' | 'round' | 'ceil' | undefined;

const WASM = 'wasm';

/** The kernels this module replaces (or adds) on the 'wasm' backend. */
export const PATCHABLE_KERNELS = [
  'Conv2DBackpropFilter', 'Conv2DBackpropInput', 'MaxPoolGrad', 'BatchMatMul', 'Sum', 'Identity',
] as const;
export type PatchableKernel = (typeof PATCHABLE_KERNELS)[number];

/**
 * When kernelH*kernelW*inChannels is at most this, the filter gradient uses an identity-filter Conv2D (im2col on
 * XNNPACK) followed by one matmul; otherwise the transpose trick (one dilated Conv2D). Measured (npm run bench):
 * the im2col variant is ~3x faster for few input channels.
 */
export const IM2COL_MAX_PATCH = 36;

export interface PatchReport {
  backend: 'wasm';
  /** Kernels served by this module's implementation after the call (whether registered now or earlier). */
  patched: PatchableKernel[];
  /** Kernels registered by this call (empty when everything requested was already patched). */
  newlyRegistered: PatchableKernel[];
  /** Kernels for which a stock wasm kernel existed (it was unregistered and is kept for revert/delegation). */
  replacedStock: PatchableKernel[];
  /** Kernels for which no stock kernel existed (e.g. Conv2DBackpropFilter on tfjs-backend-wasm 4.22.0). */
  added: PatchableKernel[];
}

/** Our registered configs carry the stock config they replaced, so no module state is needed (idempotent even if
 * this module were loaded twice, since the kernel registry is a tfjs global). */
interface PatchedKernelConfig extends tf.KernelConfig {
  fedistillPatched: true;
  fedistillStock: tf.KernelConfig | null;
}

function isPatched(cfg: tf.KernelConfig | undefined): cfg is PatchedKernelConfig {
  return cfg != null && (cfg as Partial<PatchedKernelConfig>).fedistillPatched === true;
}

/** The original wasm kernel for `name` (the one we replaced, or the registered one if not patched). */
function stockKernel(name: string): tf.KernelConfig | null {
  const cfg = tf.getKernel(name, WASM);
  if (isPatched(cfg)) return cfg.fedistillStock;
  return cfg ?? null;
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers that call other registered wasm kernels directly with the backend instance (what the engine does in
// runKernel, minus tape/profiling): intermediates never become engine tensors, so they are freed with
// backend.disposeData.

function runKernel(name: string, backend: BackendWasm, inputs: tf.NamedTensorInfoMap, attrs: tf.NamedAttrMap = {}): TensorInfo {
  const cfg = name === 'BatchMatMul' ? stockKernel(name) : tf.getKernel(name, WASM);
  if (cfg == null) throw new Error(`fedistill wasm kernels: wasm backend has no '${name}' kernel`);
  const out = cfg.kernelFunc({ inputs, backend, attrs });
  if (Array.isArray(out)) throw new Error(`fedistill wasm kernels: '${name}' returned several outputs`);
  return out;
}

function transpose(backend: BackendWasm, x: TensorInfo, perm: number[]): TensorInfo {
  return runKernel('Transpose', backend, { x }, { perm });
}

/** A view of a tensor with another shape (wasm Reshape only bumps the refCount; dispose it like any other). */
function reshape(backend: BackendWasm, x: TensorInfo, shape: number[]): TensorInfo {
  return runKernel('Reshape', backend, { x }, { shape });
}

function conv2d(backend: BackendWasm, x: TensorInfo, filter: TensorInfo, strides: [number, number], pad: ExplicitPadding,
  dilations: [number, number]): TensorInfo {
  return runKernel('Conv2D', backend, { x, filter }, { strides, pad, dilations, dataFormat: 'NHWC', dimRoundingMode: undefined as unknown as string });
}

function disposeAll(backend: BackendWasm, infos: TensorInfo[]): void {
  for (const t of infos) backend.disposeData(t.dataId);
}

function f32(backend: BackendWasm, t: TensorInfo): Float32Array {
  return backend.typedArrayFromHeap(t) as Float32Array;
}

/** Copy x[:, h0:h0+h, w0:w0+w, :] (rank 4, last axis whole) into a new tensor; plain JS over the wasm heap because
 * the wasm Slice kernel copies the whole source each call. */
function cropHW(backend: BackendWasm, x: TensorInfo, h0: number, h: number, w0: number, w: number): TensorInfo {
  const [n, H, W, c] = x.shape;
  const out = backend.makeOutput([n, h, w, c], 'float32');
  // Views only after the allocation: growing the heap detaches earlier views.
  const src = f32(backend, x);
  const dst = f32(backend, out);
  const rowLen = w * c;
  let o = 0;
  for (let i = 0; i < n; i++) {
    for (let r = 0; r < h; r++) {
      const s = ((i * H + h0 + r) * W + w0) * c;
      dst.set(src.subarray(s, s + rowLen), o);
      o += rowLen;
    }
  }
  return out;
}

function explicit(top: number, bottom: number, left: number, right: number): ExplicitPadding {
  return [[0, 0], [top, bottom], [left, right], [0, 0]];
}

function assertNHWC(dataFormat: unknown, kernel: string): void {
  if (dataFormat != null && dataFormat !== 'NHWC' && dataFormat !== 'channelsLast') {
    throw new Error(`fedistill wasm ${kernel}: only dataFormat 'NHWC' is supported (got '${String(dataFormat)}'); ` +
      `the wasm backend's forward Conv2D is NHWC-only as well`);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Conv2DBackpropFilter

interface FilterGradAttrs {
  strides: number | [number, number];
  pad: PadAttr;
  dataFormat?: string;
  dimRoundingMode?: RoundingMode;
  filterShape: Shape4;
}

function conv2DBackpropFilter(args: { inputs: { x: TensorInfo; dy: TensorInfo }; backend: BackendWasm; attrs: FilterGradAttrs }): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x, dy } = inputs;
  assertNHWC(attrs.dataFormat, 'Conv2DBackpropFilter');
  if (x.dtype !== 'float32' || dy.dtype !== 'float32') {
    throw new Error(`fedistill wasm Conv2DBackpropFilter: float32 only (got ${x.dtype}, ${dy.dtype})`);
  }
  const info = tf.backend_util.computeConv2DInfo(x.shape as Shape4, attrs.filterShape, attrs.strides, 1, attrs.pad,
    attrs.dimRoundingMode, false, 'channelsLast');
  const { batchSize: N, inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW, outChannels: F,
    filterHeight: KH, filterWidth: KW, strideHeight: sH, strideWidth: sW } = info;
  if (dy.shape.length !== 4 || dy.shape[0] !== N || dy.shape[1] !== OH || dy.shape[2] !== OW || dy.shape[3] !== F) {
    throw new Error(`fedistill wasm Conv2DBackpropFilter: dy shape [${dy.shape}] does not match the forward ` +
      `geometry [${N},${OH},${OW},${F}]`);
  }
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  if (KH * KW * C <= IM2COL_MAX_PATCH) {
    return filterGradIm2col(backend, x, dy, info, top, left);
  }
  // Transpose trick: dW[kh,kw,c,f] = sum_{n,oh,ow} xpad[n, oh*s+kh, ow*s+kw, c] * dy[n,oh,ow,f].
  // x -> [C,H,W,N] (batch C, channels N); dy -> [OH,OW,N,F] used as a filter dilated by the forward stride.
  const bottom = Math.max(0, KH + (OH - 1) * sH - H - top);
  const right = Math.max(0, KW + (OW - 1) * sW - W - left);
  const tmp: TensorInfo[] = [];
  try {
    const xT = transpose(backend, x, [3, 1, 2, 0]);
    tmp.push(xT);
    const dyT = transpose(backend, dy, [1, 2, 0, 3]);
    tmp.push(dyT);
    let r = conv2d(backend, xT, dyT, [1, 1], explicit(top, bottom, left, right), [sH, sW]);
    tmp.push(r);
    if (r.shape[1] < KH || r.shape[2] < KW) {
      throw new Error(`fedistill wasm Conv2DBackpropFilter: internal geometry error (${r.shape} vs ${KH}x${KW})`);
    }
    if (r.shape[1] !== KH || r.shape[2] !== KW) {
      r = cropHW(backend, r, 0, KH, 0, KW);
      tmp.push(r);
    }
    return transpose(backend, r, [1, 2, 0, 3]);
  } finally {
    disposeAll(backend, tmp);
  }
}

/** im2col with an identity filter on the (XNNPACK) Conv2D, then patches^T @ dy with the untransposed matmul. */
function filterGradIm2col(backend: BackendWasm, x: TensorInfo, dy: TensorInfo, info: tf.backend_util.Conv2DInfo,
  top: number, left: number): TensorInfo {
  const { batchSize: N, inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW, outChannels: F,
    filterHeight: KH, filterWidth: KW, strideHeight: sH, strideWidth: sW } = info;
  const K = KH * KW * C;
  // Explicit pads chosen so the patch grid is exactly OHxOW whatever the forward rounding mode: pads beyond the
  // forward ones only add zeros, which is what the reference gradient treats out-of-range input as.
  const bottom = Math.max(0, (OH - 1) * sH + KH - H - top);
  const right = Math.max(0, (OW - 1) * sW + KW - W - left);
  const gridH = Math.floor((H + top + bottom - KH) / sH) + 1;
  const gridW = Math.floor((W + left + right - KW) / sW) + 1;
  const tmp: TensorInfo[] = [];
  try {
    const eye = new Float32Array(K * K);
    for (let i = 0; i < K; i++) eye[i * K + i] = 1;
    // Identity filter [KH,KW,C,K]: output channel k copies input (kh,kw,c) with k = (kh*KW+kw)*C+c.
    const eyeT = backend.makeOutput([KH, KW, C, K], 'float32', undefined, eye);
    tmp.push(eyeT);
    let patches = conv2d(backend, x, eyeT, [sH, sW], explicit(top, bottom, left, right), [1, 1]);
    tmp.push(patches);
    if (gridH !== OH || gridW !== OW) {
      if (gridH < OH || gridW < OW) throw new Error('fedistill wasm Conv2DBackpropFilter: internal geometry error');
      patches = cropHW(backend, patches, 0, OH, 0, OW);
      tmp.push(patches);
    }
    const M = N * OH * OW;
    const p2 = reshape(backend, patches, [M, K]);
    tmp.push(p2);
    const pT = transpose(backend, p2, [1, 0]);
    tmp.push(pT);
    const dy2 = reshape(backend, dy, [M, F]);
    tmp.push(dy2);
    const out = runKernel('BatchMatMul', backend, { a: pT, b: dy2 }, { transposeA: false, transposeB: false });
    // [K,F] and [KH,KW,C,F] have the same memory layout (k = (kh*KW+kw)*C+c).
    return { dataId: out.dataId, shape: [KH, KW, C, F], dtype: out.dtype };
  } finally {
    disposeAll(backend, tmp);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Conv2DBackpropInput

interface InputGradAttrs {
  strides: number | [number, number];
  pad: PadAttr;
  dataFormat?: string;
  dimRoundingMode?: RoundingMode;
  inputShape: Shape4;
}

function conv2DBackpropInput(args: { inputs: { dy: TensorInfo; filter: TensorInfo }; backend: BackendWasm; attrs: InputGradAttrs }): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { dy, filter } = inputs;
  const stock = stockKernel('Conv2DBackpropInput');
  const fallback = () => {
    if (stock == null) throw new Error('fedistill wasm Conv2DBackpropInput: unsupported configuration and no stock kernel');
    return stock.kernelFunc(args as unknown as Parameters<tf.KernelFunc>[0]) as TensorInfo;
  };
  // The stock kernel is a correct (slow) scalar loop: use it for anything outside the fast path.
  if (attrs.dataFormat === 'NCHW' || dy.dtype !== 'float32' || filter.dtype !== 'float32') return fallback();
  const info = tf.backend_util.computeConv2DInfo(attrs.inputShape, filter.shape as Shape4, attrs.strides, 1, attrs.pad,
    attrs.dimRoundingMode, false, 'channelsLast');
  const { batchSize: N, inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW, outChannels: F,
    filterHeight: KH, filterWidth: KW, strideHeight: sH, strideWidth: sW } = info;
  if (dy.shape.length !== 4 || dy.shape[0] !== N || dy.shape[1] !== OH || dy.shape[2] !== OW || dy.shape[3] !== F) {
    return fallback();
  }
  // dx[ih] = sum_kh dyUp[ih + top - kh] * W[kh] = correlation of the zero-upsampled dy with the spatially reversed
  // filter (in/out channels swapped), stride 1, top pad KH-1-top (cropped when negative).
  const tmp: TensorInfo[] = [];
  try {
    const wT = transpose(backend, filter, [0, 1, 3, 2]);
    tmp.push(wT);
    const wR = runKernel('Reverse', backend, { x: wT }, { dims: [0, 1] });
    tmp.push(wR);
    let dyUp = dy;
    if (sH > 1 || sW > 1) {
      // [N,OH,1,OW,1,F] padded to [N,OH,sH,OW,sW,F] = dy with sH-1 / sW-1 zeros after every row / column.
      const d6 = reshape(backend, dy, [N, OH, 1, OW, 1, F]);
      tmp.push(d6);
      const p6 = runKernel('PadV2', backend, { x: d6 }, {
        paddings: [[0, 0], [0, 0], [0, sH - 1], [0, 0], [0, sW - 1], [0, 0]], constantValue: 0,
      });
      tmp.push(p6);
      dyUp = reshape(backend, p6, [N, OH * sH, OW * sW, F]);
      tmp.push(dyUp);
    }
    const Lh = dyUp.shape[1];
    const Lw = dyUp.shape[2];
    const tp = KH - 1 - info.padInfo.top;
    const lp = KW - 1 - info.padInfo.left;
    const pt = Math.max(0, tp);
    const pl = Math.max(0, lp);
    const r0 = pt - tp;
    const c0 = pl - lp;
    const pb = Math.max(0, r0 + H + KH - 1 - Lh - pt);
    const pr = Math.max(0, c0 + W + KW - 1 - Lw - pl);
    const out = conv2d(backend, dyUp, wR, [1, 1], explicit(pt, pb, pl, pr), [1, 1]);
    if (out.shape[1] === H && out.shape[2] === W && r0 === 0 && c0 === 0) return out;
    tmp.push(out);
    if (out.shape[1] < r0 + H || out.shape[2] < c0 + W) {
      throw new Error('fedistill wasm Conv2DBackpropInput: internal geometry error');
    }
    return cropHW(backend, out, r0, H, c0, W);
  } finally {
    disposeAll(backend, tmp);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// MaxPoolGrad: exact, TF/cpu semantics (the first maximum of a window, in row-major window order, gets the
// gradient; windows only see in-range pixels; a window that is all -Infinity/NaN passes nothing, as on 'cpu').

interface MaxPoolGradAttrs {
  filterSize: number | [number, number];
  strides: number | [number, number];
  pad: PadAttr;
  dimRoundingMode?: RoundingMode;
}

function maxPoolGrad(args: { inputs: { dy: TensorInfo; input: TensorInfo; output?: TensorInfo }; backend: BackendWasm; attrs: MaxPoolGradAttrs }): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { dy, input } = inputs;
  if (input.dtype !== 'float32' || dy.dtype !== 'float32') {
    throw new Error(`fedistill wasm MaxPoolGrad: float32 only (got ${input.dtype}, ${dy.dtype})`);
  }
  const info = tf.backend_util.computePool2DInfo(input.shape as Shape4, attrs.filterSize, attrs.strides, 1, attrs.pad,
    attrs.dimRoundingMode);
  const { batchSize: N, inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW,
    strideHeight: sH, strideWidth: sW, effectiveFilterHeight: FH, effectiveFilterWidth: FW } = info;
  if (dy.shape.length !== 4 || dy.shape[0] !== N || dy.shape[1] !== OH || dy.shape[2] !== OW || dy.shape[3] !== C) {
    throw new Error(`fedistill wasm MaxPoolGrad: dy shape [${dy.shape}] does not match [${N},${OH},${OW},${C}]`);
  }
  const padTop = info.padInfo.top;
  const padLeft = info.padInfo.left;
  // Allocate the output BEFORE taking heap views: malloc may grow (and detach) the heap buffer.
  const dx = backend.makeOutput(input.shape, 'float32');
  const xv = f32(backend, input);
  const dyv = f32(backend, dy);
  const dxv = f32(backend, dx);
  dxv.fill(0);
  const rowStride = W * C;
  for (let b = 0; b < N; b++) {
    for (let yR = 0; yR < OH; yR++) {
      const xRCorner = yR * sH - padTop;
      const xRMin = Math.max(0, xRCorner);
      const xRMax = Math.min(H, xRCorner + FH);
      for (let yC = 0; yC < OW; yC++) {
        const xCCorner = yC * sW - padLeft;
        const xCMin = Math.max(0, xCCorner);
        const xCMax = Math.min(W, xCCorner + FW);
        const dyBase = ((b * OH + yR) * OW + yC) * C;
        const first = ((b * H + xRMin) * W + xCMin) * C;
        if (xRMax - xRMin === 2 && xCMax - xCMin === 2) {
          // The common 2x2 window, unrolled (~1.6x faster). Same order and strict '>' as the generic loop. (A
          // branch-free variant with Math.max and equality masks measured ~25% slower than this, interleaved.)
          for (let d = 0; d < C; d++) {
            const p0 = first + d;
            const p1 = p0 + C;
            const p2 = p0 + rowStride;
            const p3 = p2 + C;
            let m = -Infinity;
            let mi = -1;
            let v = xv[p0];
            if (v > m) { m = v; mi = p0; }
            v = xv[p1];
            if (v > m) { m = v; mi = p1; }
            v = xv[p2];
            if (v > m) { m = v; mi = p2; }
            v = xv[p3];
            if (v > m) { m = v; mi = p3; }
            if (mi >= 0) dxv[mi] += dyv[dyBase + d];
          }
          continue;
        }
        for (let d = 0; d < C; d++) {
          genericWindow(xv, dxv, dyv[dyBase + d], first + d, xRMin, xRMax, xCMin, xCMax, rowStride, C);
        }
      }
    }
  }
  return dx;
}

/** One window, any size: the first strict maximum (row-major) gets g; NaN never wins; all -Infinity: nothing. */
function genericWindow(xv: Float32Array, dxv: Float32Array, g: number, first: number, xRMin: number, xRMax: number,
  xCMin: number, xCMax: number, rowStride: number, C: number): void {
  let m = -Infinity;
  let mi = -1;
  let rowBase = first;
  for (let xR = xRMin; xR < xRMax; xR++, rowBase += rowStride) {
    let p = rowBase;
    for (let xC = xCMin; xC < xCMax; xC++, p += C) {
      const v = xv[p];
      if (v > m) { m = v; mi = p; }
    }
  }
  if (mi >= 0) dxv[mi] += g;
}

// ---------------------------------------------------------------------------------------------------------------
// BatchMatMul: materialise transposes, then the (fast) untransposed stock kernel.

function batchMatMul(args: { inputs: { a: TensorInfo; b: TensorInfo }; backend: BackendWasm; attrs: { transposeA?: boolean; transposeB?: boolean } }): TensorInfo {
  const { inputs, backend, attrs } = args;
  const stock = stockKernel('BatchMatMul');
  if (stock == null) throw new Error('fedistill wasm BatchMatMul: the wasm backend has no stock BatchMatMul');
  const { a, b } = inputs;
  if (!(attrs.transposeA || attrs.transposeB) || a.dtype !== 'float32' || b.dtype !== 'float32' ||
    a.shape.length < 2 || b.shape.length < 2) {
    return stock.kernelFunc(args as unknown as Parameters<tf.KernelFunc>[0]) as TensorInfo;
  }
  const swapLast = (rank: number) => {
    const perm = Array.from({ length: rank }, (_, i) => i);
    perm[rank - 2] = rank - 1;
    perm[rank - 1] = rank - 2;
    return perm;
  };
  const tmp: TensorInfo[] = [];
  try {
    let a2 = a;
    let b2 = b;
    if (attrs.transposeA) { a2 = transpose(backend, a, swapLast(a.shape.length)); tmp.push(a2); }
    if (attrs.transposeB) { b2 = transpose(backend, b, swapLast(b.shape.length)); tmp.push(b2); }
    return stock.kernelFunc({ inputs: { a: a2, b: b2 }, backend, attrs: { ...attrs, transposeA: false, transposeB: false } }) as TensorInfo;
  } finally {
    disposeAll(backend, tmp);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Sum over leading axes: every bias gradient (sum of dy over batch and space, [N,H,W,C] -> [C]). The stock kernel
// first transposes the reduced axes innermost (a full copy of dy), then sums; one pass over the rows is ~3x faster.
// Accumulates in float64 like the 'cpu' kernel, so results agree to float32 rounding.

function sum(args: { inputs: { x: TensorInfo }; backend: BackendWasm; attrs: { axis: number | number[]; keepDims?: boolean } }): TensorInfo {
  const { inputs: { x }, backend, attrs } = args;
  const rank = x.shape.length;
  const axes = x.dtype === 'float32' && rank > 1 ? [...new Set(tf.util.parseAxisParam(attrs.axis, x.shape))].sort((a, b) => a - b) : [];
  const k = axes.length;
  if (k === 0 || k === rank || !axes.every((a, i) => a === i)) {
    const stock = stockKernel('Sum');
    if (stock == null) throw new Error('fedistill wasm Sum: the wasm backend has no stock Sum');
    return stock.kernelFunc(args as unknown as Parameters<tf.KernelFunc>[0]) as TensorInfo;
  }
  const rest = x.shape.slice(k);
  const inner = rest.reduce((p, d) => p * d, 1);
  const outer = x.shape.slice(0, k).reduce((p, d) => p * d, 1);
  const out = backend.makeOutput(attrs.keepDims ? [...axes.map(() => 1), ...rest] : rest, 'float32');
  const xv = f32(backend, x);
  const acc = new Float64Array(inner);
  for (let o = 0, p = 0; o < outer; o++) {
    for (let j = 0; j < inner; j++, p++) acc[j] += xv[p];
  }
  f32(backend, out).set(acc);
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Identity: share the buffer (refcount), as the 'cpu' backend and the wasm Reshape do, instead of copying it. Safe
// because no wasm kernel writes into its inputs and Variable.assign swaps buffers rather than writing in place.

function identity(args: { inputs: { x: TensorInfo }; backend: BackendWasm }): TensorInfo {
  const { inputs: { x }, backend } = args;
  if (x.dtype === 'string') {
    const stock = stockKernel('Identity');
    if (stock == null) throw new Error('fedistill wasm Identity: the wasm backend has no stock Identity');
    return stock.kernelFunc(args as unknown as Parameters<tf.KernelFunc>[0]) as TensorInfo;
  }
  backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape.slice(), dtype: x.dtype };
}

// ---------------------------------------------------------------------------------------------------------------
// Registration

const IMPLS: Record<PatchableKernel, tf.KernelFunc> = {
  Conv2DBackpropFilter: conv2DBackpropFilter as unknown as tf.KernelFunc,
  Conv2DBackpropInput: conv2DBackpropInput as unknown as tf.KernelFunc,
  MaxPoolGrad: maxPoolGrad as unknown as tf.KernelFunc,
  BatchMatMul: batchMatMul as unknown as tf.KernelFunc,
  Sum: sum as unknown as tf.KernelFunc,
  Identity: identity as unknown as tf.KernelFunc,
};

/**
 * Register the training kernels on 'wasm' (unregistering the stock ones first). Idempotent. Needs
 * '@tensorflow/tfjs-backend-wasm' imported; works before or after the wasm backend is initialised (tf.setBackend).
 * `opts.kernels` patches a subset (e.g. only the missing filter gradient). Run `selfTestWasmKernels()` next.
 */
export function registerWasmTrainingKernels(opts: { kernels?: readonly PatchableKernel[] } = {}): PatchReport {
  const wanted = opts.kernels ?? PATCHABLE_KERNELS;
  if (tf.findBackendFactory(WASM) == null) {
    // Registering first would be undone: importing the wasm package re-registers its stock kernels over ours.
    throw new Error("registerWasmTrainingKernels: import '@tensorflow/tfjs-backend-wasm' first");
  }
  const report: PatchReport = { backend: 'wasm', patched: [], newlyRegistered: [], replacedStock: [], added: [] };
  for (const name of wanted) {
    if (!(PATCHABLE_KERNELS as readonly string[]).includes(name)) throw new Error(`fedistill: unknown patchable kernel '${name}'`);
    const existing = tf.getKernel(name, WASM);
    if (isPatched(existing)) { report.patched.push(name); continue; }
    if (existing != null) tf.unregisterKernel(name, WASM);
    const stock = existing ?? null;
    const cfg: PatchedKernelConfig = {
      kernelName: name,
      backendName: WASM,
      kernelFunc: IMPLS[name],
      // We delegate to the stock kernel, whose wasm function is bound in its setupFunc; the engine only runs the
      // setupFunc of *registered* kernels when the backend is (re)selected, so forward it.
      setupFunc: stock?.setupFunc ? (backend) => stock.setupFunc!(backend) : undefined,
      disposeFunc: stock?.disposeFunc ? (backend) => stock.disposeFunc!(backend) : undefined,
      fedistillPatched: true,
      fedistillStock: stock,
    };
    tf.registerKernel(cfg);
    report.patched.push(name);
    report.newlyRegistered.push(name);
    (stock ? report.replacedStock : report.added).push(name);
  }
  return report;
}

/** Restore the stock kernels (or remove the added ones). Returns the kernels reverted. */
export function unregisterWasmTrainingKernels(kernels: readonly PatchableKernel[] = PATCHABLE_KERNELS): PatchableKernel[] {
  const reverted: PatchableKernel[] = [];
  for (const name of kernels) {
    const cfg = tf.getKernel(name, WASM);
    if (!isPatched(cfg)) continue;
    tf.unregisterKernel(name, WASM);
    if (cfg.fedistillStock) tf.registerKernel(cfg.fedistillStock);
    reverted.push(name);
  }
  return reverted;
}

/** Which of the patchable kernels are currently served by this module on 'wasm'. */
export function patchedWasmKernels(): PatchableKernel[] {
  return PATCHABLE_KERNELS.filter((k) => isPatched(tf.getKernel(k, WASM)));
}

// ---------------------------------------------------------------------------------------------------------------
// Self-test against the 'cpu' backend

export interface SelfTestCase {
  kernel: PatchableKernel;
  name: string;
  relErr: number;
  ok: boolean;
  error?: string;
}

export interface SelfTestResult {
  ok: boolean;
  /** Worst of max|wasm-cpu| / max|cpu| over all cases (Infinity when a case threw or produced NaN / bad shape). */
  maxRelErr: number;
  tolerance: number;
  /** Kernels tested: by default those patched when the test started. */
  tested: PatchableKernel[];
  /** Kernels whose patch was reverted because a case failed (stock kernels that fail are left as they are). */
  reverted: PatchableKernel[];
  details: SelfTestCase[];
  ms: number;
}

interface KernelBackendLike {
  write(values: Float32Array, shape: number[], dtype: tf.DataType): object;
  readSync(dataId: object): unknown;
  disposeData(dataId: object, force?: boolean): boolean;
}

/** Ensure the wasm backend instance exists (it initialises asynchronously) and return it. */
async function wasmBackendInstance(): Promise<BackendWasm> {
  // engine().registry holds initialised backends; findBackend('wasm') would start an async init and return null.
  const engine = tf.engine();
  let b = engine.registry[WASM];
  if (b == null) {
    if (tf.findBackendFactory(WASM) == null) {
      throw new Error("the 'wasm' backend is not registered: import '@tensorflow/tfjs-backend-wasm' first");
    }
    const prev = engine.backendName;
    if (!(await tf.setBackend(WASM))) throw new Error("the 'wasm' backend failed to initialise");
    if (prev != null && prev !== WASM) await tf.setBackend(prev);
    b = engine.registry[WASM];
  }
  return b as unknown as BackendWasm;
}

/** Deterministic pseudo-random values so failures are reproducible. */
function rng(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.next();
}

function randArray(rand: () => number, size: number, lo = -1, hi = 1, step = 0): Float32Array {
  const a = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    let v = lo + (hi - lo) * rand();
    if (step > 0) v = Math.round(v / step) * step;
    a[i] = v;
  }
  return a;
}

function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  if (got.length !== want.length) return Infinity;
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (!(d <= maxDiff)) maxDiff = d; // also catches NaN
    maxRef = Math.max(maxRef, Math.abs(want[i]));
  }
  if (Number.isNaN(maxDiff)) return Infinity;
  return maxDiff / Math.max(maxRef, 1e-20);
}

type HostTensor = { values: Float32Array; shape: number[] };

/** Run one kernel on a backend instance directly (no engine, no global backend switch). */
function runOn(backend: KernelBackendLike, kernelName: string, backendName: string, inputs: Record<string, HostTensor>,
  attrs: tf.NamedAttrMap): HostTensor {
  const cfg = tf.getKernel(kernelName, backendName);
  if (cfg == null) throw new Error(`no '${kernelName}' kernel on '${backendName}'`);
  const infos: tf.NamedTensorInfoMap = {};
  const made: object[] = [];
  try {
    for (const [k, t] of Object.entries(inputs)) {
      const dataId = backend.write(t.values, t.shape, 'float32');
      made.push(dataId);
      infos[k] = { dataId, shape: t.shape, dtype: 'float32' };
    }
    const out = cfg.kernelFunc({ inputs: infos, backend: backend as unknown as object, attrs });
    const o = Array.isArray(out) ? out[0] : out;
    const values = Float32Array.from(backend.readSync(o.dataId) as Float32Array);
    backend.disposeData(o.dataId);
    return { values, shape: o.shape.slice() };
  } finally {
    for (const d of made) backend.disposeData(d);
  }
}

interface ConvCase { x: Shape4; f: Shape4; strides: number | [number, number]; pad: PadAttr; round?: RoundingMode }
interface PoolCase { x: Shape4; size: number | [number, number]; strides: number | [number, number]; pad: PadAttr; lo: number; hi: number; step?: number }
interface MatCase { a: number[]; b: number[]; tA: boolean; tB: boolean }
interface SumCase { x: number[]; axis: number | number[] | null; keepDims: boolean }

const CONV_CASES: ConvCase[] = [
  { x: [2, 7, 7, 1], f: [3, 3, 1, 4], strides: 1, pad: 'valid' }, // im2col path
  { x: [2, 8, 8, 3], f: [3, 3, 3, 5], strides: 2, pad: 'same' }, // im2col path, stride 2
  { x: [2, 6, 6, 2], f: [3, 3, 2, 3], strides: 2, pad: 1, round: 'ceil' }, // im2col, numeric pad + ceil rounding
  { x: [2, 8, 9, 2], f: [3, 2, 2, 4], strides: [2, 3], pad: [[0, 0], [2, 0], [1, 1], [0, 0]] }, // im2col, explicit
  { x: [2, 9, 7, 6], f: [3, 3, 6, 4], strides: 1, pad: 'same' }, // transpose trick
  { x: [2, 10, 10, 8], f: [3, 3, 8, 4], strides: 2, pad: 'valid' }, // transpose trick, stride 2, leftover rows
  { x: [1, 9, 9, 5], f: [5, 5, 5, 3], strides: 2, pad: 'same' },
  { x: [2, 7, 8, 4], f: [2, 3, 4, 3], strides: [2, 1], pad: [[0, 0], [1, 2], [0, 1], [0, 0]] },
  { x: [1, 5, 5, 6], f: [3, 3, 6, 2], strides: 1, pad: 3 }, // pad > filter-1: cropped input gradient
  { x: [2, 6, 7, 40], f: [1, 1, 40, 3], strides: 2, pad: 'valid' }, // 1x1, many channels
];

const POOL_CASES: PoolCase[] = [
  { x: [2, 6, 6, 3], size: 2, strides: 2, pad: 'valid', lo: -2, hi: -0.5 }, // all negative
  { x: [2, 7, 7, 2], size: 3, strides: 2, pad: 'same', lo: -1, hi: 1 },
  { x: [1, 5, 6, 4], size: 2, strides: 1, pad: 'valid', lo: -1, hi: 1, step: 0.5 }, // ties: first max wins
  { x: [2, 7, 5, 3], size: [3, 2], strides: [2, 1], pad: 1, lo: -3, hi: -1, step: 0.25 },
  { x: [2, 5, 5, 3], size: 2, strides: 2, pad: 'same', lo: -2, hi: 0, step: 0.5 }, // 2x2 fast path + clipped border windows
];

const MAT_CASES: MatCase[] = [
  { a: [7, 5], b: [7, 3], tA: true, tB: false },
  { a: [4, 6], b: [3, 6], tA: false, tB: true },
  { a: [2, 6, 4], b: [2, 3, 6], tA: true, tB: true },
  { a: [1, 5, 4], b: [3, 5, 2], tA: true, tB: false }, // broadcast batch
  { a: [3, 4], b: [4, 2], tA: false, tB: false }, // delegation path
];

const SUM_CASES: SumCase[] = [
  { x: [5, 7, 6, 3], axis: [0, 1, 2], keepDims: false }, // a conv bias gradient
  { x: [5, 7, 6, 3], axis: [2, 0, 1], keepDims: true }, // unordered axes, keepDims
  { x: [9, 5], axis: 0, keepDims: false }, // a dense bias gradient
  { x: [4, 3, 5], axis: [-3, -2], keepDims: false }, // negative axes
  { x: [4, 3, 5], axis: [1, 2], keepDims: false }, // not leading: stock kernel
  { x: [4, 3, 5], axis: null, keepDims: false }, // all axes: stock kernel
  { x: [1000, 3], axis: 0, keepDims: false }, // long reduction
];

/**
 * Compare every currently patched kernel with the 'cpu' kernel on tiny random tensors (several geometries,
 * stride 2, 'same'/explicit padding, negative max-pool inputs, ties). Kernels that fail are reverted to stock
 * (unless `revertOnFailure: false`). Needs the 'cpu' backend (bundled in @tensorflow/tfjs) and the wasm backend
 * registered; it initialises the wasm backend if needed without changing the active backend.
 */
export async function selfTestWasmKernels(opts: {
  tolerance?: number;
  revertOnFailure?: boolean;
  seed?: number;
  /** Test these kernels as currently registered on 'wasm' (patched or stock). Default: the patched ones. */
  kernels?: readonly PatchableKernel[];
} = {}): Promise<SelfTestResult> {
  const t0 = Date.now();
  const tolerance = opts.tolerance ?? 1e-4;
  const wasm = (await wasmBackendInstance()) as unknown as KernelBackendLike;
  const cpu = tf.findBackend('cpu') as unknown as KernelBackendLike | null;
  if (cpu == null) throw new Error("selfTestWasmKernels needs the 'cpu' backend");
  const rand = rng(opts.seed ?? 12345);
  const tested = [...(opts.kernels ?? patchedWasmKernels())];
  const details: SelfTestCase[] = [];

  const check = (kernel: PatchableKernel, name: string, inputs: Record<string, HostTensor>, attrs: tf.NamedAttrMap) => {
    try {
      const got = runOn(wasm, kernel, WASM, inputs, attrs);
      const want = runOn(cpu, kernel, 'cpu', inputs, attrs);
      const sameShape = got.shape.length === want.shape.length && got.shape.every((d, i) => d === want.shape[i]);
      const e = sameShape ? relErr(got.values, want.values) : Infinity;
      details.push({ kernel, name, relErr: e, ok: e <= tolerance, error: sameShape ? undefined : `shape [${got.shape}] vs [${want.shape}]` });
    } catch (err) {
      details.push({ kernel, name, relErr: Infinity, ok: false, error: String((err as Error)?.message ?? err) });
    }
  };
  const host = (shape: number[], lo = -1, hi = 1, step = 0): HostTensor =>
    ({ values: randArray(rand, shape.reduce((p, d) => p * d, 1), lo, hi, step), shape });

  for (const c of CONV_CASES) {
    const info = tf.backend_util.computeConv2DInfo(c.x, c.f, c.strides, 1, c.pad, c.round, false, 'channelsLast');
    const name = `x[${c.x}] f[${c.f}] s${JSON.stringify(c.strides)} pad ${JSON.stringify(c.pad)}${c.round ? ' ' + c.round : ''}`;
    const x = host(c.x);
    const f = host(c.f);
    const dy = host(info.outShape);
    const common = { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', dimRoundingMode: c.round } as unknown as tf.NamedAttrMap;
    if (tested.includes('Conv2DBackpropFilter')) {
      check('Conv2DBackpropFilter', name, { x, dy }, { ...common, filterShape: c.f });
    }
    if (tested.includes('Conv2DBackpropInput')) {
      check('Conv2DBackpropInput', name, { dy, filter: f }, { ...common, inputShape: c.x });
    }
  }
  if (tested.includes('MaxPoolGrad')) {
    for (const c of POOL_CASES) {
      const name = `x[${c.x}] k${JSON.stringify(c.size)} s${JSON.stringify(c.strides)} pad ${JSON.stringify(c.pad)} in [${c.lo},${c.hi}]`;
      const x = host(c.x, c.lo, c.hi, c.step);
      const attrs = { filterSize: c.size, strides: c.strides, pad: c.pad } as unknown as tf.NamedAttrMap;
      try {
        // Forward max on cpu (exact) feeds both: the 'output' input is part of the kernel's signature.
        const out = runOn(cpu, 'MaxPool', 'cpu', { x }, attrs);
        const dy = host(out.shape);
        check('MaxPoolGrad', name, { dy, input: x, output: out }, attrs);
      } catch (err) {
        details.push({ kernel: 'MaxPoolGrad', name, relErr: Infinity, ok: false, error: String((err as Error)?.message ?? err) });
      }
    }
  }
  if (tested.includes('BatchMatMul')) {
    for (const c of MAT_CASES) {
      check('BatchMatMul', `a[${c.a}]${c.tA ? 'ᵀ' : ''} b[${c.b}]${c.tB ? 'ᵀ' : ''}`, { a: host(c.a), b: host(c.b) },
        { transposeA: c.tA, transposeB: c.tB });
    }
  }

  if (tested.includes('Sum')) {
    for (const c of SUM_CASES) {
      check('Sum', `x[${c.x}] axis ${JSON.stringify(c.axis)}${c.keepDims ? ' keepDims' : ''}`, { x: host(c.x) },
        { axis: c.axis as number[], keepDims: c.keepDims });
    }
  }
  if (tested.includes('Identity')) check('Identity', 'x[3,4,5]', { x: host([3, 4, 5]) }, {});

  const failed = [...new Set(details.filter((d) => !d.ok).map((d) => d.kernel))];
  const reverted = failed.length > 0 && opts.revertOnFailure !== false ? unregisterWasmTrainingKernels(failed) : [];
  const maxRelErr = details.reduce((m, d) => Math.max(m, d.relErr), 0);
  return { ok: failed.length === 0, maxRelErr, tolerance, tested, reverted, details, ms: Date.now() - t0 };
}
