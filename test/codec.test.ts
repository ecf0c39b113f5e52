import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Packr } from 'msgpackr';
import {
  bytesPerRow,
  decodeMatrix,
  encodeMatrix,
  encodedByteLength,
  float16BitsToFloat32,
  float32ToFloat16Bits,
  fromPortableMatrix,
  LOGIT_CODECS,
  toPortableMatrix,
  validateEncodedMatrix,
  type EncodedMatrix,
  type LogitCodecName,
} from '../shared/tensor/logit-codec.ts';
import { Rng } from '../shared/data/rng.ts';

// --- deterministic realistic logits: N(0,1)·5, ~2% of entries ±30 ---------------------------------
function seededRandom(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.next();
}
function realisticLogits(rows: number, cols: number, seed = 7): Float32Array {
  const rnd = seededRandom(seed);
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < out.length; i++) {
    const u = Math.max(rnd(), 1e-12);
    const g = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rnd());
    out[i] = rnd() < 0.02 ? (rnd() < 0.5 ? -30 : 30) + g : 5 * g;
  }
  return out;
}
const ROWS = 500;
const COLS = 10;
const Z = realisticLogits(ROWS, COLS);

/** Independent float64 reference for binary16 rounding (nearest, ties to even mantissa), saturating at the IEEE overflow threshold. */
function refHalf(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const a = Math.abs(x);
  if (a >= 65520) return Math.sign(x) * Infinity;
  const e = a < 2 ** -14 ? -14 : Math.floor(Math.log2(a));
  const ulp = 2 ** (e - 10);
  const m = a / ulp; // exact: power-of-two scaling
  let r = Math.floor(m);
  const frac = m - r;
  if (frac > 0.5 || (frac === 0.5 && r % 2 === 1)) r++;
  const v = r * ulp;
  return x < 0 || Object.is(x, -0) ? -v : v;
}

test('fp16 bit conversion: exact and special values', () => {
  const cases: [number, number][] = [
    [0, 0x0000], [-0, 0x8000], [1, 0x3c00], [-2, 0xc000], [0.5, 0x3800], [65504, 0x7bff], [-65504, 0xfbff],
    [65519.99, 0x7bff], // just below the overflow tie → max half
    [65520, 0x7c00], // tie between 65504 and 2^16 → even → +Inf
    [Infinity, 0x7c00], [-Infinity, 0xfc00], [1e10, 0x7c00],
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -25, 0x0000], // tie → even (0)
    [3 * 2 ** -25, 0x0002], // 1.5 ulp → even (2)
    [1023 * 2 ** -24, 0x03ff], // largest subnormal
    [1 + 2 ** -11, 0x3c00], // tie → even
    [1 + 3 * 2 ** -11, 0x3c02], // tie → even (up)
    [1 + 2 ** -11 + 2 ** -20, 0x3c01], // just above tie → up
  ];
  for (const [x, h] of cases) {
    assert.equal(float32ToFloat16Bits(x), h, `f16(${x})`);
  }
  assert.equal(float32ToFloat16Bits(NaN) & 0x7c00, 0x7c00);
  assert.ok(Number.isNaN(float16BitsToFloat32(float32ToFloat16Bits(NaN))));
  assert.equal(float16BitsToFloat32(0x7c00), Infinity);
  assert.equal(float16BitsToFloat32(0xfc00), -Infinity);
  assert.ok(Object.is(float16BitsToFloat32(0x8000), -0));
  assert.equal(float16BitsToFloat32(0x0001), 2 ** -24);
  assert.equal(float16BitsToFloat32(0x7bff), 65504);
});

test('fp16: every half round-trips; random floats match an independent reference', () => {
  for (let h = 0; h < 65536; h++) {
    const x = float16BitsToFloat32(h);
    if (Number.isNaN(x)) continue;
    assert.equal(float32ToFloat16Bits(x), h);
  }
  const rnd = seededRandom(3);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < 200_000; i++) {
    // Random float32 bit patterns with exponents around the half range (2^-30 .. 2^17).
    u[0] = ((rnd() * 2 ** 32) >>> 0 & 0x807fffff) | ((97 + Math.floor(rnd() * 48)) << 23);
    const x = f[0];
    const got = float16BitsToFloat32(float32ToFloat16Bits(x));
    assert.ok(Object.is(got, refHalf(x)), `x=${x} got ${got} want ${refHalf(x)}`);
  }
});

