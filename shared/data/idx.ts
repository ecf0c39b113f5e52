/**
 * The IDX file format (as used by MNIST / Fashion-MNIST), isomorphic: no Node imports, runs in browsers too.
 *
 * Layout: two zero bytes, a dtype byte (0x08 = unsigned byte, the only one supported here), a byte giving the
 * number of dimensions, then each dimension as a big-endian uint32, then the data, row-major.
 * Bytes passed in must already be gunzipped (see `isGzip` / `gunzip` below for a browser-friendly helper).
 */
import type { Dataset } from './dataset.ts';

export const IDX_UBYTE = 0x08;

const DTYPE_NAMES: Record<number, string> = {
  0x08: 'ubyte',
  0x09: 'sbyte',
  0x0b: 'short',
  0x0c: 'int',
  0x0d: 'float',
  0x0e: 'double',
};

export interface IdxArray {
  dims: number[];
  /** A view into the input bytes (not a copy). */
  data: Uint8Array;
}

/** True when `bytes` starts with the gzip magic number (1f 8b). */
export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/**
 * Parses an IDX ubyte array. Throws an Error naming the problem on a bad magic number, an unsupported dtype,
 * a truncated header, truncated data or trailing bytes.
 */
export function parseIdx(bytes: Uint8Array): IdxArray {
  if (isGzip(bytes)) {
    throw new Error('idx: data is gzip-compressed; gunzip it before parsing');
  }
  if (bytes.length < 4) {
    throw new Error(`idx: truncated header (${bytes.length} bytes, need at least 4)`);
  }
  if (bytes[0] !== 0 || bytes[1] !== 0) {
    const magic = Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, '0')).join(' ');
    throw new Error(`idx: bad magic number ${magic} (expected 00 00 <dtype> <ndims>); not an IDX file`);
  }
  const dtype = bytes[2];
  if (dtype !== IDX_UBYTE) {
    const name = DTYPE_NAMES[dtype];
    throw new Error(
      name
        ? `idx: unsupported dtype 0x${dtype.toString(16)} (${name}); only 0x08 (ubyte) is supported`
        : `idx: bad magic number: unknown dtype byte 0x${dtype.toString(16).padStart(2, '0')}`,
    );
  }
  const ndims = bytes[3];
  if (ndims === 0) throw new Error('idx: bad magic number: zero dimensions');
  const headerLen = 4 + 4 * ndims;
  if (bytes.length < headerLen) {
    throw new Error(`idx: truncated header (${bytes.length} bytes, need ${headerLen} for ${ndims} dimensions)`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims: number[] = [];
  let size = 1;
  for (let i = 0; i < ndims; i++) {
    const d = view.getUint32(4 + 4 * i, false);
    dims.push(d);
    size *= d;
  }
  const available = bytes.length - headerLen;
  if (available < size) {
    throw new Error(
      `idx: truncated data: dims [${dims.join(', ')}] need ${size} bytes but only ${available} follow the header`,
    );
  }
  if (available > size) {
    throw new Error(
      `idx: ${available - size} unexpected trailing bytes after the data for dims [${dims.join(', ')}]`,
    );
  }
  return { dims, data: bytes.subarray(headerLen, headerLen + size) };
}

/** Encodes a ubyte array as IDX. `data.length` must equal the product of `dims`. */
export function encodeIdx(dims: readonly number[], data: Uint8Array): Uint8Array {
  if (dims.length === 0 || dims.length > 255) throw new Error(`idx: need 1..255 dimensions, got ${dims.length}`);
  let size = 1;
  for (const d of dims) {
    if (!Number.isInteger(d) || d < 0 || d > 0xffffffff) throw new Error(`idx: bad dimension ${d}`);
    size *= d;
  }
  if (data.length !== size) {
    throw new Error(`idx: dims [${dims.join(', ')}] need ${size} bytes, got ${data.length}`);
  }
  const headerLen = 4 + 4 * dims.length;
  const out = new Uint8Array(headerLen + size);
  out[2] = IDX_UBYTE;
  out[3] = dims.length;
  const view = new DataView(out.buffer);
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  out.set(data, headerLen);
  return out;
}

/**
 * Builds a Dataset from (already gunzipped) IDX image and label files.
 * Images must be [n, h, w] (grayscale) or [n, h, w, c]; labels [n], each < numClasses.
 */
export function datasetFromIdx(images: Uint8Array, labels: Uint8Array | null, numClasses = 10): Dataset {
  const img = parseIdx(images);
  let shape: [number, number, number];
  if (img.dims.length === 3) shape = [img.dims[1], img.dims[2], 1];
  else if (img.dims.length === 4) shape = [img.dims[1], img.dims[2], img.dims[3]];
  else throw new Error(`idx: image file must have 3 or 4 dimensions [n, h, w(, c)], got [${img.dims.join(', ')}]`);
  const count = img.dims[0];
  let lab: Uint8Array | null = null;
  if (labels) {
    const l = parseIdx(labels);
    if (l.dims.length !== 1) throw new Error(`idx: label file must have 1 dimension, got [${l.dims.join(', ')}]`);
    if (l.dims[0] !== count) {
      throw new Error(`idx: image/label count mismatch: ${count} images but ${l.dims[0]} labels`);
    }
    for (let i = 0; i < l.data.length; i++) {
      if (l.data[i] >= numClasses) {
        throw new Error(`idx: label ${l.data[i]} at index ${i} is out of range for ${numClasses} classes`);
      }
    }
    lab = l.data;
  }
  return { images: img.data, labels: lab, count, shape, numClasses };
}

/** Encodes a Dataset as IDX files (images [n, h, w] when single-channel, else [n, h, w, c]). */
export function datasetToIdx(ds: Dataset): { images: Uint8Array; labels: Uint8Array | null } {
  const [h, w, c] = ds.shape;
  const dims = c === 1 ? [ds.count, h, w] : [ds.count, h, w, c];
  return {
    images: encodeIdx(dims, ds.images),
    labels: ds.labels ? encodeIdx([ds.count], ds.labels) : null,
  };
}

/**
 * Gunzips with the web-standard DecompressionStream (browsers, Node ≥ 18); returns the input unchanged
 * when it is not gzip-compressed.
 */
export async function gunzip(bytes: Uint8Array): Promise<Uint8Array> {
  if (!isGzip(bytes)) return bytes;
  const DS = (globalThis as { DecompressionStream?: typeof DecompressionStream }).DecompressionStream;
  if (!DS) throw new Error('idx: no DecompressionStream in this environment; gunzip the data first');
  const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream().pipeThrough(new DS('gzip'));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}
