/**
 * The `topk8` logit codec (shared/tensor/logit-codec.ts): bytes, the error bound on decoded probabilities, the ranking
 * guarantees on adversarial rows, the receiver's refusals, the wire (msgpack, protocol schema) and a real federation.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Packr, pack as defaultPack } from 'msgpackr';
import {
  TOPK8_COARSEST_DEFAULT_STEP,
  TOPK8_FINEST_DEFAULT_STEP,
  bytesPerRow,
  decodeMatrix,
  defaultTopK8Step,
  encodeMatrix,
  encodedByteLength,
  fromPortableMatrix,
  toPortableMatrix,
  validateEncodedMatrix,
  type EncodedMatrix,
} from '../shared/tensor/logit-codec.ts';
import { encodeFrame } from '../shared/protocol/frame-codec.ts';
import { PROTOCOL_VERSION, type RoundMsg } from '../shared/protocol/messages.ts';
import { ProtocolError, parseClientFrame, parseServerFrame } from '../shared/protocol/validate.ts';
import { Rng } from '../shared/data/rng.ts';
import { NO_RATE_LIMITS, RawPeer, makeClient, roundsDone, startBench } from './helpers.ts';

/** N(0,1)·scale logits, with a fraction `outliers` of entries at ±30 (gaps that saturate at step 1/16). */
function logits(rows: number, cols: number, seed: number, scale = 5, outliers = 0.02): Float32Array {
  const r = new Rng(seed);
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < out.length; i++) {
    const g = Math.sqrt(-2 * Math.log(Math.max(r.next(), 1e-12))) * Math.cos(2 * Math.PI * r.next());
    out[i] = r.next() < outliers ? (r.next() < 0.5 ? -30 : 30) + g : scale * g;
  }
  return out;
}

/** Columns of a row by descending value, ties to the lower column (the order a sender's top-k follows). */
function order(row: ArrayLike<number>): number[] {
  return Array.from({ length: row.length }, (_, j) => j).sort((a, b) => row[b] - row[a] || a - b);
}

/** The row `topk` would decode in exact arithmetic: kept values, and rest = log mean exp of the dropped ones. */
function reference(row: ArrayLike<number>, k: number): number[] {
  const o = order(row);
  const out = Array.from(row, Number);
  if (k >= row.length) return out;
  const dropped = o.slice(k).map((j) => row[j]);
  const m = Math.max(...dropped);
  const rest = m + Math.log(dropped.reduce((s, v) => s + Math.exp(v - m), 0) / dropped.length);
  for (const j of o.slice(k)) out[j] = rest;
  return out;
}

function logSoftmax(z: ArrayLike<number>, T: number): number[] {
  const m = Math.max(...Array.from(z));
  const lse = m / T + Math.log(Array.from(z).reduce((s, v) => s + Math.exp((v - m) / T), 0));
  return Array.from(z, (v) => v / T - lse);
}

const rowOf = (x: Float32Array, r: number, cols: number) => Array.from(x.subarray(r * cols, (r + 1) * cols));

test('topk8 bytes: 4-bit ids up to 16 columns, 1 byte up to 256, 2 beyond; k − 1 gap codes + the rest code', () => {
  const cases: [cols: number, k: number, idBytes: (n: number) => number, codes: number][] = [
    [1, 1, (n) => Math.ceil(n / 2), 0],
    [2, 1, (n) => Math.ceil(n / 2), 1],
    [2, 2, (n) => Math.ceil(n / 2), 1],
    [10, 3, (n) => Math.ceil(n / 2), 3],
    [10, 10, (n) => Math.ceil(n / 2), 9],
    [16, 3, (n) => Math.ceil(n / 2), 3],
    [17, 3, (n) => n, 3],
    [256, 5, (n) => n, 5],
    [257, 5, (n) => 2 * n, 5],
    [300, 30, (n) => 2 * n, 30],
  ];
  for (const [cols, k, idBytes, codes] of cases) {
    for (const rows of [0, 1, 7, 64]) {
      const enc = encodeMatrix(logits(rows, cols, cols + rows), rows, cols, 'topk8', { k });
      const want = idBytes(rows * k) + rows * codes;
      assert.equal(encodedByteLength(enc), want, `cols ${cols} k ${k} rows ${rows}`);
      assert.equal(enc.data.byteLength, rows * codes);
      if ((rows * k) % 2 === 0 || cols > 16) {
        assert.equal(bytesPerRow('topk8', cols, k) * rows, want, `bytesPerRow cols ${cols} k ${k}`);
      }
      assert.equal(validateEncodedMatrix(enc, { rows, cols }), null);
    }
  }
  // The demo's shape: 1500 rows × 10 classes, k = 3 → 4.5 B a row (topk: 13), 6750 payload bytes.
  assert.equal(bytesPerRow('topk8', 10), 4.5);
  assert.equal(bytesPerRow('topk', 10), 13);
  const demo = encodeMatrix(logits(1500, 10, 1), 1500, 10, 'topk8');
  assert.equal(encodedByteLength(demo), 6750);
  assert.ok(encodeFrame(demo).byteLength < 6750 + 96, `framed ${encodeFrame(demo).byteLength} B`);
});

