import { Packr } from 'msgpackr';

// moreTypes: typed arrays travel as binary extensions and come back as the same typed array class.
// useRecords:false keeps frames self-describing (no shared structure state between peers).
const packr = new Packr({ useRecords: false, moreTypes: true, mapsAsObjects: true });

export function encodeFrame(msg: unknown): Uint8Array {
  return packr.pack(msg);
}

/** Throws on bytes that are not one complete msgpack value. */
export function decodeFrame(bytes: Uint8Array): unknown {
  return packr.unpack(bytes);
}