test('fp32 codec is exact; fp16 codec relative error ≤ 2^-11', () => {
  const d32 = decodeMatrix(encodeMatrix(Z, ROWS, COLS, 'fp32'));
  assert.deepEqual(d32, Z);
  const enc = encodeMatrix(Z, ROWS, COLS, 'fp16');
  const d16 = decodeMatrix(enc);
  let worst = 0;
  for (let i = 0; i < Z.length; i++) {
    const a = Math.abs(Z[i]);
    const err = Math.abs(d16[i] - Z[i]);
    if (a >= 2 ** -14) worst = Math.max(worst, err / a);
    else assert.ok(err <= 2 ** -25);
  }
  assert.ok(worst <= 2 ** -11, `fp16 worst relative error ${worst}`);
  // Saturation rather than Inf for huge finite logits.
  const big = decodeMatrix(encodeMatrix(new Float32Array([1e6, -1e6, 70000]), 1, 3, 'fp16'));
  assert.deepEqual(Array.from(big), [65504, -65504, 65504]);
});

test('int8 codec: |error| ≤ half a quantisation step per row', () => {
  const enc = encodeMatrix(Z, ROWS, COLS, 'int8');
  const d = decodeMatrix(enc);
  let worstRatio = 0;
  for (let r = 0; r < ROWS; r++) {
    let min = Infinity;
    let max = -Infinity;
    for (let j = 0; j < COLS; j++) {
      min = Math.min(min, Z[r * COLS + j]);
      max = Math.max(max, Z[r * COLS + j]);
    }
    const step = enc.scales![r];
    assert.ok(step >= (max - min) / 255 && step <= ((max - min) / 255) * (1 + 2 ** -22), `row ${r} step`);
    for (let j = 0; j < COLS; j++) {
      const x = Z[r * COLS + j];
      const err = Math.abs(d[r * COLS + j] - x);
      assert.ok(err <= step / 2 + Math.abs(x) * 2 ** -23, `row ${r} col ${j}: err ${err} step ${step}`);
      worstRatio = Math.max(worstRatio, err / step);
    }
  }
  assert.ok(worstRatio <= 0.5 + 1e-4, `worst err/step ${worstRatio}`);
  // Constant rows decode exactly.
  const flat = decodeMatrix(encodeMatrix(new Float32Array([3.25, 3.25, 3.25]), 1, 3, 'int8'));
  assert.deepEqual(Array.from(flat), [3.25, 3.25, 3.25]);
});

test('topk codec: top-k set and order, argmax, and softmax mass preserved', () => {
  const k = 3;
  const enc = encodeMatrix(Z, ROWS, COLS, 'topk', { k });
  assert.equal(enc.k, k);
  assert.ok(enc.indices instanceof Uint8Array);
  const d = decodeMatrix(enc);
  for (let r = 0; r < ROWS; r++) {
    const row = Array.from(Z.subarray(r * COLS, (r + 1) * COLS));
    const order = row.map((v, j) => j).sort((a, b) => row[b] - row[a] || a - b);
    assert.deepEqual(Array.from(enc.indices!.subarray(r * k, (r + 1) * k)), order.slice(0, k), `row ${r} indices`);
    const drow = Array.from(d.subarray(r * COLS, (r + 1) * COLS));
    const dArg = drow.indexOf(Math.max(...drow));
    assert.equal(dArg, order[0], `row ${r} argmax`);
    for (const j of order.slice(0, k)) assert.ok(Math.abs(drow[j] - row[j]) <= Math.abs(row[j]) * 2 ** -11 + 2 ** -25);
    for (const j of order.slice(k)) assert.ok(drow[j] <= drow[order[k - 1]]);
    // softmax(decoded) ≈ softmax(original) on kept classes, total tail mass equal.
    const sm = (v: number[]) => {
      const m = Math.max(...v);
      const e = v.map((x) => Math.exp(x - m));
      const s = e.reduce((a, b) => a + b, 0);
      return e.map((x) => x / s);
    };
    const p = sm(row);
    const q = sm(drow);
    const tail = (v: number[]) => order.slice(k).reduce((s, j) => s + v[j], 0);
    for (const j of order.slice(0, k)) assert.ok(Math.abs(p[j] - q[j]) <= 0.02 * p[j] + 1e-6, `row ${r} kept prob`);
    assert.ok(Math.abs(tail(p) - tail(q)) <= 0.02 * tail(p) + 1e-6, `row ${r} tail mass`);
  }
  // k ≥ cols keeps everything (fp16 values); cols > 256 uses 16-bit indices.
  const all = decodeMatrix(encodeMatrix(Z.subarray(0, COLS), 1, COLS, 'topk', { k: 99 }));
  for (let j = 0; j < COLS; j++) assert.ok(Math.abs(all[j] - Z[j]) <= Math.abs(Z[j]) * 2 ** -11);
  const wide = realisticLogits(4, 300, 11);
  const encW = encodeMatrix(wide, 4, 300, 'topk', { k: 5 });
  assert.ok(encW.indices instanceof Uint16Array);
  const dW = decodeMatrix(encW);
  for (let r = 0; r < 4; r++) {
    const a = Array.from(wide.subarray(r * 300, (r + 1) * 300));
    const b = Array.from(dW.subarray(r * 300, (r + 1) * 300));
    assert.equal(b.indexOf(Math.max(...b)), a.indexOf(Math.max(...a)));
  }
});

