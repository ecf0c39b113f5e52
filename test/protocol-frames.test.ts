/**
 * What the server puts on the wire, checked as a client in another language sees it: no msgpack ext type 0 (JS
 * `undefined`) in any frame, `error.round` on refused uploads, one rule for closed vs never-opened rounds, and events
 * that must carry exactly one frame. Hand-driven peers answer with fixed logits (no training), so the federations are
 * short; the server side (selection, distillation, checkpoints) is real.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Packr } from 'msgpackr';
import { decodeFrame, encodeFrame } from '../shared/protocol/frame-codec.ts';
import { PROTOCOL_VERSION, type ErrorMsg, type RoundMsg, type ServerMsg, type WelcomeMsg } from '../shared/protocol/messages.ts';
import { encodeMatrix } from '../shared/tensor/logit-codec.ts';
import type { ServerConfig } from '../server/config.ts';
import { extTypesIn } from './msgpack-scan.ts';
import { NO_RATE_LIMITS, RawPeer, startBench } from './helpers.ts';

const stats = { trainLoss: 1, trainAccuracy: 0.5, trainSeconds: 0.1 };
const hello = (clientId: string, model: string, resumeToken?: string) => ({
  type: 'hello', protocol: PROTOCOL_VERSION, clientId, model, numSamples: 100, codec: 'fp16', resumeToken,
});
// These tests send many frames on one connection on purpose: the rate limits (test/abuse.test.ts) are lifted.
const small: Partial<ServerConfig> = { proxySubset: 40, distillEpochs: 1, minClients: 2, ...NO_RATE_LIMITS };

/** Logits with a clear argmax per row (column = row mod 10), so the server's distillation has something to learn. */
function logitsFor(round: RoundMsg, hash: string, codec: 'fp16' | 'fp32' = 'fp16') {
  const rows = round.indices!.length;
  const values = new Float32Array(rows * 10).map((_, i) => (i % 10 === Math.floor(i / 10) % 10 ? 3 : 0));
  return { type: 'logits', round: round.round, proxyHash: hash, logits: encodeMatrix(values, rows, 10, codec), stats };
}

/** The answer to a round: logits, or (fedavg) the weights it was sent back unchanged. */
function answer(round: RoundMsg, hash: string): [string, unknown] {
  if (round.task === 'weights') return ['weights', { type: 'weights', round: round.round, numSamples: 10, weights: round.model!.weights, stats }];
  return ['logits', logitsFor(round, hash)];
}

const isRound = (r: number) => (m: ServerMsg) => m.type === 'round' && m.round === r;

