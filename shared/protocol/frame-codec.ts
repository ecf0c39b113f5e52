import { Packr, type Options } from 'msgpackr';

// moreTypes: typed arrays travel as binary extensions and come back as the same typed array class.
// useRecords:false keeps frames self-describing (no shared structure state between peers).
// structuredClone:false: no reference extensions, so a small frame can't expand into many aliases of one big array.
// skipValues:[undefined]: a map entry whose value is undefined (an optional field left unset) is left out. Without
// it msgpackr writes JS `undefined` as ext type 0 (bytes d4 00 00), which other decoders return as an opaque ext or
// refuse. Arrays and JS Maps keep undefined elements (no frame has any). The same codec writes checkpoints and the
// journal: what they bring back lacks such keys instead of holding them as undefined, which reads the same.
const options: Options & { skipValues: unknown[] } = {
  useRecords: false,
  moreTypes: true,
  mapsAsObjects: true,
  structuredClone: false,
  skipValues: [undefined],
};
const packr = new Packr(options);

export function encodeFrame(msg: unknown): Uint8Array {
  return packr.pack(msg);
}

/** Throws on bytes that are not one complete msgpack value. */
export function decodeFrame(bytes: Uint8Array): unknown {
  return packr.unpack(bytes);
}