test('topk: near-ties collapsed by fp16 keep the sender ranking', () => {
  // 4.9574 and 4.9563 round to the same half (4.957); 30.0004 and 30.0 too.
  const z = new Float32Array([-3.35, 4.9563, 1.33, 0.877, 4.9574, 30.0, 30.0004, -1, 2, 0]);
  for (const k of [1, 2, 3, 4]) {
    const d = decodeMatrix(encodeMatrix(z, 1, 10, 'topk', { k }));
    assert.equal(d.indexOf(Math.max(...d)), 6, `k=${k}`);
    const order = [6, 5, 4, 1].slice(0, k);
    for (let t = 1; t < k; t++) assert.ok(d[order[t]] < d[order[t - 1]], `k=${k} strict order`);
    for (let j = 0; j < 10; j++) if (!order.includes(j)) assert.ok(d[j] < d[order[k - 1]], `k=${k} rest below kept`);
  }
  // Exact input ties resolve to the lower column, like argmax.
  const tie = decodeMatrix(encodeMatrix(new Float32Array([1, 7, 7, 7]), 1, 4, 'topk', { k: 1 }));
  assert.equal(tie.indexOf(Math.max(...tie)), 1);
});

test('byte lengths per codec', () => {
  // topk8: 3 ids × 4 bits + 2 gap codes + 1 rest code.
  const expectPerRow: Record<LogitCodecName, number> = { fp32: 40, fp16: 20, int8: 18, topk: 3 * 3 + 4, topk8: 1.5 + 3 };
  for (const codec of LOGIT_CODECS) {
    const enc = encodeMatrix(Z, ROWS, COLS, codec, { k: 3 });
    assert.equal(encodedByteLength(enc), ROWS * expectPerRow[codec], codec);
    assert.equal(bytesPerRow(codec, COLS, 3), expectPerRow[codec]);
    assert.equal(validateEncodedMatrix(enc, { rows: ROWS, cols: COLS, maxBytes: ROWS * 40 }), null, codec);
  }
});

test('encode rejects non-finite input and bad shapes', () => {
  for (const bad of [NaN, Infinity, -Infinity]) {
    for (const codec of LOGIT_CODECS) {
      assert.throws(() => encodeMatrix(new Float32Array([1, bad, 2, 3]), 2, 2, codec), /non-finite/);
    }
  }
  assert.throws(() => encodeMatrix(new Float32Array(5), 2, 2, 'fp32'));
  assert.throws(() => encodeMatrix(new Float32Array(4), 2, 2, 'topk', { k: 0 }));
  assert.throws(() => encodeMatrix(new Float32Array(4), 2, 2, 'nope' as LogitCodecName));
});