async function until(what: string, check: () => boolean, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Every frame any of `peers` received: a well-formed msgpack value with no ext type 0. Returns the messages. */
function assertNoUndefinedOnWire(peers: RawPeer[]): ServerMsg[] {
  const all: ServerMsg[] = [];
  for (const peer of peers) {
    for (const { event, bytes } of peer.frames) {
      const types = extTypesIn(bytes);
      const shown = () => JSON.stringify(decodeFrame(bytes), (_k, v) => (ArrayBuffer.isView(v) ? `<${v.constructor.name}>` : v ?? `<${v}>`));
      assert.ok(!types.includes(0), `'${event}' frame holds msgpack ext type 0 (undefined): ${types.includes(0) ? shown() : ''}`);
      assert.ok(types.every((t) => t === 0x74), `'${event}' frame: only typed-array extensions expected, got ${types}`);
      all.push(decodeFrame(bytes) as ServerMsg);
    }
  }
  return all;
}

test('the scanner reads msgpack structurally (it finds ext headers, not byte patterns inside payloads)', () => {
  assert.deepEqual(extTypesIn(new Packr({ useRecords: false }).pack({ x: undefined })), [0], 'msgpackr writes undefined as ext 0');
  // d4 00 00 inside a payload is data: in a bin (a Node Buffer packs as bin), and in a typed-array ext (a Uint8Array).
  assert.deepEqual(extTypesIn(encodeFrame({ b: Buffer.from([0xd4, 0x00, 0x00]), s: '\u00d4' })), []);
  assert.deepEqual(extTypesIn(encodeFrame({ u: new Uint8Array([0xd4, 0x00, 0x00]) })), [0x74]);
  assert.deepEqual(extTypesIn(encodeFrame({ f: new Float32Array(3), n: [1, -1, 300, 70000, 2 ** 40, 0.5, null, true] })), [0x74]);
  assert.throws(() => extTypesIn(new Uint8Array([0x82, 0xa1, 0x61])), /truncated/);
  assert.throws(() => extTypesIn(new Uint8Array([0xc0, 0xc0])), /after the msgpack value/);
  // The frame codec leaves unset fields out at any depth, and keeps everything else.
  const bytes = encodeFrame({ type: 'round', a: undefined, nested: { b: undefined, c: 1, list: [{ d: undefined, e: 2 }] } });
  assert.deepEqual(extTypesIn(bytes), []);
  assert.deepEqual(decodeFrame(bytes), { type: 'round', nested: { c: 1, list: [{ e: 2 }] } });
});

test('ensemble: frames carry no undefined, refused uploads name their round, closed rounds are stale, one frame per event', async () => {
  const b = await startBench(2, { ...small, strategy: 'ensemble', rounds: 2 });
  after(() => b.agg.close());
  const a = new RawPeer(b.url);
  let c = new RawPeer(b.url);
  const peers = [a, c];
  after(() => peers.forEach((p) => p.close()));
  await Promise.all([a.connected(), c.connected()]);

  // Refusals of frames that were never decoded carry no round.
  a.send('logits', logitsFor({ round: 1, indices: new Uint32Array(2) } as RoundMsg, 'x'));
  const notRegistered = await a.error();
  assert.equal(notRegistered.code, 'not-registered');
  assert.ok(!('round' in notRegistered), 'not-registered: no round (the frame is not decoded)');
  a.sendRaw('hello', 'not binary');
  assert.ok(!('round' in (await a.error())));

  // Two arguments, or an acknowledgement request, are refused as bad-frame (the first argument is not taken).
  a.socket.emit('hello', encodeFrame(hello('a', 'mlp')), encodeFrame(hello('a', 'mlp')));
  const twoArgs = await a.error();
  assert.equal(twoArgs.code, 'bad-frame');
  assert.match(twoArgs.message, /exactly one binary msgpack frame, got 2 arguments/);
  const acked = decodeFrame(await a.socket.timeout(10_000).emitWithAck('hello', encodeFrame(hello('a', 'mlp')))) as ErrorMsg;
  assert.equal(acked.code, 'bad-frame', 'the acknowledgement is answered with the error frame');
  assert.match(acked.message, /acknowledgement/);
  assert.equal((await a.error()).code, 'bad-frame', 'and the error event is sent as well');
  assert.equal(b.agg.coordinator.status().clients.length, 0, 'no hello was taken');

  // a runs the student's architecture (gets weights), c another one (gets consensus soft labels from round 2).
  a.send('hello', hello('a', 'mlp'));
  const welcome = (await a.next((m) => m.type === 'welcome')) as WelcomeMsg;
  const hash = welcome.proxy.hash;
  c.send('hello', hello('c', 'cnn'));
  const cWelcome = (await c.next((m) => m.type === 'welcome')) as WelcomeMsg;
  a.send('logits', { ...logitsFor({ round: 5, indices: new Uint32Array(2) } as RoundMsg, hash) });
  assert.deepEqual(await a.error().then((e) => [e.code, e.round]), ['unknown-round', 5]);

  const a1 = (await a.next(isRound(1))) as RoundMsg;
  const c1 = (await c.next(isRound(1))) as RoundMsg;
  assert.ok(a1.model && !a1.consensus && !('consensus' in a1), 'the student kind gets weights and no consensus key');
  assert.ok(!c1.model && !('model' in c1) && !('consensus' in c1), 'round 1 has no consensus yet');

  // Uploads of round 1 refused for any reason name round 1.
  const good = logitsFor(a1, hash);
  const refusals: [string, unknown, string][] = [
    ['logits', { ...good, logits: encodeMatrix(new Float32Array(50), 5, 10, 'fp32') }, 'bad-shape'],
    ['logits', { ...good, proxyHash: 'f'.repeat(64) }, 'wrong-proxy'],
    ['logits', { ...good, stats: { ...stats, trainLoss: Infinity } }, 'non-finite'],
    ['logits', { ...good, stats: undefined }, 'bad-message'],
    ['weights', { type: 'weights', round: 1, numSamples: 10, weights: a1.model!.weights, stats }, 'bad-message'],
  ];
  for (const [event, msg, code] of refusals) {
    a.send(event, msg);
    const e = await a.error();
    assert.deepEqual([e.code, e.round], [code, 1], `${code}: ${e.message}`);
  }
  // An upload whose round itself is malformed names none.
  a.send('logits', { ...good, round: -1 });
  const badRound = await a.error();
  assert.equal(badRound.code, 'bad-message');
  assert.ok(!('round' in badRound));

  // c answers and leaves; a answers: round 1 is complete, and round 2 cannot open (one client connected).
  c.send('logits', logitsFor(c1, hash));
  await c.next((m) => m.type === 'ack' && m.round === 1);
  c.close();
  await until('c seen as disconnected', () => b.agg.coordinator.status().clients.some((x) => x.id === 'c' && !x.connected));
  a.send('logits', good);
  assert.equal(((await a.next((m) => m.type === 'ack')) as { bytes: number }).bytes, encodeFrame(good).byteLength, 'ack.bytes is the whole frame');
  await a.next((m) => m.type === 'round-result' && m.round === 1);
  assert.equal(b.agg.coordinator.status().openRound, null);
  // Round 1 just closed and no round is open: a re-sent upload is stale (not unknown); round 2 was never opened.
  a.send('logits', good);
  const stale = await a.error();
  assert.deepEqual([stale.code, stale.round], ['stale-round', 1]);
  assert.match(stale.message, /no round is open now/);
  a.send('logits', { ...good, round: 2 });
  assert.deepEqual(await a.error().then((e) => [e.code, e.round]), ['unknown-round', 2]);

  // c comes back with its token: round 2 opens; c (not the student's kind) now gets the consensus.
  c = new RawPeer(b.url);
  peers.push(c);
  await c.connected();
  c.send('hello', hello('c', 'cnn', cWelcome.resumeToken));
  const a2 = (await a.next(isRound(2))) as RoundMsg;
  const c2 = (await c.next(isRound(2))) as RoundMsg;
  assert.ok(c2.consensus && !c2.model, 'round 2: consensus for the other architecture');
  a.send('logits', good);
  assert.deepEqual(await a.error().then((e) => [e.code, e.round]), ['stale-round', 1]);
  a.send(...answer(a2, hash));
  await a.next((m) => m.type === 'ack' && m.round === 2);
  a.send(...answer(a2, hash));
  assert.deepEqual(await a.error().then((e) => [e.code, e.round]), ['duplicate', 2]);
  c.send(...answer(c2, hash));
  await Promise.all([a, c].map((p) => p.next((m) => m.type === 'end')));

  // After the end: an opened round is stale, one never opened unknown.
  for (const [round, code] of [[2, 'stale-round'], [1, 'stale-round'], [3, 'unknown-round'], [0, 'unknown-round']] as const) {
    a.send('logits', { ...good, round });
    const e = await a.error();
    assert.deepEqual([e.code, e.round], [code, round], e.message);
  }

  const seen = assertNoUndefinedOnWire(peers);
  const types = new Set(seen.map((m) => m.type));
  for (const t of ['welcome', 'round', 'ack', 'error', 'round-result', 'end']) assert.ok(types.has(t as ServerMsg['type']), `saw a '${t}' frame`);
});

test('mutual and fedavg: round frames (mutual soft labels, weights tasks) and the end carry no undefined', async () => {
  for (const strategy of ['mutual', 'fedavg'] as const) {
    const b = await startBench(2, { ...small, strategy, rounds: 2 });
    const peers = [new RawPeer(b.url), new RawPeer(b.url)];
    try {
      await Promise.all(peers.map((p) => p.connected()));
      peers.forEach((p, i) => p.send('hello', hello(`p${i}`, 'mlp')));
      const hash = ((await peers[0].next((m) => m.type === 'welcome')) as WelcomeMsg).proxy.hash;
      for (const r of [1, 2]) {
        for (const p of peers) {
          const round = (await p.next(isRound(r))) as RoundMsg;
          if (strategy === 'mutual') assert.equal(round.mutual !== undefined, r === 2, `mutual soft labels from round 2 (round ${r})`);
          else assert.ok(round.task === 'weights' && round.model && !('indices' in round), 'fedavg: a weights task without indices');
          p.send(...answer(round, hash));
        }
      }
      await Promise.all(peers.map((p) => p.next((m) => m.type === 'end')));
      assert.ok(assertNoUndefinedOnWire(peers).some((m) => m.type === 'round'));
    } finally {
      peers.forEach((p) => p.close());
      await b.agg.close();
    }
  }
});
