/**
 * A cheap structural pre-check of an inbound msgpack frame, run before it is decoded.
 *
 * Decoding is where a hostile frame costs the most: msgpackr builds a JS object for every map entry and array
 * element, so a 14 MiB map of 2.5M keys froze the event loop for 7.5 s and a 16 MiB array of nils for 1.4 s. This
 * walk reads only the msgpack *headers*, iteratively (no recursion, nothing allocated per item), and refuses a frame
 * before any object is built when it:
 *  - declares a map or array with more entries than the event's schema can need, or more than the bytes left could
 *    hold (every value takes at least one byte, so a 5-byte array32 header claiming 2^32 elements is refused at once);
 *  - nests containers deeper than the schema;
 *  - holds more values in all (keys included) than the schema can need;
 *  - uses a map key that is not a string, or a msgpack extension other than msgpackr's typed arrays (0x74); other
 *    extensions decode into Sets, Errors, RegExps or nested msgpack that would bypass this walk;
 *  - is truncated, has bytes after its one value, or uses the never-assigned byte 0xc1.
 * bin/str/ext payloads are skipped by their declared length (checked against the frame), so a frame's cost here is
 * proportional to its number of headers, which `maxItems` bounds: tens of thousands at most, well under a millisecond.
 */

/** The structure an event's frames may have: derived from its schema's largest valid message, with some slack. */
export interface FrameShape {
  /** Containers (maps/arrays) nested inside one another, the frame's own map counting 1. At most 60. */
  maxDepth: number;
  /** Entries (key/value pairs) of any one map. */
  maxMapEntries: number;
  /** Elements of any one array. */
  maxArrayLength: number;
  /** Values in the whole frame, map keys included (a bin/str/ext payload is one value, whatever its length). */
  maxItems: number;
}

/** Why a frame was refused: `malformed` (not one well-formed msgpack value) or `limit` (well-formed but too big). */
export interface ScanRefusal {
  kind: 'malformed' | 'limit';
  message: string;
}

/** msgpackr's typed-array extension: the only one an inbound frame may use. */
const TYPED_ARRAY_EXT = 0x74;
const MAX_DEPTH = 60;
// One scratch stack for every call (the walk is synchronous): values still to read per open container, and whether
// it is a map (odd/even position tells a key from a value).
const remaining = new Float64Array(MAX_DEPTH + 2);
const isMap = new Uint8Array(MAX_DEPTH + 2);

