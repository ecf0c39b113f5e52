/**
 * The message schemas: every message round-trips through encode → parse unchanged; typed-array payloads are read by
 * their own offset and length in every form a msgpack library produces (msgpack bin, msgpackr's typed-array
 * extension, views at odd offsets), against a real server; the SDK reports and ignores malformed server frames.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Packr, pack as defaultPack } from 'msgpackr';
import { Server } from 'socket.io';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { encodeFrame } from '../shared/protocol/frame-codec.ts';
import { PROTOCOL_VERSION, type ClientMsg, type ErrorMsg, type RoundMsg, type ServerMsg } from '../shared/protocol/messages.ts';
import { ProtocolError, parseClientFrame, parseServerFrame } from '../shared/protocol/validate.ts';
import { CLIENT_SCHEMAS, SERVER_SCHEMAS } from '../shared/protocol/schemas.ts';
import { decodeMatrix, encodeMatrix } from '../shared/tensor/logit-codec.ts';
import { FedistillClient } from '../client/client.ts';
import { RawPeer, roundsDone, startBench, subsetData } from './helpers.ts';
import { readFile } from 'node:fs/promises';
// @ts-expect-error: a plain .mjs script without type declarations
import { DOC, TABLES, renderDoc } from '../scripts/protocol-tables.mjs';

const stats = { trainLoss: 1.25, trainAccuracy: 0.5, trainSeconds: 0.1 };
const moreTypes = new Packr({ useRecords: false, moreTypes: true, mapsAsObjects: true, structuredClone: false });
const tensor = (name: string, shape: number[]) => ({ name, shape, data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => i / 7 - 1) });
const model = { kind: 'mlp' as const, version: 3, weights: [tensor('dense/kernel', [4, 2]), tensor('dense/bias', [2])] };
const logits = (rows: number, cols: number) => Float32Array.from({ length: rows * cols }, (_, i) => Math.sin(i) * 3);

const clientSamples: ClientMsg[] = [
  { type: 'hello', protocol: PROTOCOL_VERSION, clientId: 'c-1', model: 'cnn', numSamples: 10, classCounts: [5, 5], codec: 'int8', resumeToken: 'tok', backend: 'wasm' },
  { type: 'hello', protocol: PROTOCOL_VERSION, clientId: 'c-2', model: 'mlp', numSamples: 0, codec: 'fp32' },
  ...(['fp32', 'fp16', 'int8', 'topk'] as const).map((codec) => ({ type: 'logits' as const, round: 2, proxyHash: 'ab'.repeat(32), logits: encodeMatrix(logits(5, 10), 5, 10, codec), stats })),
  { type: 'logits', round: 1, proxyHash: 'x', logits: encodeMatrix(logits(2, 300), 2, 300, 'topk', { k: 20 }), stats: { ...stats, evalAccuracy: 0.75 } },
  { type: 'weights', round: 4, numSamples: 12, weights: model.weights, stats },
  { type: 'logits', round: 2, proxyHash: 'x', logits: encodeMatrix(logits(2, 10), 2, 10, 'fp16'), stats, values: 'probs' },
  { type: 'decline', round: 5, reason: 'privacy-budget' },
  { type: 'sa-keys', round: 5, session: 's:5', cPk: new Uint8Array(32).fill(1), sPk: new Uint8Array(32).fill(2) },
  { type: 'sa-shares', round: 5, session: 's:5', shares: [{ to: 'c-2', ciphertext: new Uint8Array(140).fill(3) }] },
  { type: 'sa-masked', round: 5, session: 's:5', proxyHash: 'x', masked: Uint32Array.from([1, 2 ** 32 - 1, 7]), stats },
  { type: 'sa-reveal', round: 5, session: 's:5', reveals: [{ of: 'c-2', kind: 'b', share: new Uint8Array(33).fill(4) }, { of: 'c-3', kind: 's', share: new Uint8Array(33) }] },
];
const weightsSample = clientSamples.find((m) => m.type === 'weights')!;
const serverSamples: ServerMsg[] = [
  {
    type: 'welcome', protocol: 1, clientId: 'c-1', resumeToken: 'tok', serverVersion: '0.1.0', strategy: 'ensemble',
    proxy: { id: 'proxy', hash: 'ab'.repeat(32), count: 400, shape: [28, 28, 1], numClasses: 10, path: '/proxy/proxy' },
    student: { kind: 'mlp', numClasses: 10, inputShape: [28, 28, 1] },
  },
  {
    type: 'round', round: 3, strategy: 'fedmd', task: 'logits', indices: Uint32Array.from([4, 9, 1]), localEpochs: 1, batchSize: 32,
    learningRate: 0.001, logitAdjust: true, ntdBeta: 0.5, deadline: 1_700_000_000_000, model, studentVersion: 2,
    consensus: { indices: Uint32Array.from([1, 2]), probs: encodeMatrix(logits(2, 10), 2, 10, 'fp16'), temperature: 2, epochs: 1 },
    mutual: { probs: encodeMatrix(logits(3, 10), 3, 10, 'int8'), temperature: 3, beta: 0.1 },
  },
  { type: 'round', round: 1, strategy: 'fedavg', task: 'weights', localEpochs: 2, batchSize: 16, learningRate: 0.01, deadline: 1e12 },
  { type: 'ack', round: 3, accepted: true, bytes: 1234 },
  { type: 'error', code: 'late', message: 'too late', round: 3 },
  { type: 'error', code: 'internal', message: 'internal server error' },
  { type: 'round-result', round: 3, participants: 4, studentAccuracy: 0.81 },
  { type: 'end', reason: 'completed', round: 10, model, studentAccuracy: 0.8, studentPath: '/student/model.json' },
  { type: 'end', reason: 'shutdown', round: 0 },
  {
    type: 'round', round: 5, strategy: 'ensemble', task: 'logits', indices: Uint32Array.from([1, 2]), localEpochs: 1, batchSize: 32, learningRate: 0.001, deadline: 1e12,
    privacy: { noiseMultiplier: 1.5, clip: 1, temperature: 1, noiseShares: 2, delta: 1e-5 },
    secagg: { session: 's:5', threshold: 2, scale: 2 ** 20, bound: 9.5, length: 20, values: 'probs', temperature: 1 },
  },
  { type: 'sa-roster', round: 5, session: 's:5', roster: [{ clientId: 'c-1', cPk: new Uint8Array(32).fill(1), sPk: new Uint8Array(32).fill(2) }] },
  { type: 'sa-peers', round: 5, session: 's:5', peers: ['c-1', 'c-2'], shares: [{ from: 'c-2', to: 'c-1', ciphertext: new Uint8Array(140).fill(3) }] },
  { type: 'sa-unmask', round: 5, session: 's:5', survivors: ['c-1'], dropped: ['c-2'] },
];

test('every message schema round-trips through a frame unchanged', () => {
  const seen = new Set<string>();
  for (const msg of clientSamples) {
    assert.deepEqual(parseClientFrame(msg.type, encodeFrame(msg)), msg);
    seen.add(msg.type);
  }
  for (const msg of serverSamples) {
    assert.deepEqual(parseServerFrame(msg.type, encodeFrame(msg)), msg);
    seen.add(msg.type);
  }
  assert.deepEqual([...seen].sort(), [...Object.keys(CLIENT_SCHEMAS), ...Object.keys(SERVER_SCHEMAS)].sort());
  // Absent optional fields may also come as msgpack nil (other languages' encoders write nil for "none").
  const withNils = { type: 'hello', protocol: 1, clientId: 'c', model: 'mlp', numSamples: 1, codec: 'fp16', classCounts: null, resumeToken: null, backend: null };
  const parsed = Object.entries(parseClientFrame('hello', defaultPack(withNils))).filter(([, v]) => v !== undefined);
  assert.deepEqual(Object.fromEntries(parsed), { type: 'hello', protocol: 1, clientId: 'c', model: 'mlp', numSamples: 1, codec: 'fp16' });
});

test('refusals name the field, what it must be, and carry the right code', () => {
  const refuse = (event: string, msg: unknown, code: string, text: RegExp) => {
    assert.throws(() => parseClientFrame(event, encodeFrame(msg)), (e: unknown) => e instanceof ProtocolError && e.code === code && text.test(e.message));
  };
  const hello = clientSamples[1];
  refuse('hello', { ...hello, numSamples: -1 }, 'bad-message', /field 'numSamples' must be an integer in \[0, 1000000000\]/);
  refuse('hello', { ...hello, model: 'resnet' }, 'bad-message', /field 'model' must be one of mlp, cnn/);
  refuse('hello', { ...hello, clientId: 'a b' }, 'bad-message', /field 'clientId' .*letters, digits/);
  refuse('hello', { ...hello, type: 'logits' }, 'bad-message', /does not match event 'hello'/);
  refuse('logits', { ...clientSamples[2], stats: { ...stats, trainLoss: NaN } }, 'non-finite', /field 'stats.trainLoss' must be a finite number, got NaN/);
  refuse('logits', { ...clientSamples[2], logits: { ...(clientSamples[2] as { logits: object }).logits, rows: -1 } }, 'bad-shape', /field 'logits.rows'/);
  refuse('weights', { ...weightsSample, weights: [{ name: 'w', shape: [3], data: new Float32Array(2) }] }, 'bad-shape', /weights\[0\] \('w'\) has 2 values for shape \[3\]/);
  refuse('weights', { ...weightsSample, weights: [{ name: 'w', shape: [2], data: new Float32Array([1, Infinity]) }] }, 'non-finite', /non-finite value at index 1/);
  refuse('weights', { ...weightsSample, weights: [{ name: 'w', shape: [0], data: new Float32Array(0) }] }, 'bad-shape', /field 'weights\[0\].shape\[0\]'/);
  refuse('weights', { ...weightsSample, weights: [{ name: 'w', shape: [2], data: new Float64Array(2) }] }, 'bad-message', /weights\[0\].data' must be float32 values.*got a Float64Array of 2/);
  // A tiny fp32 matrix whose data is a float64 array: not the codec's element type, so refused by name.
  refuse('logits', { ...clientSamples[2], logits: { codec: 'fp32', rows: 1, cols: 2, data: new Float64Array(2) } }, 'bad-shape', /logits.data' must be bytes.*got a Float64Array/);
});

/** All-zero logits for `rows`×10 in every typed-array form a msgpack library may produce, each as a whole frame. */
function zeroLogitFrames(rows: number, hash: string, round: number): { form: string; frame: Uint8Array }[] {
  const n = rows * 10;
  // Views at a non-zero byteOffset into a buffer full of NaN bit patterns: reading the whole buffer, or from offset
  // 0, would find non-finite values (the original bug: N changed from run to run with the decoder's buffer state).
  const poisoned = new Float32Array(n + 7).fill(NaN);
  const zerosAt = poisoned.subarray(5, 5 + n).fill(0);
  const bytesAt = new Uint8Array(poisoned.buffer, 3 * 4 + 1, n * 4);
  bytesAt.fill(0);
  const msg = (data: unknown) => ({ type: 'logits', round, proxyHash: hash, logits: { codec: 'fp32', rows, cols: 10, data }, stats });
  const int8 = encodeMatrix(new Float32Array(n), rows, 10, 'int8');
  const le = (f: Float32Array) => new Uint8Array(f.buffer, f.byteOffset, f.byteLength);
  return [
    { form: 'Float32Array via moreTypes ext', frame: moreTypes.pack(msg(new Float32Array(n))) },
    { form: 'Float32Array subarray view via moreTypes ext', frame: moreTypes.pack(msg(zerosAt)) },
    { form: 'bin bytes from a view at an odd offset (default msgpackr)', frame: defaultPack(msg(bytesAt)) },
    { form: 'bin bytes via moreTypes', frame: moreTypes.pack(msg(new Uint8Array(n * 4))) },
    {
      form: 'int8 with scales/offsets as bin bytes (default msgpackr)',
      frame: defaultPack({ ...msg(null), logits: { codec: 'int8', rows, cols: 10, data: int8.data, scales: le(int8.scales!), offsets: le(int8.offsets!) } }),
    },
  ];
}

