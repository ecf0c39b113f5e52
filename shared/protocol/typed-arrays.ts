/**
 * Reading the typed-array fields of a decoded frame, whatever form a msgpack library gave them.
 *
 * A binary field reaches us in one of two forms:
 *  - msgpack `bin` bytes (what every msgpack library writes for a byte string): decoded as a Uint8Array — often a
 *    *view* into the frame, or into a decoder's shared buffer, at any byteOffset. The bytes are the little-endian
 *    elements; they are read by the view's own byteOffset and byteLength, and copied where the element type needs
 *    alignment (a Float32Array over an odd offset cannot exist).
 *  - msgpackr's typed-array extension (ext type 0x74, what `moreTypes` writes for a Float32Array etc.): decoded as
 *    the same typed-array class, over a fresh buffer.
 * Anything else (a Float64Array where float32 is expected, a msgpack array of numbers, …) is not converted, so the
 * schema refuses it by name.
 */

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** A typed array's constructor, as far as we need it. */
interface TypedArrayClass<T extends ArrayBufferView> {
  new (length: number): T;
  new (buffer: ArrayBufferLike, byteOffset?: number, length?: number): T;
  readonly BYTES_PER_ELEMENT: number;
  readonly name: string;
}

/** The bytes of any typed array, by its own offset and length (never the whole underlying buffer). */
export function bytesOf(v: ArrayBufferView): Uint8Array {
  return v instanceof Uint8Array ? v : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

/**
 * `v` as a `T`: a `T` is returned as is; `bin` bytes whose length is a multiple of the element size become a fresh
 * host-order `T` read as little-endian. Anything else is returned unchanged, for the schema to refuse.
 */
export function asTypedArray<T extends ArrayBufferView>(v: unknown, Class: TypedArrayClass<T>): unknown {
  if (v instanceof Class) return v;
  if (!(v instanceof Uint8Array) || v.byteLength % Class.BYTES_PER_ELEMENT !== 0) return v;
  const size = Class.BYTES_PER_ELEMENT;
  const out = new Class(v.byteLength / size);
  const outBytes = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  outBytes.set(v);
  if (!LITTLE_ENDIAN && size > 1) {
    for (let i = 0; i < outBytes.length; i += size) outBytes.subarray(i, i + size).reverse();
  }
  return out;
}

/** What the value is, for an error message ("a Float64Array", "a list", "a string"). */
export function describeValue(v: unknown): string {
  if (v === undefined || v === null) return 'nothing';
  if (ArrayBuffer.isView(v)) return `a ${v.constructor.name === 'Buffer' ? 'Uint8Array' : v.constructor.name} of ${(v as Uint8Array).length}`;
  if (Array.isArray(v)) return 'a list';
  return typeof v === 'object' ? 'a map' : `a ${typeof v}`;
}
