import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { encodeMatrix } from '../shared/tensor/logit-codec.ts';
import { PROTOCOL_VERSION, type RoundMsg } from '../shared/protocol/messages.ts';
import { NO_RATE_LIMITS, RawPeer, TOKEN, makeClient, roundsDone, startBench, viewerAuth } from './helpers.ts';

const hello = (id: string) => ({ type: 'hello', protocol: PROTOCOL_VERSION, clientId: id, model: 'mlp', numSamples: 100, codec: 'fp32' });
const stats = { trainLoss: 1, trainAccuracy: 0.5, trainSeconds: 0.1 };

test('bad input gets a clear error, the server lives on and loses no accepted data', async () => {
  // Two real clients and one hand-driven peer take part; every refusal is checked by its error code.
  // This test sends many bad frames on one connection on purpose: the rate limits (test/abuse.test.ts) are lifted.
  const b = await startBench(3, { rounds: 2, minClients: 3, frameLimits: { hello: 4096, logits: 64 * 1024, weights: 1 << 20 }, ...NO_RATE_LIMITS });
  after(() => b.agg.close());

  // Unauthenticated: refused at the handshake with a message that says what to do.
  const intruder = new RawPeer(b.url, 'wrong-token');
  await assert.rejects(intruder.connected(), /unauthorized/);
  intruder.close();

  const peer = new RawPeer(b.url);
  await peer.connected();
  // Uploading before registering.
  peer.send('logits', { type: 'logits', round: 1, proxyHash: 'x', logits: encodeMatrix(new Float32Array(10), 1, 10, 'fp32'), stats });
  assert.equal((await peer.error()).code, 'not-registered');
  // Not a binary frame, not msgpack, oversized, unknown event, wrong protocol version, wrong field types.
  peer.sendRaw('hello', 'just a string');
  assert.equal((await peer.error()).code, 'bad-frame');
  peer.sendRaw('hello', new Uint8Array([0xc1, 0xc1, 0xc1]));
  assert.equal((await peer.error()).code, 'bad-frame');
  peer.sendRaw('hello', new Uint8Array(5000));
  assert.equal((await peer.error()).code, 'too-large');
  peer.send('gimme-data', { type: 'gimme-data' });
  assert.equal((await peer.error()).code, 'bad-message');
  peer.send('hello', { ...hello('peer'), protocol: 999 });
  assert.equal((await peer.error()).code, 'protocol-version');
  peer.send('hello', { ...hello('peer'), numSamples: -5 });
  assert.match((await peer.error()).message, /numSamples/);

  peer.send('hello', { ...hello('peer'), numSamples: 2.5 });
  assert.match((await peer.error()).message, /numSamples/);
  peer.send('hello', { ...hello('peer'), classCounts: [1, 2, 3] });
  assert.equal((await peer.error()).code, 'bad-shape');
  // msgpackr's structured-clone references would let a tiny frame alias one big array many times: refused.
  const { Packr } = await import('msgpackr');
  const shared = new Float32Array(1000);
  const aliased = new Packr({ structuredClone: true, moreTypes: true, useRecords: false }).pack({
    type: 'weights', round: 1, numSamples: 1, stats, weights: Array.from({ length: 50 }, (_, i) => ({ name: `w${i}`, shape: [1000], data: shared })),
  });
  peer.sendRaw('weights', aliased);
  assert.equal((await peer.error()).code, 'not-registered'); // checked before decoding
  peer.send('hello', hello('peer'));
  const welcome = await peer.next((m) => m.type === 'welcome');
  peer.sendRaw('weights', aliased);
  assert.equal((await peer.error()).code, 'bad-frame');
  // One connection is one client; and a live client's id can't be taken over without its resume token.
  peer.send('hello', hello('someone-else'));
  assert.match((await peer.error()).message, /already client 'peer'/);
  const impostor = new RawPeer(b.url);
  await impostor.connected();
  impostor.send('hello', hello('peer'));
  assert.equal((await impostor.error()).code, 'unauthorized');
  impostor.close();
  assert.equal(welcome.type === 'welcome' && welcome.proxy.count, 400);
  peer.send('logits', { type: 'logits', round: 7, proxyHash: 'x', logits: encodeMatrix(new Float32Array(10), 1, 10, 'fp32'), stats });
  assert.equal((await peer.error()).code, 'unknown-round');

  // Now the round starts (3 clients connected): the peer is selected and gets the proxy rows to answer for.
  const clients = [0, 1].map((i) => makeClient(b, i));
  await Promise.all(clients.map((c) => c.start()));
  after(() => clients.forEach((c) => c.stop()));
  const round = (await peer.next((m) => m.type === 'round')) as RoundMsg;
  const rows = round.indices!.length;
  const hash = welcome.type === 'welcome' ? welcome.proxy.hash : '';
  const good = new Float32Array(rows * 10).map((_, i) => (i % 10 === 3 ? 4 : 0));

  const nan = new Float32Array(rows * 10);
  nan[17] = NaN;
  const nanMatrix = { codec: 'fp32', rows, cols: 10, data: new Uint8Array(nan.buffer) };
  peer.send('logits', { type: 'logits', round: 1, proxyHash: hash, logits: nanMatrix, stats });
  assert.equal((await peer.error()).code, 'non-finite');
  peer.send('logits', { type: 'logits', round: 1, proxyHash: hash, logits: encodeMatrix(good.subarray(0, 50), 5, 10, 'fp32'), stats });
  assert.equal((await peer.error()).code, 'bad-shape');
  peer.send('logits', { type: 'logits', round: 1, proxyHash: hash, logits: { codec: 'fp32', rows, cols: 10, data: new Uint8Array(7) }, stats });
  assert.equal((await peer.error()).code, 'bad-shape');
  peer.send('logits', { type: 'logits', round: 1, proxyHash: 'f'.repeat(64), logits: encodeMatrix(good, rows, 10, 'fp32'), stats });
  assert.equal((await peer.error()).code, 'wrong-proxy');
  peer.send('logits', { type: 'logits', round: 1, proxyHash: hash, logits: encodeMatrix(good, rows, 10, 'fp32'), stats: { ...stats, trainLoss: Infinity } });
  assert.equal((await peer.error()).code, 'non-finite');
  peer.send('weights', { type: 'weights', round: 1, numSamples: 10, weights: [{ name: 'w', shape: [2], data: new Float32Array(2) }], stats });
  assert.equal((await peer.error()).code, 'bad-message');
  // A good upload is accepted once; a second one is a duplicate and does not count twice.
  peer.send('logits', { type: 'logits', round: 1, proxyHash: hash, logits: encodeMatrix(good, rows, 10, 'fp16'), stats });
  const ack = await peer.next((m) => m.type === 'ack');
  assert.equal(ack.type === 'ack' && ack.round, 1);
  peer.send('logits', { type: 'logits', round: 1, proxyHash: hash, logits: encodeMatrix(good, rows, 10, 'fp16'), stats });
  assert.equal((await peer.error()).code, 'duplicate');

  // Round 2: an upload for round 1 is stale; the peer then answers round 2 properly.
  const round2 = (await peer.next((m) => m.type === 'round' && m.round === 2)) as RoundMsg;
  peer.send('logits', { type: 'logits', round: 1, proxyHash: hash, logits: encodeMatrix(good, rows, 10, 'fp16'), stats });
  assert.equal((await peer.error()).code, 'stale-round');
  peer.send('logits', { type: 'logits', round: 2, proxyHash: hash, logits: encodeMatrix(good.subarray(0, round2.indices!.length * 10), round2.indices!.length, 10, 'int8'), stats });
  await peer.next((m) => m.type === 'ack' && m.round === 2);

  await roundsDone(b, 2);
  const h = b.agg.coordinator.history;
  assert.deepEqual(h.map((r) => [r.round, r.status, r.participants]), [[1, 'completed', 3], [2, 'completed', 3]]);
  const health = await fetch(`${b.url}/healthz`);
  assert.equal(health.status, 200);
  const metrics = await (await fetch(`${b.url}/metrics`, { headers: viewerAuth() })).text();
  assert.match(metrics, /fedistill_refused_frames_total\{event="logits",code="non-finite"\} 2/);
  assert.match(metrics, /fedistill_round 2/);
  peer.close();
});

test('the proxy set route requires the token and serves by content hash', async () => {
  const b = await startBench(1, { rounds: 0 });
  after(() => b.agg.close());
  const path = b.agg.proxyInfo.path;
  assert.equal((await fetch(b.url + path)).status, 401);
  const res = await fetch(b.url + path, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('etag'), `"${b.agg.proxyInfo.hash}"`);
  const again = await fetch(b.url + path, { headers: { authorization: `Bearer ${TOKEN}`, 'if-none-match': `"${b.agg.proxyInfo.hash}"` } });
  assert.equal(again.status, 304);
  assert.equal((await fetch(`${b.url}/proxy/other`, { headers: { authorization: `Bearer ${TOKEN}` } })).status, 404);
  const status = await (await fetch(`${b.url}/status`, { headers: viewerAuth() })).json();
  assert.equal(status.backend.name, 'wasm');
  assert.equal(status.backend.trainingCapable, true);
  assert.equal(status.proxy.hash, b.agg.proxyInfo.hash);
  assert.equal(status.config.token, '(set)');
});