test('typed-array payloads are read by their own offset and length, in every accepted form, repeatably', () => {
  for (let rep = 0; rep < 20; rep++) {
    // Fill msgpackr's shared buffers with NaN bytes between parses: a reader that strays outside a field sees them.
    moreTypes.pack({ junk: new Uint8Array(70_000).fill(0xff) });
    for (const { form, frame } of zeroLogitFrames(37, 'h', 1)) {
      const msg = parseClientFrame('logits', frame);
      assert.equal(msg.type, 'logits', form);
      if (msg.type !== 'logits') continue;
      assert.deepEqual(decodeMatrix(msg.logits), new Float32Array(370), form);
    }
  }
  // 2-byte topk indices (cols > 256) as bin bytes; weight tensors as bin bytes.
  const topk = encodeMatrix(logits(3, 300), 3, 300, 'topk', { k: 5 });
  const idx = topk.indices as Uint16Array;
  const viaBin = parseClientFrame('logits', defaultPack({ ...clientSamples[2], logits: { ...topk, indices: new Uint8Array(idx.buffer, idx.byteOffset, idx.byteLength), offsets: new Uint8Array(topk.offsets!.buffer) } }));
  assert.deepEqual(viaBin.type === 'logits' && decodeMatrix(viaBin.logits), decodeMatrix(topk));
  const w = model.weights[0].data;
  const weights = parseClientFrame('weights', defaultPack({ ...weightsSample, weights: [{ name: 'k', shape: [4, 2], data: new Uint8Array(w.buffer, w.byteOffset, w.byteLength) }] }));
  assert.deepEqual(weights.type === 'weights' && weights.weights[0].data, w);
});

