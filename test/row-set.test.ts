import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../shared/data/rng.ts';
import { decodeFrame, encodeFrame } from '../shared/protocol/frame-codec.ts';
import { PROTOCOL_VERSION, type RoundMsg } from '../shared/protocol/messages.ts';
import {
  ROW_ENCODINGS,
  decodeRows,
  encodeRows,
  encodedRowsLength,
  rowOrderError,
  rowSetError,
  type EncodedRows,
  type RowEncodingName,
} from '../shared/protocol/row-set.ts';
import { ProtocolError, parseServerFrame, roundRowsError } from '../shared/protocol/validate.ts';
import { encodeMatrix } from '../shared/tensor/logit-codec.ts';
import { compactRows, roundForClient } from '../server/coordination/round-rows.ts';
import { encodeModel } from '../shared/models/wire.ts';
import { decodeWeights } from '../shared/models/weight-codec.ts';
import { RawPeer, makeClient, roundsDone, startBench, NO_RATE_LIMITS } from './helpers.ts';

/** A sorted random subset of [0, n): each row kept with probability `density`. */
function randomRows(n: number, density: number, rng: Rng): Uint32Array {
  const out: number[] = [];
  for (let i = 0; i < n; i++) if (rng.next() < density) out.push(i);
  return Uint32Array.from(out);
}

/** Encode in `encoding`, check the payload length is what encodedRowsLength says, decode, compare. */
function roundTrip(rows: Uint32Array, n: number, encoding: RowEncodingName): EncodedRows {
  const e = encodeRows(rows, n, [encoding]);
  assert.equal(e.encoding, encoding);
  assert.equal(e.proxyCount, n);
  assert.equal(e.data.byteLength, encodedRowsLength(rows, n, encoding));
  assert.equal(rowSetError(e, { proxyCount: n }), null);
  assert.deepEqual(decodeRows(e, { proxyCount: n }), rows, `${encoding}: ${rows.length} rows of ${n}`);
  // Through a msgpack frame and back (bin bytes, maybe a view at an odd offset).
  const back = parseServerFrame('round', encodeFrame(round({ rows: e }))) as RoundMsg;
  assert.deepEqual(back.indices, rows);
  return e;
}

function round(o: Partial<RoundMsg> = {}): RoundMsg {
  return { type: 'round', round: 1, strategy: 'ensemble', task: 'logits', localEpochs: 1, batchSize: 32, learningRate: 1e-3, deadline: Date.now() + 60_000, ...o };
}

test('row sets round-trip in both forms: empty, full, single, first and last rows, random densities', () => {
  const rng = new Rng(9);
  for (const n of [0, 1, 7, 8, 9, 15, 16, 17, 400, 1001, 10_000]) {
    const cases: Uint32Array[] = [new Uint32Array(0), Uint32Array.from({ length: n }, (_, i) => i)];
    if (n > 0) cases.push(Uint32Array.of(0), Uint32Array.of(n - 1), Uint32Array.of(0, n - 1).subarray(0, n > 1 ? 2 : 1));
    for (const density of [0.01, 0.05, 0.125, 0.3, 0.45, 0.9]) cases.push(randomRows(n, density, rng));
    for (const rows of cases) {
      const sizes = ROW_ENCODINGS.map((enc) => roundTrip(rows, n, enc).data.byteLength);
      // Left to choose, the encoder takes the smaller form.
      const auto = encodeRows(rows, n);
      assert.equal(auto.data.byteLength, Math.min(...sizes));
      assert.deepEqual(decodeRows(auto), rows);
    }
  }
  // Bitmap: exactly ⌈N/8⌉ bytes whatever the rows; gaps: one byte a row while gaps stay below 128.
  assert.equal(encodeRows(Uint32Array.of(3), 10_001, ['bitmap']).data.byteLength, 1251);
  assert.equal(encodeRows(Uint32Array.from({ length: 100 }, (_, i) => 100 * i), 10_000, ['gaps']).data.byteLength, 100);
  // Bit order: row i is bit i mod 8 (least significant first) of byte ⌊i/8⌋.
  assert.deepEqual([...encodeRows(Uint32Array.of(0, 9, 15), 16, ['bitmap']).data], [0b0000_0001, 0b1000_0010]);
  // Gaps: the first row, then row − previous − 1, as LEB128.
  assert.deepEqual([...encodeRows(Uint32Array.of(5, 6, 300), 1000, ['gaps']).data], [5, 0, 0xa5, 0x02]);
});