test('topk8 step: finest power of two in [1/256, 1/16] covering the largest gap; an explicit step is used as given', () => {
  assert.equal(defaultTopK8Step(0), TOPK8_FINEST_DEFAULT_STEP);
  assert.equal(defaultTopK8Step(255 / 256), 1 / 256);
  assert.equal(defaultTopK8Step(255 / 256 + 1e-9), 1 / 128);
  assert.equal(defaultTopK8Step(3), 1 / 64);
  assert.equal(defaultTopK8Step(1e9), TOPK8_COARSEST_DEFAULT_STEP);
  // Small logits get a fine step; a trained model's (large gaps) the coarsest default.
  assert.equal(encodeMatrix(logits(100, 10, 2, 0.2, 0), 100, 10, 'topk8').step! < 1 / 16, true);
  assert.equal(encodeMatrix(logits(100, 10, 2), 100, 10, 'topk8').step, 1 / 16);
  assert.equal(encodeMatrix(logits(100, 10, 2), 100, 10, 'topk8', { step: 0.1 }).step, 0.1);
  for (const step of [0, -1, NaN, Infinity, 2 ** -21, 2 ** 17]) {
    assert.throws(() => encodeMatrix(logits(2, 10, 2), 2, 10, 'topk8', { step }), /step/, String(step));
  }
});

test('topk8 error: decoded probabilities within e^(±step/T) of the topk reference; saturation only adds far mass', () => {
  const cols = 10;
  const rows = 2000;
  const z = logits(rows, cols, 5);
  for (const [k, stepOpt] of [[3, undefined], [1, undefined], [5, 0.1], [10, 1 / 8]] as const) {
    const enc = encodeMatrix(z, rows, cols, 'topk8', { k, step: stepOpt });
    const step = enc.step!;
    const d = decodeMatrix(enc);
    let checked = 0;
    let saturated = 0;
    let worst = 0;
    for (let r = 0; r < rows; r++) {
      const row = rowOf(z, r, cols);
      const ref = reference(row, k);
      const top = Math.max(...row);
      const dec = rowOf(d, r, cols);
      // Saturated: some gap rounds past 255 codes.
      const sat = ref.some((v) => (top - v) / step > 255.5);
      for (const T of [1, 2, 4]) {
        const lp = logSoftmax(ref, T);
        const lq = logSoftmax(dec, T);
        if (!sat) {
          for (let j = 0; j < cols; j++) {
            const err = Math.abs(lq[j] - lp[j]);
            assert.ok(err <= step / T + 1e-5, `k ${k} row ${r} col ${j} T ${T}: |Δlog p| ${err} > step/T ${step / T}`);
            worst = Math.max(worst, (err * T) / step);
          }
          const tv = lp.reduce((s, v, j) => s + Math.abs(Math.exp(lq[j]) - Math.exp(v)), 0);
          assert.ok(tv <= Math.expm1(step / T) + 1e-5, `k ${k} row ${r} T ${T}: Σ|Δp| ${tv}`);
        } else {
          // Saturation decodes a gap beyond 255·step at 255·step: never lower than the truth relative to the top-1,
          // and never above it by more than the stated bound.
          for (let j = 0; j < cols; j++) {
            const decodedRatio = Math.exp(lq[j] - Math.max(...lq));
            const trueRatio = Math.exp(lp[j] - Math.max(...lp));
            if ((top - ref[j]) / step > 255.5) {
              assert.ok(decodedRatio >= trueRatio * (1 - 1e-6), `row ${r} col ${j}: saturation must not lower a class`);
              assert.ok(decodedRatio <= Math.exp((-255 * step) / T) * (1 + 1e-5), `row ${r} col ${j}: saturated at 255·step`);
            }
          }
        }
      }
      if (sat) saturated++;
      else {
        checked++;
        // The logit-level property behind the bound: every decoded gap within half a step of the true one.
        for (let j = 0; j < cols; j++) {
          assert.ok(Math.abs(dec[j] - (ref[j] - top)) <= step / 2 + 1e-5, `k ${k} row ${r} col ${j}: gap error`);
        }
      }
    }
    // The logits have both kinds of rows, and the bound is not vacuous: some errors reach a good part of it.
    const mix = `k ${k}: ${checked} in range, ${saturated} saturated`;
    assert.ok(checked > rows / 4 && (stepOpt !== undefined || saturated > 0), mix);
    assert.ok(worst > 0.4, `k ${k}: worst error only ${worst} of the bound`);
  }
});