test('a real server accepts every typed-array form of all-zero logits, and refuses ambiguous ones clearly', async () => {
  const forms = zeroLogitFrames(1, '', 1).length;
  const b = await startBench(1, { rounds: 1, minClients: forms, proxySubset: 50 });
  after(() => b.agg.close());
  const peers = Array.from({ length: forms }, () => new RawPeer(b.url));
  after(() => peers.forEach((p) => p.close()));
  await Promise.all(peers.map((p) => p.connected()));
  peers.forEach((p, i) => p.send('hello', { type: 'hello', protocol: 1, clientId: `raw${i}`, model: 'mlp', numSamples: 10, codec: 'fp32' }));
  const rounds = (await Promise.all(peers.map((p) => p.next((m) => m.type === 'round')))) as RoundMsg[];
  const hash = b.agg.proxyInfo.hash;
  for (const [i, p] of peers.entries()) {
    const rows = rounds[i].indices!.length;
    // Refusals first (they don't use up the peer's upload), several times: same code and message each time.
    for (let rep = 0; rep < 3; rep++) {
      p.sendRaw('logits', moreTypes.pack({ type: 'logits', round: 1, proxyHash: hash, logits: { codec: 'fp16', rows, cols: 10, data: new Float32Array(rows * 10) }, stats }));
      const e = await p.error();
      assert.equal(e.code, 'bad-shape');
      assert.match(e.message, /field 'logits.data' must be bytes \(msgpack bin\), got a Float32Array of \d+/);
    }
    const { form, frame } = zeroLogitFrames(rows, hash, 1)[i];
    p.sendRaw('logits', frame);
    const answer = await p.next((m) => m.type === 'ack' || m.type === 'error');
    assert.equal(answer.type, 'ack', `${form}: ${JSON.stringify(answer)}`);
  }
  await roundsDone(b, 1);
  assert.equal(b.agg.coordinator.history[0].participants, forms);
});