test('gaps reach the full uint32 range; the encoder never picks a huge bitmap for a few rows', () => {
  const top = 2 ** 32 - 1;
  const rows = Uint32Array.of(0, 1, 2 ** 31, top);
  const e = encodeRows(rows, 2 ** 32);
  assert.equal(e.encoding, 'gaps');
  assert.ok(e.data.byteLength <= 4 * 5);
  assert.deepEqual(decodeRows(e), rows);
  assert.deepEqual([...encodeRows(Uint32Array.of(top), 2 ** 32).data], [0xff, 0xff, 0xff, 0xff, 0x0f]);
});

test('the encoder refuses what is not a sorted set of the proxy rows (a list in another order is an upload order)', () => {
  const cases: [number[], number, RegExp][] = [
    [[3, 2], 10, /strictly ascending: row 2 at position 1 follows 3/],
    [[2, 2], 10, /strictly ascending/],
    [[10], 10, /row 10 at position 0 is not a row of a 10-row proxy set/],
    [[-1], 10, /not a row/],
    [[1.5], 10, /not a row/],
    [[0], 2 ** 32 + 1, /proxy set size .* not an integer in \[0, 2\^32\]/],
  ];
  for (const [rows, n, why] of cases) {
    assert.match(rowOrderError(rows, n)!, why);
    assert.throws(() => encodeRows(rows, n), (e: Error) => /cannot encode as a row set/.test(e.message) && why.test(e.message));
  }
  assert.throws(() => encodeRows([1], 10, []), /no known row encoding/);
});