/** Every ranking guarantee on one encoded matrix against its input. */
function assertRanking(z: Float32Array, rows: number, cols: number, k: number, what: string): void {
  const enc = encodeMatrix(z, rows, cols, 'topk8', { k });
  assert.equal(validateEncodedMatrix(enc, { rows, cols }), null, what);
  const d = decodeMatrix(enc);
  const kk = Math.min(k, cols);
  for (let r = 0; r < rows; r++) {
    const row = rowOf(z, r, cols);
    const dec = rowOf(d, r, cols);
    const o = order(row);
    const kept = o.slice(0, kk);
    assert.equal(dec[kept[0]], 0, `${what} row ${r}: top-1 decodes as 0`);
    assert.equal(dec.indexOf(Math.max(...dec)), kept[0], `${what} row ${r}: first argmax`);
    for (let t = 1; t < kk; t++) assert.ok(dec[kept[t]] < dec[kept[t - 1]], `${what} row ${r}: kept ${t} not below ${t - 1}`);
    for (const j of o.slice(kk)) assert.ok(dec[j] < dec[kept[kk - 1]], `${what} row ${r}: dropped col ${j} below the kept`);
    // Every value finite, ≤ 0, and 0 or a normal float32 (a backend flushing subnormals cannot merge two of them).
    for (const v of dec) {
      assert.ok(Number.isFinite(v) && v <= 0 && (v === 0 || Math.abs(v) >= 2 ** -126), `${what} row ${r}: ${v}`);
    }
  }
}