test('the SDK reports and ignores malformed server frames, and keeps working', async () => {
  const http = createServer();
  const io = new Server(http);
  after(() => (io.close(), http.close()));
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  io.on('connection', (s) => {
    s.on('hello', () => {
      s.emit('round', encodeFrame({ ...serverSamples[2], indices: 'not an array', task: 'logits', round: 9 }));
      s.emit('error', encodeFrame({ type: 'error', code: 'no-such-code', message: 'x' }));
      s.emit('round-result', encodeFrame(serverSamples[6]).subarray(0, 5)); // truncated
      s.emit('ack', encodeFrame({ type: 'ack', round: 1, accepted: true, bytes: 5 }));
      s.emit('welcome', encodeFrame({ ...serverSamples[0], proxy: { ...(serverSamples[0] as { proxy: object }).proxy, path: '/nowhere' } }));
    });
  });
  const { train } = await subsetData();
  const client = new FedistillClient({ url, clientId: 'sdk', model: 'mlp', data: train, log: () => {} });
  after(() => client.stop());
  const errors: ErrorMsg[] = [];
  client.on('server-error', (e) => errors.push(e));
  const acks: unknown[] = [];
  client.on('ack', (a) => acks.push(a));
  const welcome = await client.start();
  assert.equal(welcome.clientId, 'c-1');
  assert.deepEqual(acks, [{ type: 'ack', round: 1, accepted: true, bytes: 5 }]);
  assert.deepEqual(errors.map((e) => e.code), ['bad-message', 'bad-message', 'bad-frame'], JSON.stringify(errors));
  assert.match(errors[0].message, /malformed 'round' frame.*field 'indices' must be uint32 values/);
  assert.match(errors[1].message, /malformed 'error' frame.*field 'code'/);
  assert.match(errors[2].message, /malformed 'round-result' frame.*not valid msgpack/);
});