test('a receiver refuses every malformed row set with the reason, before allocating anything', () => {
  const bitmap = (data: number[], proxyCount: number): EncodedRows => ({ encoding: 'bitmap', proxyCount, data: Uint8Array.from(data) });
  const gaps = (data: number[], proxyCount = 2 ** 32): EncodedRows => ({ encoding: 'gaps', proxyCount, data: Uint8Array.from(data) });
  const cases: [unknown, RegExp, object?][] = [
    [{ encoding: 'runs', proxyCount: 8, data: new Uint8Array(1) }, /encoding must be one of bitmap, gaps/],
    [{ encoding: 'toString', proxyCount: 8, data: new Uint8Array(1) }, /encoding must be one of/],
    [null, /encoding must be one of/],
    [{ encoding: 'bitmap', proxyCount: -1, data: new Uint8Array(0) }, /proxyCount must be an integer in \[0, 2\^32\], got -1/],
    [{ encoding: 'bitmap', proxyCount: 2 ** 32 + 8, data: new Uint8Array(0) }, /proxyCount must be an integer/],
    [{ encoding: 'bitmap', proxyCount: '8', data: new Uint8Array(1) }, /proxyCount must be an integer .* got string/],
    [{ encoding: 'gaps', proxyCount: 8, data: [1, 2] }, /data must be bytes/],
    // Bitmap: its length is ⌈N/8⌉ exactly, and the bits past N are zero.
    [bitmap([0, 0], 17), /a bitmap over 17 rows must be ⌈17\/8⌉ = 3 bytes, got 2/],
    [bitmap([0, 0, 0, 0], 17), /must be ⌈17\/8⌉ = 3 bytes, got 4/],
    [bitmap([0, 0, 0b10], 17), /bitmap sets bits past the proxy set's 17 rows \(its last byte is 0x02\)/],
    [bitmap([0b1000_0000], 7), /bits past the proxy set's 7 rows/],
    // Gaps: complete, at most 5 bytes, minimal, below 2^32, rows inside the proxy set.
    [gaps([0x80]), /varint at byte 0 is truncated/],
    [gaps([1, 0x81]), /varint at byte 1 is truncated/],
    [gaps([0x80, 0x80, 0x80, 0x80, 0x80, 0x01]), /varint at byte 0 is longer than 5 bytes/],
    [gaps([0x81, 0x00]), /varint at byte 0 is not minimal/],
    [gaps([0xff, 0xff, 0xff, 0xff, 0x10]), /varint at byte 0 is 4294967295|not below 2\^32/],
    [gaps([9], 9), /row 0 \(varint at byte 0\) is 9, past the proxy set's 9 rows/],
    [gaps([3, 4, 0], 9), /row 2 \(varint at byte 2\) is 9, past/],
    [gaps([0xff, 0xff, 0xff, 0xff, 0x0f, 0]), /row 1 \(varint at byte 5\) is 4294967296, past/],
    // What the receiver expects: its own proxy set, and a row cap.
    [bitmap([1], 8), /rows index a proxy set of 8 rows; this one has 16/, { proxyCount: 16 }],
    [bitmap([0xff, 0xff], 16), /more than 15 rows/, { maxRows: 15 }],
    [gaps([0, 0, 0], 100), /more than 2 rows/, { maxRows: 2 }],
  ];
  for (const [e, why, expect] of cases) {
    const err = rowSetError(e as EncodedRows, expect);
    assert.ok(err, `accepted ${JSON.stringify(e)}`);
    assert.match(err!, why);
    assert.throws(() => decodeRows(e as EncodedRows, expect), (x: Error) => why.test(x.message));
  }
  // 2^32 − 1 itself is a fine gap (the last row of a 2^32-row set).
  assert.equal(rowSetError(gaps([0xff, 0xff, 0xff, 0xff, 0x0f])), null);
  // A hostile frame's claims cost nothing: a 2^32-row proxy set with a 1-byte payload is refused by length at once.
  assert.match(rowSetError(bitmap([0xff], 2 ** 32))!, /must be ⌈4294967296\/8⌉ = 536870912 bytes, got 1/);
});

test('parseServerFrame decodes `rows` into `indices` and refuses a round that carries both, neither, or a bad set', () => {
  const rows = Uint32Array.of(1, 4, 9, 399);
  const set = encodeRows(rows, 400);
  assert.equal(set.encoding, 'gaps'); // 4 rows: 4 bytes of gaps, against a 50-byte bitmap
  const parsed = parseServerFrame('round', encodeFrame(round({ rows: set }))) as RoundMsg;
  assert.deepEqual(parsed.indices, rows);
  assert.equal(parsed.rows?.proxyCount, 400);
  const refusals: [Partial<RoundMsg> | Record<string, unknown>, RegExp][] = [
    [{ rows: set, indices: rows }, /'indices' and 'rows' are exclusive/],
    [{}, /'indices' \(or 'rows'\) is required for task 'logits'/],
    [{ rows: { ...encodeRows(rows, 400, ['bitmap']), data: new Uint8Array(3) } }, /field 'rows': a bitmap over 400 rows must be ⌈400\/8⌉ = 50 bytes, got 3/],
    [{ rows: { ...set, encoding: 'runs' } }, /field 'rows.encoding' must be one of bitmap, gaps/],
    [{ rows: { ...set, proxyCount: 2 ** 33 } }, /field 'rows.proxyCount' must be an integer in \[0, 4294967296\]/],
    // mutual.probs must have one row per decoded row.
    [{ rows: set, mutual: { probs: encodeMatrix(new Float32Array(30).fill(0.1), 3, 10, 'fp16'), temperature: 1, beta: 1 } }, /mutual\.probs: expected 4 rows, got 3/],
  ];
  for (const [o, why] of refusals) {
    assert.throws(() => parseServerFrame('round', encodeFrame(round(o as Partial<RoundMsg>))), (e: Error) => e instanceof ProtocolError && why.test(e.message), String(why));
  }
  // The consensus rows the same way.
  const probs = encodeMatrix(new Float32Array(40).fill(0.1), 4, 10, 'fp16');
  const consensus = { rows: set, probs, temperature: 2, epochs: 1 };
  const withConsensus = parseServerFrame('round', encodeFrame(round({ indices: rows, consensus }))) as RoundMsg;
  assert.deepEqual(withConsensus.consensus?.indices, rows);
  assert.throws(() => parseServerFrame('round', encodeFrame(round({ indices: rows, consensus: { ...consensus, indices: rows } }))), /'consensus\.indices' and 'consensus\.rows' are exclusive/);
  assert.throws(() => parseServerFrame('round', encodeFrame(round({ indices: rows, consensus: { probs, temperature: 2, epochs: 1 } as never }))), /'consensus\.indices' \(or 'consensus\.rows'\) is required/);
  assert.throws(
    () => parseServerFrame('round', encodeFrame(round({ indices: rows, consensus: { ...consensus, probs: encodeMatrix(new Float32Array(10), 1, 10, 'fp16') } }))),
    /consensus\.probs: expected 4 rows, got 1/,
  );
  // Once the client holds its proxy set: a set made over another size, or a row past its end, is refused.
  assert.equal(roundRowsError(parsed, 400), null);
  assert.match(roundRowsError(parsed, 500)!, /'rows' index a proxy set of 400 rows; this client's has 500/);
  assert.match(roundRowsError(round({ indices: Uint32Array.of(2, 450) }), 400)!, /'indices\[1\]' is row 450, past this client's proxy set of 400 rows/);
  assert.match(roundRowsError({ ...withConsensus, indices: Uint32Array.of(1, 2) }, 300)!, /'consensus\.rows' index a proxy set of 400 rows; this client's has 300/);
});

test('the server sends `rows` only to a client that lists a form, only when smaller, and never reorders a list', () => {
  const rng = new Rng(4);
  const rows = randomRows(10_000, 0.45, rng);
  const msg = round({ indices: rows });
  // No opt-in (a hello without rowEncodings, or an unknown client): the message itself.
  assert.equal(roundForClient(msg, undefined, 10_000), msg);
  assert.equal(roundForClient(msg, { rowEncodings: [] }, 10_000), msg);
  const both = roundForClient(msg, { rowEncodings: ['bitmap', 'gaps'] }, 10_000);
  assert.equal(both.indices, undefined);
  assert.equal(both.rows?.encoding, 'bitmap');
  assert.equal(both.rows?.data.byteLength, 1250);
  assert.ok(!('indices' in both), 'no indices key at all');
  assert.equal(msg.indices, rows, 'the task is left as it was');
  // Only what the client decodes: gaps when it lists only gaps (~1 byte a row here).
  const gapsOnly = roundForClient(msg, { rowEncodings: ['gaps'] }, 10_000);
  assert.equal(gapsOnly.rows?.encoding, 'gaps');
  assert.deepEqual(decodeRows(gapsOnly.rows!), rows);
  // One encoding per array and form, whoever it goes to.
  assert.equal(compactRows(rows, 10_000, ['bitmap', 'gaps']), both.rows);
  // A few rows of a large set: the uint32 list is smaller, so it stays.
  assert.equal(roundForClient(round({ indices: Uint32Array.of(5, 9000) }), { rowEncodings: ['bitmap'] }, 10_000).rows, undefined);
  // A list that is not a sorted set keeps its order (it is the upload's row order).
  const shuffled = Uint32Array.from(rows).reverse();
  assert.equal(roundForClient(round({ indices: shuffled }), { rowEncodings: ['bitmap', 'gaps'] }, 10_000).indices, shuffled);
  // The consensus of a digesting client goes compact too, its probs untouched.
  const probs = encodeMatrix(new Float32Array(rows.length * 10).fill(0.1), rows.length, 10, 'fp16');
  const withConsensus = roundForClient(round({ indices: rows, consensus: { indices: rows, probs, temperature: 2, epochs: 1 } }), { rowEncodings: ['bitmap', 'gaps'] }, 10_000);
  assert.equal(withConsensus.consensus?.indices, undefined);
  assert.equal(withConsensus.consensus?.rows, both.rows);
  assert.equal(withConsensus.consensus?.probs, probs);
  const parsed = parseServerFrame('round', encodeFrame(withConsensus)) as RoundMsg;
  assert.deepEqual(parsed.indices, rows);
  assert.deepEqual(parsed.consensus?.indices, rows);
});

test('round frame bytes with 1,500 and 4,500 rows of a 10,000-row proxy set: uint32 list vs row set', () => {
  const rng = new Rng(11);
  for (const n of [1500, 4500]) {
    const rows = Uint32Array.from(rng.permutation(10_000).slice(0, n)).sort();
    const msg = round({ indices: rows, studentVersion: 3 });
    const before = encodeFrame(msg).byteLength;
    const after = encodeFrame(roundForClient(msg, { rowEncodings: [...ROW_ENCODINGS] }, 10_000)).byteLength;
    // 4 bytes a row as a list; ⌈10,000/8⌉ = 1,250 bytes as a bitmap, plus a few bytes of map.
    assert.ok(before >= 4 * n && before < 4 * n + 200, `before: ${before} B`);
    assert.ok(after >= 1250 && after < 1250 + 250, `after: ${after} B`);
  }
});

test('end to end: an SDK client gets `rows` and uploads exactly those rows; a peer that did not opt in gets `indices`', async (t) => {
  // mutual: no weights travel, so the two clients' round frames differ only in how the rows go.
  const b = await startBench(2, { strategy: 'mutual', rounds: 2, minClients: 2, proxySubset: 200, ...NO_RATE_LIMITS });
  t.after(() => b.agg.close());
  const peer = new RawPeer(b.url);
  t.after(() => peer.close());
  await peer.connected();
  peer.send('hello', { type: 'hello', protocol: PROTOCOL_VERSION, clientId: 'peer', model: 'mlp', numSamples: 100, codec: 'fp32' });
  const welcome = await peer.next((m) => m.type === 'welcome');
  const hash = welcome.type === 'welcome' ? welcome.proxy.hash : '';

  const seen: { round: number; indices: Uint32Array; logitRows: number }[] = [];
  const sdk = makeClient(b, 0, {
    outbound: { upload: (draft, { round: r }) => (seen.push({ round: r.round, indices: r.indices!, logitRows: draft.task === 'logits' ? draft.logits.length / 10 : -1 }), draft) },
  });
  t.after(() => sdk.stop());
  const sdkFrames: { event: string; bytes: number; msg: Record<string, unknown> }[] = [];
  const started = sdk.start();
  sdk.connection!.onAny((event: string, frame: Uint8Array) => {
    if (event === 'round') sdkFrames.push({ event, bytes: frame.byteLength, msg: (parseServerFrame('round', frame) as unknown) as Record<string, unknown> });
  });
  const acked: number[] = [];
  sdk.on('ack', (a) => acked.push(a.round));
  await started;

  const stats = { trainLoss: 1, trainAccuracy: 0.5, trainSeconds: 0.1 };
  const peerIndices: Uint32Array[] = [];
  for (const r of [1, 2]) {
    const task = (await peer.next((m) => m.type === 'round' && m.round === r, 60_000)) as RoundMsg;
    assert.ok(task.indices instanceof Uint32Array && !('rows' in task), 'no opt-in: a uint32 list');
    assert.equal(task.indices.length, 200);
    peerIndices.push(task.indices);
    peer.send('logits', { type: 'logits', round: r, proxyHash: hash, logits: encodeMatrix(new Float32Array(200 * 10), 200, 10, 'fp32'), stats });
    await peer.next((m) => m.type === 'ack' && m.round === r);
  }
  await roundsDone(b, 2);
  assert.deepEqual(b.agg.coordinator.history.map((h) => [h.round, h.status, h.participants]), [[1, 'completed', 2], [2, 'completed', 2]]);
  assert.deepEqual(acked, [1, 2], 'both SDK uploads accepted');

  for (const [i, r] of [1, 2].entries()) {
    const mine = sdkFrames.find((f) => f.msg.round === r)!;
    const theirs = peer.frames.filter((f) => f.event === 'round')[i];
    const rows = mine.msg.rows as EncodedRows;
    assert.equal(rows.encoding, 'bitmap');
    assert.equal(rows.proxyCount, 400);
    assert.equal(rows.data.byteLength, 50);
    // The same task: the decoded set is exactly the peer's list.
    assert.deepEqual(mine.msg.indices, peerIndices[i]);
    // 200 rows: 800 bytes as a list, 50 as a bitmap (round 2 also carries mutual's 200×10 fp16 probabilities).
    assert.ok(mine.bytes <= theirs.bytes.byteLength - 700, `round ${r}: SDK frame ${mine.bytes} B vs ${theirs.bytes.byteLength} B with indices`);
    // What the SDK computed its logits on, and how many rows it uploaded.
    const s = seen.find((x) => x.round === r)!;
    assert.deepEqual(s.indices, peerIndices[i]);
    assert.equal(s.logitRows, 200);
  }
  // The server's own accounting saw the smaller frame.
  const down = b.agg.coordinator.history.map((h) => h.downlinkBytes);
  assert.ok(down.every((d) => d > 0));
});

test('end to end: a client of another architecture digests the consensus sent as `consensus.rows`', async (t) => {
  const b = await startBench(2, { rounds: 2, proxySubset: 100, ...NO_RATE_LIMITS });
  t.after(() => b.agg.close());
  const clients = [makeClient(b, 0), makeClient(b, 1, { model: 'cnn' })];
  t.after(() => clients.forEach((c) => c.stop()));
  const frames: Record<string, unknown>[] = [];
  const started = clients.map((c) => c.start());
  clients[1].connection!.onAny((event: string, f: Uint8Array) => {
    if (event === 'round') frames.push(decodeFrame(f) as Record<string, unknown>); // as sent: `rows` not decoded
  });
  const digested: boolean[] = [];
  clients[1].on('round-done', (r) => digested.push(r.digestedConsensus));
  await Promise.all(started);
  await roundsDone(b, 2);
  const r2 = frames.find((f) => f.round === 2) as { rows?: EncodedRows; indices?: unknown; consensus?: { rows?: EncodedRows; indices?: unknown; probs: { rows: number } } };
  assert.ok(r2?.consensus, 'round 2 carries the consensus');
  assert.equal(r2.consensus.indices, undefined);
  assert.equal(r2.consensus.rows?.encoding, 'bitmap');
  assert.equal(decodeRows(r2.consensus.rows!).length, r2.consensus.probs.rows);
  assert.equal(r2.indices, undefined);
  assert.equal(r2.rows?.proxyCount, 400);
  assert.deepEqual(digested, [false, true], 'the CNN client learned the consensus in round 2');
});


test('a round configured with an int8 student goes in fp32 to a client whose hello no longer lists int8', () => {
  const kernel = { name: 'dense/kernel', shape: [4, 3], data: Float32Array.from({ length: 12 }, (_, i) => (i - 6) / 7) };
  const bias = { name: 'dense/bias', shape: [3], data: Float32Array.of(0.5, -0.25, 0) };
  const model = encodeModel({ kind: 'mlp', version: 3, weights: [kernel, bias] }, 'int8');
  const msg = round({ indices: Uint32Array.of(1, 2, 3), model });
  // Still listing int8: the task as configured.
  assert.equal(roundForClient(msg, { weightEncodings: ['fp16', 'int8'] }, 10).model, model);
  // Reconnected without it (or unknown): the same student, decoded, one copy shared by every such send.
  const plain = roundForClient(msg, { weightEncodings: ['fp16'] }, 10).model!;
  assert.deepEqual(plain.weights.map((w) => [w.encoding, w.data]), decodeWeights(model.weights).map((w) => [undefined, w.data]));
  assert.equal(roundForClient(msg, undefined, 10).model, plain);
  assert.equal(plain.version, 3);
  // An fp32 task is never copied.
  const fp32 = round({ indices: Uint32Array.of(1), model: { kind: 'mlp', version: 1, weights: [kernel] } });
  assert.equal(roundForClient(fp32, undefined, 10), fp32);
});