test('topk8 ranking: decoded order, first argmax and dropped < kept match the sender on adversarial rows', () => {
  // Exact ties (lower column wins), gaps below half a step, huge gaps, all-equal rows, float32 extremes.
  const rows10 = [
    [1, 7, 7, 7, 0, 0, 0, 0, 0, 0],
    [5, 5, 5, 5, 5, 5, 5, 5, 5, 5],
    [0, 0.001, 0.002, 0.003, 0, 0, 0, 0, 0, 0.0031],
    [3e38, -3e38, 0, 1, 2, 3e38, -1, -2, -3, -4],
    [1e6, 0, -1e6, 5, 5, 5, 5, 5, 5, 5],
    [-1e30, -1e30, -1e30, -1e30, -1e30, -1e30, -1e30, -1e30, -1e30, -2e30],
    [100, 40, 39.99, 39.98, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 1e-7],
  ];
  const z10 = Float32Array.from(rows10.flat());
  for (const k of [1, 2, 3, 4, 9, 10]) assertRanking(z10, rows10.length, 10, k, `cols 10 k ${k}`);
  // A row that quantises to all-zero gaps: strict order from 0 down, the rest below the last kept.
  const flat = decodeMatrix(encodeMatrix(new Float32Array(10).fill(5), 1, 10, 'topk8', { k: 3 }));
  assert.deepEqual(Array.from(flat.subarray(0, 3)).map((v) => v === 0 || v < 0), [true, true, true]);
  assert.ok(flat[0] === 0 && flat[1] === -(2 ** -126) && flat[2] < flat[1] && flat[3] < flat[2]);
  // cols = 1: nothing but the top-1, no gap bytes.
  const one = encodeMatrix(Float32Array.from([3, -1e9, 7]), 3, 1, 'topk8');
  assert.equal(one.data.byteLength, 0);
  assert.deepEqual(Array.from(decodeMatrix(one)), [0, 0, 0]);
  // Random rows with many ties and far outliers, over the index widths (4, 8 and 16 bits) and k up to cols.
  const rng = new Rng(11);
  for (const cols of [2, 10, 16, 17, 300]) {
    const rows = 40;
    const z = new Float32Array(rows * cols).map(() => {
      const u = rng.next();
      if (u < 0.5) return rng.int(3); // exact ties
      if (u < 0.8) return rng.int(3) + rng.next() * 1e-3; // gaps far below half a step
      return (rng.next() - 0.5) * (u < 0.9 ? 200 : 1e30); // gaps that saturate
    });
    for (const k of new Set([1, 2, 3, Math.min(cols, 20), cols])) assertRanking(z, rows, cols, k, `cols ${cols} k ${k}`);
  }
});

test('topk8 validation: every field a receiver relies on is checked; decode never reads out of bounds', () => {
  const good = encodeMatrix(logits(5, 10, 3), 5, 10, 'topk8', { k: 3 }); // 15 ids: 8 bytes, the last high nibble 0
  const wide = encodeMatrix(logits(3, 300, 3), 3, 300, 'topk8', { k: 4 });
  const mid = encodeMatrix(logits(3, 17, 3), 3, 17, 'topk8', { k: 3 });
  assert.equal(good.indices!.byteLength, 8);
  const withIdx = (e: EncodedMatrix, i: number, v: number) => {
    const idx = e.indices!.slice();
    idx[i] = v;
    return { ...e, indices: idx };
  };
  const withCode = (e: EncodedMatrix, i: number, v: number) => {
    const data = e.data.slice();
    data[i] = v;
    return { ...e, data };
  };
  // Row 0's ids in the first bytes: make its second id equal to its first (a duplicate) via the nibbles.
  const id0 = good.indices![0] & 15;
  const structural: [string, unknown][] = [
    ['short data', { ...good, data: good.data.subarray(0, 14) }],
    ['long data', { ...good, data: new Uint8Array(16) }],
    ['data as Uint16Array', { ...good, data: new Uint16Array(15) }],
    ['indices one byte short', { ...good, indices: good.indices!.subarray(0, 7) }],
    ['indices a byte per id for 10 cols', { ...good, indices: new Uint8Array(15) }],
    ['indices Uint16Array for 17 cols', { ...mid, indices: Uint16Array.from(mid.indices!) }],
    ['indices bytes for 300 cols', { ...wide, indices: new Uint8Array(12) }],
    ['indices as plain array', { ...good, indices: Array.from(good.indices!) }],
    ['k = 0', { ...good, k: 0 }],
    ['k > cols', { ...good, k: 11 }],
    ['k not matching data', { ...good, k: 2 }],
    ['k fractional', { ...good, k: 2.5 }],
    ['step missing', { ...good, step: undefined }],
    ['step 0', { ...good, step: 0 }],
    ['step negative', { ...good, step: -0.0625 }],
    ['step NaN', { ...good, step: NaN }],
    ['step Infinity', { ...good, step: Infinity }],
    ['step too small', { ...good, step: 2 ** -21 }],
    ['step too large', { ...good, step: 2 ** 17 }],
    ['step as string', { ...good, step: '0.0625' }],
    ['offsets present', { ...good, offsets: new Float32Array(5) }],
    ['scales present', { ...good, scales: new Float32Array(5) }],
  ];
  const content: [string, unknown][] = [
    ['nibble id ≥ cols', withIdx(good, 0, (good.indices![0] & 0xf0) | 12)],
    ['byte id ≥ cols', withIdx(mid, 1, 17)],
    ['uint16 id ≥ cols', withIdx(wide, 2, 300)],
    ['duplicate id in a row', withIdx(good, 0, (id0 << 4) | id0)],
    ['padding nibble set', withIdx(good, 7, good.indices![7] | 0x30)],
    ['codes decreasing in a row', withCode(withCode(good, 0, 9), 1, 8)],
    ['rest code below the last kept', withCode(withCode(good, 4, 200), 5, 100)],
  ];
  for (const [what, enc] of [...structural, ...content]) {
    assert.equal(typeof validateEncodedMatrix(enc), 'string', `${what} should be refused`);
  }
  for (const [what, enc] of structural) assert.throws(() => decodeMatrix(enc as EncodedMatrix), /decodeMatrix/, what);
  // Content faults the decoder can meet unvalidated: an id out of range throws, a decreasing code still decodes to
  // a strictly descending row (never out of bounds, never non-finite).
  assert.throws(() => decodeMatrix(content[0][1] as EncodedMatrix), /out of range/);
  const dec = decodeMatrix(content[5][1] as EncodedMatrix);
  const ids = [0, 1, 2].map((t) => (good.indices![t >> 1] >> ((t & 1) << 2)) & 15);
  assert.ok(dec[ids[0]] === 0 && dec[ids[1]] < 0 && dec[ids[2]] < dec[ids[1]]);
  for (const enc of [good, wide, mid]) assert.equal(validateEncodedMatrix(enc), null);
  // A topk8 step is refused on every other codec.
  assert.match(validateEncodedMatrix({ ...encodeMatrix(logits(2, 10, 1), 2, 10, 'fp16'), step: 0.0625 })!, /step is not allowed/);
});

