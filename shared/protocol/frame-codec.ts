import { Packr } from 'msgpackr';

// moreTypes: typed arrays travel as binary extensions and come back as the same typed array class.
// useRecords:false keeps frames self-describing (no shared structure state between peers).
// structuredClone:false: no reference extensions, so a small frame can't expand into many aliases of one big array.
const packr = new Packr({ useRecords: false, moreTypes: true, mapsAsObjects: true, structuredClone: false });

export function encodeFrame(msg: unknown): Uint8Array {
  return packr.pack(msg);
}

/** Throws on bytes that are not one complete msgpack value. */
export function decodeFrame(bytes: Uint8Array): unknown {
  return packr.unpack(bytes);
}