/** Walk `bytes` as one msgpack value under `shape`; null when it may be decoded, else why not. */
export function scanFrame(bytes: Uint8Array, shape: FrameShape): ScanRefusal | null {
  const n = bytes.length;
  const maxDepth = Math.min(shape.maxDepth, MAX_DEPTH);
  const malformed = (message: string): ScanRefusal => ({ kind: 'malformed', message });
  const limit = (message: string): ScanRefusal => ({ kind: 'limit', message });
  let p = 0;
  let items = 0;
  let depth = 0;
  remaining[0] = 1; // the frame's one value
  isMap[0] = 0;
  for (;;) {
    while (depth >= 0 && remaining[depth] === 0) depth--;
    if (depth < 0) break;
    const keyPosition = isMap[depth] === 1 && remaining[depth] % 2 === 0;
    remaining[depth]--;
    if (p >= n) return malformed(`truncated msgpack: a value is missing at byte ${p}`);
    if (++items > shape.maxItems) return limit(`frame holds more than ${shape.maxItems} msgpack values`);
    const b = bytes[p++];
    let skip = 0; // payload bytes after the header
    let entries = -1; // ≥ 0: a container with this many entries opens
    let map = false;
    let ext = -1; // length of an ext payload (its type byte is read first)
    if (b <= 0x7f || b >= 0xe0) skip = 0; // positive / negative fixint
    else if (b <= 0x8f) (entries = b & 0x0f), (map = true);
    else if (b <= 0x9f) entries = b & 0x0f;
    else if (b <= 0xbf) skip = b & 0x1f; // fixstr
    else {
      const need = (k: number) => p + k <= n;
      switch (b) {
        case 0xc0: case 0xc2: case 0xc3: break; // nil, false, true
        case 0xc1: return malformed(`byte 0xc1 at ${p - 1} is not a msgpack header`);
        case 0xc4: case 0xd9: if (!need(1)) return malformed('truncated msgpack header'); skip = bytes[p]; p += 1; break;
        case 0xc5: case 0xda: if (!need(2)) return malformed('truncated msgpack header'); skip = u16(bytes, p); p += 2; break;
        case 0xc6: case 0xdb: if (!need(4)) return malformed('truncated msgpack header'); skip = u32(bytes, p); p += 4; break;
        case 0xc7: if (!need(1)) return malformed('truncated msgpack header'); ext = bytes[p]; p += 1; break;
        case 0xc8: if (!need(2)) return malformed('truncated msgpack header'); ext = u16(bytes, p); p += 2; break;
        case 0xc9: if (!need(4)) return malformed('truncated msgpack header'); ext = u32(bytes, p); p += 4; break;
        case 0xca: skip = 4; break; // float 32
        case 0xcb: skip = 8; break; // float 64
        case 0xcc: case 0xd0: skip = 1; break; // (u)int 8
        case 0xcd: case 0xd1: skip = 2; break;
        case 0xce: case 0xd2: skip = 4; break;
        case 0xcf: case 0xd3: skip = 8; break;
        case 0xd4: ext = 1; break; // fixext 1, 2, 4, 8, 16
        case 0xd5: ext = 2; break;
        case 0xd6: ext = 4; break;
        case 0xd7: ext = 8; break;
        case 0xd8: ext = 16; break;
        case 0xdc: if (!need(2)) return malformed('truncated msgpack header'); entries = u16(bytes, p); p += 2; break;
        case 0xdd: if (!need(4)) return malformed('truncated msgpack header'); entries = u32(bytes, p); p += 4; break;
        case 0xde: if (!need(2)) return malformed('truncated msgpack header'); entries = u16(bytes, p); p += 2; map = true; break;
        case 0xdf: if (!need(4)) return malformed('truncated msgpack header'); entries = u32(bytes, p); p += 4; map = true; break;
      }
    }
    const isString = (b >= 0xa0 && b <= 0xbf) || b === 0xd9 || b === 0xda || b === 0xdb;
    if (keyPosition && !isString) return malformed(`map keys must be strings (byte ${p - 1})`);
    if (ext >= 0) {
      if (p >= n) return malformed('truncated msgpack extension');
      const type = bytes[p] > 127 ? bytes[p] - 256 : bytes[p];
      if (type !== TYPED_ARRAY_EXT) return malformed(`msgpack extension type ${type} is not accepted (only typed arrays, 0x74)`);
      skip = ext + 1;
    }
    if (skip > 0) {
      if (p + skip > n) return malformed(`truncated msgpack: ${skip} payload bytes declared at byte ${p}, ${n - p} left`);
      p += skip;
    }
    if (entries >= 0) {
      if (map && entries > shape.maxMapEntries) return limit(`a map declares ${entries} entries; at most ${shape.maxMapEntries}`);
      if (!map && entries > shape.maxArrayLength) return limit(`an array declares ${entries} elements; at most ${shape.maxArrayLength}`);
      const values = map ? 2 * entries : entries;
      if (values > n - p) return malformed(`a ${map ? 'map' : 'array'} declares ${entries} entries but only ${n - p} bytes follow`);
      if (values > 0) {
        if (depth + 1 > maxDepth) return limit(`containers nest deeper than ${maxDepth}`);
        depth++;
        remaining[depth] = values;
        isMap[depth] = map ? 1 : 0;
      }
    }
  }
  if (p !== n) return malformed(`${n - p} bytes after the msgpack value`);
  return null;
}

function u16(b: Uint8Array, p: number): number {
  return (b[p] << 8) | b[p + 1];
}

function u32(b: Uint8Array, p: number): number {
  return ((b[p] << 24) >>> 0) + ((b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3]);
}
