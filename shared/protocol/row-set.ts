/**
 * A sorted set of distinct proxy rows (a round's `indices`) in a compact wire form, `round.rows`.
 *
 * A round lists the proxy rows a client computes logits on. As a uint32 list that is 4 bytes a row: at 4,500 rows of a
 * 10,000-row proxy set, 18 KB of every client's downlink, as much as its whole topk8 upload (4.5 B a row). The rows
 * are always ascending and distinct, and the client knows the proxy set's size N, so two forms carry them in less:
 *
 * - `bitmap`: bit i set ⇔ row i is in the set; bit i is bit (i mod 8) of byte ⌊i/8⌋ (least significant first).
 *   Exactly ⌈N/8⌉ bytes; the bits past N in the last byte are 0. Cost: N/8 bytes, whatever the rows.
 * - `gaps`: one unsigned LEB128 varint per row, in ascending order: the first row itself, then each row minus the
 *   previous one minus 1 (≥ 0, since rows are distinct). A varint is 7 bits a byte, least significant group first, the
 *   high bit set on every byte but the last; at most 5 bytes (a value < 2^32) and minimal (no redundant final 0x00
 *   group). Cost: ~1 byte a row while gaps stay < 128 (n rows of N spread out: mean gap N/n).
 *
 * With n rows of N, bitmap is smaller once n > N/8 (a round's 1,500 or 4,500 rows of 10,000: 1,250 bytes, against
 * 6,000 or 18,000 as uint32); gaps below that (200 rows of 400: gaps 200 bytes vs bitmap 50; 200 of 10,000: ~220
 * bytes). The sender picks the smaller of the forms the receiver decodes (encodeRows).
 *
 * Receivers validate everything before allocating: the decoded set has at most 8·|data| rows (bitmap) or |data| rows
 * (gaps), so a hostile frame cannot make a client allocate more than 32 bytes per byte received; `maxRows` caps it
 * further. Browser-safe: no Node APIs.
 */

export const ROW_ENCODINGS = ['bitmap', 'gaps'] as const;
export type RowEncodingName = (typeof ROW_ENCODINGS)[number];

/** A row set on the wire: its form, the proxy set size the rows index into, and the payload. */
export interface EncodedRows {
  encoding: RowEncodingName;
  /** Rows in the proxy set (`welcome.proxy.count`): every row is < proxyCount; a bitmap has ⌈proxyCount/8⌉ bytes. */
  proxyCount: number;
  data: Uint8Array;
}

/** Row ids are uint32: a proxy set of at most 2^32 rows (ids 0 … 2^32 − 1). */
export const MAX_PROXY_ROWS = 2 ** 32;

const MAX_VARINT_BYTES = 5;

/** Why `rows` cannot be sent as a row set over `proxyCount` rows (not strictly ascending, out of range), or null. */
export function rowOrderError(rows: ArrayLike<number>, proxyCount: number): string | null {
  if (!Number.isSafeInteger(proxyCount) || proxyCount < 0 || proxyCount > MAX_PROXY_ROWS) {
    return `proxy set size ${proxyCount} is not an integer in [0, 2^32]`;
  }
  let prev = -1;
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i];
    if (!Number.isInteger(r) || r < 0 || r >= proxyCount) {
      return `row ${r} at position ${i} is not a row of a ${proxyCount}-row proxy set`;
    }
    if (r <= prev) return `rows must be strictly ascending: row ${r} at position ${i} follows ${prev}`;
    prev = r;
  }
  return null;
}

function varintLength(v: number): number {
  return v < 2 ** 7 ? 1 : v < 2 ** 14 ? 2 : v < 2 ** 21 ? 3 : v < 2 ** 28 ? 4 : 5;
}

/** Payload bytes of `rows` in `encoding`, without encoding them; `rows` must pass rowOrderError. */
export function encodedRowsLength(rows: ArrayLike<number>, proxyCount: number, encoding: RowEncodingName): number {
  if (encoding === 'bitmap') return Math.ceil(proxyCount / 8);
  let n = 0;
  for (let i = 0; i < rows.length; i++) n += varintLength(i === 0 ? rows[0] : rows[i] - rows[i - 1] - 1);
  return n;
}

/** The form of `accepted` with the fewest payload bytes for these rows (ties: the earlier in ROW_ENCODINGS). */
export function smallestRowEncoding(
  rows: ArrayLike<number>,
  proxyCount: number,
  accepted: readonly RowEncodingName[] = ROW_ENCODINGS,
): RowEncodingName {
  let best: RowEncodingName | undefined;
  let bestBytes = Infinity;
  for (const e of ROW_ENCODINGS) {
    if (!accepted.includes(e)) continue;
    const bytes = encodedRowsLength(rows, proxyCount, e);
    if (bytes < bestBytes) (best = e), (bestBytes = bytes);
  }
  if (!best) throw new Error(`no known row encoding among [${accepted.join(', ')}]; known: ${ROW_ENCODINGS.join(', ')}`);
  return best;
}

/**
 * Encode strictly ascending rows of a `proxyCount`-row proxy set, in the smallest of the `accepted` forms (or the one
 * named). Throws if the rows are not a sorted set of that proxy set's rows: a set has no order of its own, so a list
 * in any other order (whose order is the upload's row order) must travel as a list.
 */