test('topk8 on the wire: msgpack (moreTypes and byte-only), the protocol schema, and no probabilities', () => {
  const moreTypes = new Packr({ moreTypes: true });
  const plain = new Packr();
  for (const [rows, cols, k] of [[5, 10, 3], [4, 16, 3], [3, 17, 2], [3, 300, 5], [2, 1, 1]] as const) {
    const enc = encodeMatrix(logits(rows, cols, 9), rows, cols, 'topk8', { k });
    const want = decodeMatrix(enc);
    const viaTypes = moreTypes.unpack(moreTypes.pack(enc));
    assert.equal(validateEncodedMatrix(viaTypes), null);
    assert.deepEqual(decodeMatrix(viaTypes as EncodedMatrix), want);
    const viaBytes = fromPortableMatrix(plain.unpack(plain.pack(toPortableMatrix(enc))));
    assert.equal(validateEncodedMatrix(viaBytes), null, `portable ${rows}×${cols}`);
    assert.deepEqual(decodeMatrix(viaBytes as EncodedMatrix), want);
    // The server's parser, from the SDK's frames and from a plain msgpack peer sending every array as bytes.
    const msg = { type: 'logits', round: 1, proxyHash: 'ab'.repeat(32), logits: enc, stats: { trainLoss: 1 } };
    for (const frame of [encodeFrame(msg), defaultPack({ ...msg, logits: toPortableMatrix(enc) })]) {
      const parsed = parseClientFrame('logits', frame);
      assert.ok(parsed.type === 'logits');
      assert.deepEqual(decodeMatrix(parsed.logits), want);
    }
  }
  const enc = encodeMatrix(logits(5, 10, 9), 5, 10, 'topk8');
  const msg = { type: 'logits', round: 1, proxyHash: 'ab'.repeat(32), logits: enc, stats: {} };
  const refused = (frame: Uint8Array, code: string, text: RegExp) =>
    assert.throws(
      () => parseClientFrame('logits', frame),
      (e: unknown) => e instanceof ProtocolError && e.code === code && text.test(e.message),
    );
  refused(encodeFrame({ ...msg, logits: { ...enc, step: 0 } }), 'bad-shape', /step/);
  refused(encodeFrame({ ...msg, logits: { ...enc, step: 'x' } }), 'bad-shape', /step/);
  refused(encodeFrame({ ...msg, logits: { ...enc, data: enc.data.subarray(1) } }), 'bad-shape', /topk8 data/);
  // Probabilities (a DP round's noisy upload, soft labels sent down) cannot travel without their level.
  refused(encodeFrame({ ...msg, values: 'probs' }), 'bad-message', /topk8 carries logits.*fp32, fp16, int8, topk/);
  const round = {
    type: 'round', round: 2, strategy: 'mutual', task: 'logits', indices: Uint32Array.from([0, 1, 2, 3, 4]),
    localEpochs: 1, batchSize: 32, learningRate: 0.001, deadline: Date.now() + 1000,
  };
  const mutual = { probs: enc, temperature: 2, beta: 0.5 };
  assert.throws(() => parseServerFrame('round', encodeFrame({ ...round, mutual })), /mutual\.probs: codec topk8/);
});