test('docs/protocol.md lists every field of every schema, as the schemas define them', async () => {
  const doc = await readFile(DOC, 'utf8');
  assert.equal(renderDoc(doc), doc, 'field tables out of date: run node --import tsx scripts/protocol-tables.mjs');
  for (const name of [...Object.keys(CLIENT_SCHEMAS), ...Object.keys(SERVER_SCHEMAS)]) {
    assert.ok(name in TABLES, name);
    for (const field of Object.keys((TABLES[name] as { shape: object }).shape)) assert.match(doc, new RegExp(`\\| \`${field}\` \\|`), `${name}.${field}`);
  }
});

test('the structural pre-check passes the largest valid frames and refuses oversized, deep or malformed structure', async () => {
  const { scanFrame } = await import('../shared/protocol/frame-scan.ts');
  const { CLIENT_FRAME_SHAPES } = await import('../shared/protocol/schemas.ts');
  const big = { hello: 1e9, logits: 1e9, weights: 1e9 };
  // The schemas' own maxima, with unknown optional fields (ignored) for good measure.
  const largest: ClientMsg[] = [
    { ...clientSamples[0], classCounts: Array(10_000).fill(1e9) } as ClientMsg,
    { ...weightsSample, weights: Array.from({ length: 1000 }, (_, i) => ({ name: 'w'.repeat(256), shape: [1, 1, 1, 1, 1, 1, 1, i + 1], data: new Float32Array(i + 1) })) } as ClientMsg,
    clientSamples.find((m) => m.type === 'logits')!,
  ];
  for (const msg of largest) {
    const frame = encodeFrame({ ...msg, futureField: { a: [1, 2, { b: 3 }] } });
    assert.equal(scanFrame(frame, CLIENT_FRAME_SHAPES[msg.type]), null, msg.type);
    assert.equal(parseClientFrame(msg.type, frame, big).type, msg.type);
  }
  const refuse = (event: 'hello' | 'logits' | 'weights', frame: Uint8Array, code: string, text: RegExp) =>
    assert.throws(() => parseClientFrame(event, frame, big), (e: unknown) => e instanceof ProtocolError && e.code === code && text.test(e.message), `${code} ${text}`);
  refuse('hello', encodeFrame({ ...clientSamples[0], classCounts: Array(10_001).fill(1) }), 'too-large', /array declares 10001 elements; at most 10000/);
  refuse('weights', encodeFrame({ ...weightsSample, weights: Array(300_000).fill(null) }), 'too-large', /at most 1000/);
  refuse('logits', encodeFrame(Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 1]))), 'too-large', /map declares 65 entries/);
  refuse('logits', Uint8Array.from([...Array(5).fill(0x91), 0xc0]), 'too-large', /nest deeper than 4/);
  refuse('hello', encodeFrame({ ...clientSamples[0], x: Array.from({ length: 40 }, () => Array(600).fill(0)) }), 'too-large', /more than 20000 msgpack values/);
  refuse('hello', Uint8Array.from([0xdd, 0xff, 0xff, 0xff, 0xf0, 0xc0]), 'too-large', /array declares/);
  refuse('hello', Uint8Array.from([0x81, 0xa1, 0x61, 0xdc, 0x00, 0x10, 0xc0]), 'bad-frame', /declares 16 entries but only 1 bytes follow/);
  refuse('hello', Uint8Array.from([0x81, 0xa1, 0x61, 0xc6, 0x7f, 0xff, 0xff, 0xff, 0x00]), 'bad-frame', /truncated/);
  refuse('hello', Uint8Array.from([0x81, 0x01, 0xc0]), 'bad-frame', /map keys must be strings/);
  refuse('hello', Uint8Array.from([0x81, 0xa1, 0x61, 0xd4, 0x65, 0x00]), 'bad-frame', /extension type 101 is not accepted/);
  refuse('hello', Uint8Array.from([0xc1]), 'bad-frame', /0xc1/);
  refuse('hello', Uint8Array.from([0xc0, 0xc0]), 'bad-frame', /bytes after the msgpack value/);
});