export function encodeRows(
  rows: ArrayLike<number>,
  proxyCount: number,
  accepted: readonly RowEncodingName[] = ROW_ENCODINGS,
): EncodedRows {
  const err = rowOrderError(rows, proxyCount);
  if (err) throw new Error(`cannot encode as a row set: ${err}`);
  const encoding = smallestRowEncoding(rows, proxyCount, accepted);
  const data = new Uint8Array(encodedRowsLength(rows, proxyCount, encoding));
  if (encoding === 'bitmap') {
    for (let i = 0; i < rows.length; i++) data[rows[i] >>> 3] |= 1 << (rows[i] & 7);
  } else {
    let at = 0;
    for (let i = 0; i < rows.length; i++) {
      // Arithmetic, not bit operators: a gap may need all 32 bits (bit operators are signed 32-bit).
      let v = i === 0 ? rows[0] : rows[i] - rows[i - 1] - 1;
      while (v >= 0x80) {
        data[at++] = (v % 0x80) | 0x80;
        v = Math.floor(v / 0x80);
      }
      data[at++] = v;
    }
  }
  return { encoding, proxyCount, data };
}

const POPCOUNT = Uint8Array.from({ length: 256 }, (_, b) => {
  let n = 0;
  for (let x = b; x; x >>= 1) n += x & 1;
  return n;
});

/** What a receiver checks a row set against: the proxy set it holds, and the most rows it will take. */
export interface RowSetExpectation {
  proxyCount?: number;
  maxRows?: number;
}

type Walked = { count: number } | { error: string };

/**
 * Walk a row set without allocating: its row count, or why it is malformed (unknown form, payload length, bits past
 * the proxy set, truncated / overlong / non-minimal varints, rows past the proxy set, more rows than `maxRows`).
 * `visit` sees each row in ascending order (decodeRows' second pass, once the first found the set well-formed).
 */
function walk(e: EncodedRows, expect: RowSetExpectation, visit?: (row: number) => void): Walked {
  // A peer's map may hold anything: nothing is trusted to be of its declared type until checked.
  const { encoding, proxyCount, data } = (e ?? {}) as { encoding?: unknown; proxyCount?: unknown; data?: unknown };
  if (typeof encoding !== 'string' || !(ROW_ENCODINGS as readonly string[]).includes(encoding)) {
    return { error: `encoding must be one of ${ROW_ENCODINGS.join(', ')}` };
  }
  if (typeof proxyCount !== 'number' || !Number.isSafeInteger(proxyCount) || proxyCount < 0 || proxyCount > MAX_PROXY_ROWS) {
    const got = typeof proxyCount === 'number' ? proxyCount : typeof proxyCount;
    return { error: `proxyCount must be an integer in [0, 2^32], got ${got}` };
  }
  if (!(data instanceof Uint8Array)) return { error: 'data must be bytes' };
  if (expect.proxyCount !== undefined && proxyCount !== expect.proxyCount) {
    return { error: `rows index a proxy set of ${proxyCount} rows; this one has ${expect.proxyCount}` };
  }
  const maxRows = expect.maxRows ?? Infinity;
  let count = 0;
  if (encoding === 'bitmap') {
    const want = Math.ceil(proxyCount / 8);
    if (data.byteLength !== want) {
      return { error: `a bitmap over ${proxyCount} rows must be ⌈${proxyCount}/8⌉ = ${want} bytes, got ${data.byteLength}` };
    }
    const tail = proxyCount % 8;
    if (tail !== 0 && data[want - 1] >>> tail !== 0) {
      const last = data[want - 1].toString(16).padStart(2, '0');
      return { error: `bitmap sets bits past the proxy set's ${proxyCount} rows (its last byte is 0x${last})` };
    }
    for (let b = 0; b < want; b++) {
      const byte = data[b];
      if (byte === 0) continue;
      count += POPCOUNT[byte];
      if (count > maxRows) return { error: `more than ${maxRows} rows` };
      if (visit) for (let bit = 0; bit < 8; bit++) if (byte & (1 << bit)) visit(b * 8 + bit);
    }
    return { count };
  }
  let prev = -1;
  let at = 0;
  while (at < data.byteLength) {
    const start = at;
    let value = 0;
    let scale = 1;
    for (;;) {
      if (at >= data.byteLength) {
        return { error: `varint at byte ${start} is truncated (its last byte has the continuation bit)` };
      }
      if (at - start >= MAX_VARINT_BYTES) return { error: `varint at byte ${start} is longer than ${MAX_VARINT_BYTES} bytes` };
      const byte = data[at++];
      value += (byte & 0x7f) * scale;
      scale *= 0x80;
      if (byte < 0x80) {
        if (byte === 0 && at - start > 1) {
          return { error: `varint at byte ${start} is not minimal (a redundant final 0x00 group)` };
        }
        break;
      }
    }
    if (value >= 2 ** 32) return { error: `varint at byte ${start} is ${value}, not below 2^32` };
    const row = prev + 1 + value;
    if (row >= proxyCount) {
      return { error: `row ${count} (varint at byte ${start}) is ${row}, past the proxy set's ${proxyCount} rows` };
    }
    if (++count > maxRows) return { error: `more than ${maxRows} rows` };
    visit?.(row);
    prev = row;
  }
  return { count };
}

/** Why `e` is not a well-formed row set (meeting `expect`), or null. Allocates nothing. */
export function rowSetError(e: EncodedRows, expect: RowSetExpectation = {}): string | null {
  const r = walk(e, expect);
  return 'error' in r ? r.error : null;
}

/** The rows of a row set, ascending (the upload's row order). Validates first; throws an Error saying what is wrong. */
export function decodeRows(e: EncodedRows, expect: RowSetExpectation = {}): Uint32Array {
  const checked = walk(e, expect);
  if ('error' in checked) throw new Error(checked.error);
  const out = new Uint32Array(checked.count);
  let n = 0;
  walk(e, expect, (row) => (out[n++] = row));
  return out;
}