test('a federation with topk8 uploads: the server accepts them, refuses bad ones, and the bytes drop', async (t) => {
  const b = await startBench(3, { rounds: 2, minClients: 3, proxySubset: 200, ...NO_RATE_LIMITS });
  t.after(() => b.agg.close());
  const bytes: Record<string, number[]> = { c0: [], c1: [] };
  const clients = [makeClient(b, 0, { codec: 'topk8' }), makeClient(b, 1, { codec: 'topk', topK: 1 })];
  clients.forEach((c, i) => c.on('round-done', (r) => bytes[`c${i}`].push(r.uploadBytes)));
  t.after(() => clients.forEach((c) => c.stop()));
  // A hand-driven third client: its bad topk8 uploads are refused with the reason, its good one is taken.
  const peer = new RawPeer(b.url);
  t.after(() => peer.close());
  await peer.connected();
  peer.send('hello', { type: 'hello', protocol: PROTOCOL_VERSION, clientId: 'peer', model: 'mlp', numSamples: 100, codec: 'topk8' });
  const welcome = await peer.next((m) => m.type === 'welcome');
  const hash = welcome.type === 'welcome' ? welcome.proxy.hash : '';
  await Promise.all(clients.map((c) => c.start()));
  const stats = { trainLoss: 1, trainAccuracy: 0.5, trainSeconds: 0.1 };
  for (const round of [1, 2]) {
    const task = (await peer.next((m) => m.type === 'round' && m.round === round, 60_000)) as RoundMsg;
    const rows = task.indices!.length;
    const z = new Float32Array(rows * 10).map((_, i) => (i % 10 === (round + i) % 7 ? 6 : Math.sin(i)));
    const enc = encodeMatrix(z, rows, 10, 'topk8');
    const up = (logits: unknown, extra = {}) =>
      peer.send('logits', { type: 'logits', round, proxyHash: hash, logits, stats, ...extra });
    up({ ...enc, data: enc.data.slice().reverse() });
    assert.match((await peer.error()).message, /gap codes must not decrease/);
    up({ ...enc, step: -1 });
    assert.equal((await peer.error()).code, 'bad-shape');
    up(enc, { values: 'probs' });
    assert.equal((await peer.error()).code, 'bad-message');
    up(encodeMatrix(z.subarray(0, 50), 5, 10, 'topk8'));
    assert.equal((await peer.error()).code, 'bad-shape');
    up(enc);
    await peer.next((m) => m.type === 'ack' && m.round === round);
  }
  await roundsDone(b, 2);
  const rounds = b.agg.coordinator.history.map((r) => [r.round, r.status, r.participants]);
  assert.deepEqual(rounds, [[1, 'completed', 3], [2, 'completed', 3]]);
  // 200 rows a round: topk8 (k = 3) ≈ 200·4.5 B + the envelope, topk with topK 1 ≈ 200·7 B + the envelope.
  assert.equal(bytes.c0.length, 2);
  for (const n of bytes.c0) assert.ok(n >= 900 && n < 900 + 400, `topk8 upload ${n} B`);
  for (const n of bytes.c1) assert.ok(n >= 1400 && n < 1400 + 400, `topk k=1 upload ${n} B`);
  assert.throws(() => makeClient(b, 2, { codec: 'topk8', topK: 0 }), /topK must be an integer ≥ 1/);
});