test('every field of every client message, set to any hostile value, is refused with a protocol error code (never a throw)', () => {
  const hostile: unknown[] = [
    2n ** 63n - 1n, -(2n ** 63n), 1e308, -1e308, NaN, Infinity, -0, 0.5, 2 ** 53, -1, 'toString', '__proto__', 'constructor', '',
    'x'.repeat(300), { toString: 1 }, { valueOf: 1, toString: 1 }, [1, 2], [], {}, null, true, new Date(0), new Uint8Array(3),
    new Uint16Array(3), new Int8Array(3), new Float32Array(3), new Float64Array(3), new BigInt64Array(2), new Set([1]),
    new Map([['toString', 1]]), [{ toString: 1 }], new Error('e'), /x/,
  ];
  const packr = new Packr({ useRecords: false, moreTypes: true, structuredClone: false, useBigIntExtension: false } as object);
  const paths = (o: unknown, pre: (string | number)[] = []): (string | number)[][] =>
    !o || typeof o !== 'object' || ArrayBuffer.isView(o) ? [] : Object.entries(o).flatMap(([k, v]) => [[...pre, k], ...paths(v, [...pre, k])]);
  let tried = 0;
  for (const msg of [...clientSamples, { ...clientSamples[0], type: 'hello' }]) {
    for (const path of [...paths(msg), ['__proto__'], ['constructor']]) {
      for (const value of hostile) {
        const copy = structuredClone(msg) as unknown as Record<string, unknown>;
        let o = copy;
        for (const k of path.slice(0, -1)) o = o[k] as Record<string, unknown>;
        o[path.at(-1)!] = value;
        let frame: Uint8Array;
        try {
          frame = packr.pack(copy);
        } catch {
          continue; // not representable in msgpack
        }
        tried++;
        try {
          parseClientFrame(msg.type, frame);
        } catch (e) {
          assert.ok(e instanceof ProtocolError && e.code !== 'internal', `${msg.type} ${path.join('.')}: ${(e as Error).message}`);
          assert.equal(e.cause, undefined, `${msg.type} ${path.join('.')} = a ${typeof value}: a validator threw: ${(e.cause as Error)?.message}`);
        }
      }
    }
  }
  assert.ok(tried > 3000, `${tried} frames`);
});