test('validation rejects corrupt encodings; decode never reads out of bounds', () => {
  const good: Record<LogitCodecName, EncodedMatrix> = {
    fp32: encodeMatrix(Z.subarray(0, 40), 4, 10, 'fp32'),
    fp16: encodeMatrix(Z.subarray(0, 40), 4, 10, 'fp16'),
    int8: encodeMatrix(Z.subarray(0, 40), 4, 10, 'int8'),
    topk: encodeMatrix(Z.subarray(0, 40), 4, 10, 'topk', { k: 3 }),
    topk8: encodeMatrix(Z.subarray(0, 40), 4, 10, 'topk8', { k: 3 }),
  };
  const bad: [string, unknown][] = [
    ['null', null],
    ['string', 'fp32'],
    ['bad codec', { ...good.fp32, codec: 'fp64' }],
    ['fractional rows', { ...good.fp32, rows: 3.5 }],
    ['negative rows', { ...good.fp32, rows: -1 }],
    ['zero cols', { ...good.fp32, cols: 0 }],
    ['string rows', { ...good.fp32, rows: '4' }],
    ['huge rows', { ...good.fp32, rows: 2 ** 40 }],
    ['short fp32', { ...good.fp32, data: good.fp32.data.subarray(0, 156) }],
    ['long fp16', { ...good.fp16, data: new Uint8Array(81) }],
    ['data not bytes', { ...good.fp16, data: Array.from(good.fp16.data) }],
    ['fp32 with scales', { ...good.fp32, scales: new Float32Array(4) }],
    ['fp32 NaN payload', { ...good.fp32, data: new Uint8Array(new Float32Array(40).fill(NaN).buffer) }],
    ['fp16 Inf payload', { ...good.fp16, data: new Uint8Array(new Uint16Array(40).fill(0x7c00).buffer) }],
    ['int8 short data', { ...good.int8, data: new Uint8Array(39) }],
    ['int8 NaN scale', { ...good.int8, scales: Float32Array.from([1, NaN, 1, 1]) }],
    ['int8 negative scale', { ...good.int8, scales: Float32Array.from([1, -1, 1, 1]) }],
    ['int8 Inf offset', { ...good.int8, offsets: Float32Array.from([0, Infinity, 0, 0]) }],
    ['int8 overflow range', { ...good.int8, scales: Float32Array.from([3e38, 1, 1, 1]) }],
    ['int8 scales as Float64Array', { ...good.int8, scales: new Float64Array(4) }],
    ['int8 missing offsets', { ...good.int8, offsets: undefined }],
    ['int8 scales too short', { ...good.int8, scales: new Float32Array(3) }],
    ['topk k=0', { ...good.topk, k: 0 }],
    ['topk k>cols', { ...good.topk, k: 11 }],
    ['topk k mismatching data', { ...good.topk, k: 2 }],
    ['topk index out of range', { ...good.topk, indices: new Uint8Array(12).fill(10) }],
    ['topk duplicate index', { ...good.topk, indices: new Uint8Array(12).fill(1) }],
    ['topk indices as plain array', { ...good.topk, indices: Array.from(good.topk.indices!) }],
    ['topk short indices', { ...good.topk, indices: new Uint8Array(11) }],
    ['topk NaN rest', { ...good.topk, offsets: Float32Array.from([0, 0, NaN, 0]) }],
    ['topk with a step', { ...good.topk, step: 0.0625 }],
  ];
  for (const [what, enc] of bad) {
    const err = validateEncodedMatrix(enc);
    assert.equal(typeof err, 'string', `${what} should be rejected`);
  }
  for (const enc of Object.values(good)) assert.equal(validateEncodedMatrix(enc), null);
  assert.match(validateEncodedMatrix(good.fp32, { rows: 5 })!, /rows/);
  assert.match(validateEncodedMatrix(good.fp32, { cols: 9 })!, /cols/);
  assert.match(validateEncodedMatrix(good.fp32, { maxBytes: 100 })!, /exceeds/);
  // Structurally broken inputs make decode throw instead of reading out of bounds.
  const structural = new Set([
    'null', 'string', 'bad codec', 'fractional rows', 'negative rows', 'zero cols', 'string rows', 'huge rows',
    'short fp32', 'long fp16', 'data not bytes', 'fp32 with scales', 'int8 short data', 'int8 scales as Float64Array',
    'int8 missing offsets', 'int8 scales too short', 'topk k=0', 'topk k>cols', 'topk k mismatching data',
    'topk index out of range', 'topk indices as plain array', 'topk short indices',
  ]);
  for (const [what, enc] of bad) {
    if (structural.has(what)) assert.throws(() => decodeMatrix(enc as EncodedMatrix), /decodeMatrix/, what);
  }
});

test('unaligned payloads (msgpack slices) decode correctly', () => {
  for (const codec of LOGIT_CODECS) {
    const enc = encodeMatrix(Z.subarray(0, 50), 5, 10, codec);
    const want = decodeMatrix(enc);
    for (const pad of [1, 2, 3]) {
      const shifted = new Uint8Array(enc.data.byteLength + pad);
      shifted.set(enc.data, pad);
      // A Node Buffer too: its slice() is a view, which a copying fallback must not rely on.
      for (const data of [shifted.subarray(pad), Buffer.from(shifted.buffer).subarray(pad)]) {
        const enc2 = { ...enc, data };
        assert.equal(validateEncodedMatrix(enc2), null);
        assert.deepEqual(decodeMatrix(enc2), want);
      }
    }
  }
});

test('msgpack transport: moreTypes Packr and the byte-only portable form', () => {
  const moreTypes = new Packr({ moreTypes: true });
  const plain = new Packr();
  for (const codec of LOGIT_CODECS) {
    const encNarrow = encodeMatrix(Z.subarray(0, 50), 5, 10, codec);
    const encWide = encodeMatrix(realisticLogits(3, 300, 5), 3, 300, codec);
    for (const enc of [encNarrow, encWide]) {
      const want = decodeMatrix(enc);
      const viaTypes = moreTypes.unpack(moreTypes.pack(enc));
      assert.equal(validateEncodedMatrix(viaTypes), null, `${codec} moreTypes`);
      assert.deepEqual(decodeMatrix(viaTypes as EncodedMatrix), want);
      const viaBytes = fromPortableMatrix(plain.unpack(plain.pack(toPortableMatrix(enc))));
      assert.equal(validateEncodedMatrix(viaBytes), null, `${codec} portable`);
      assert.deepEqual(decodeMatrix(viaBytes as EncodedMatrix), want);
      // fromPortableMatrix also accepts an already-typed object.
      assert.equal(validateEncodedMatrix(fromPortableMatrix(viaTypes)), null);
    }
  }
});
