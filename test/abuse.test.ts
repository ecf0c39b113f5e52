/**
 * The abuse limits against a real aggregator on loopback (server/guard/, the registry): per-connection rate limits
 * (refusal, silenced error replies, flood disconnect), hello rate and journal-free refreshes, the handshake back-off
 * per address, the hello timeout, the client cap, idle clients (dropped from selection, sent nothing, revived by a
 * late upload), registry pruning across a restart, and a bounded /status. Hand-driven peers answer with fixed logits,
 * so the federations are short; everything on the server side is real. All peers share 127.0.0.1, so each limit gets
 * its own server.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { io } from 'socket.io-client';
import { PROTOCOL_VERSION, type ErrorMsg, type RoundMsg, type ServerMsg, type WelcomeMsg } from '../shared/protocol/messages.ts';
import { encodeMatrix } from '../shared/tensor/logit-codec.ts';
import { addressKey, AddressGuard } from '../server/guard/address-guard.ts';
import type { ServerConfig } from '../server/config.ts';
import { makeClient, RawPeer, startBench, TOKEN, type Bench } from './helpers.ts';

const stats = { trainLoss: 1, trainAccuracy: 0.5, trainSeconds: 0.1 };
const hello = (clientId: string, resumeToken?: string, numSamples = 100) => ({
  type: 'hello', protocol: PROTOCOL_VERSION, clientId, model: 'mlp', numSamples, codec: 'fp16', resumeToken,
});
const small: Partial<ServerConfig> = { proxySubset: 40, distillEpochs: 1 };
const isError = (code: string) => (m: ServerMsg) => m.type === 'error' && m.code === code;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function logitsFor(round: RoundMsg, hash: string) {
  const rows = round.indices!.length;
  const values = new Float32Array(rows * 10).map((_, i) => (i % 10 === Math.floor(i / 10) % 10 ? 3 : 0));
  return { type: 'logits', round: round.round, proxyHash: hash, logits: encodeMatrix(values, rows, 10, 'fp16'), stats };
}

async function until(what: string, check: () => boolean, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** A peer, connected and (with `id`) welcomed; closed after the test. */
async function peer(b: Bench, t: { after: (f: () => void) => void }, id?: string): Promise<{ p: RawPeer; welcome?: WelcomeMsg }> {
  const p = new RawPeer(b.url);
  t.after(() => p.close());
  await p.connected();
  if (!id) return { p };
  p.send('hello', hello(id));
  return { p, welcome: (await p.next((m) => m.type === 'welcome')) as WelcomeMsg };
}

/** Whether a socket.io handshake with `token` is accepted (true) or refused (the connect_error message). */
function handshake(url: string, token: string): Promise<true | string> {
  return new Promise((resolve) => {
    const s = io(url, { auth: { token }, transports: ['websocket'], reconnection: false, forceNew: true, timeout: 5000 });
    s.once('connect', () => (s.disconnect(), resolve(true)));
    s.once('connect_error', (e) => (s.disconnect(), resolve(e.message)));
  });
}

test('rate limits: frames over the rate are refused rate-limited, error replies are capped, a flooding socket is closed', async (t) => {
  const b = await startBench(2, { ...small, minClients: 5, rateFramesPerS: 2, rateBurst: 5, errorRepliesPerS: 1000, floodLimit: 30 });
  t.after(() => b.agg.close());
  const { p } = await peer(b, t);
  for (let i = 0; i < 12; i++) p.sendRaw('nonsense', new Uint8Array([i]));
  await until('12 replies', () => p.received.length >= 12);
  const codes = p.received.map((m) => (m as ErrorMsg).code);
  assert.deepEqual(codes.slice(0, 5), Array(5).fill('bad-message'), 'the burst is read (an unknown event is bad-message)');
  assert.ok(codes.slice(6).every((c) => c === 'rate-limited'), `then rate-limited: ${codes}`);
  assert.match((p.received.at(-1) as ErrorMsg).message, /frames\/s/);

  // Keeps flooding: more than floodLimit refusals within 10 s, and the server says so and closes the connection.
  const closed = new Promise<string>((r) => p.socket.once('disconnect', r));
  for (let i = 0; i < 40; i++) p.sendRaw('nonsense', new Uint8Array([i]));
  assert.equal(await closed, 'io server disconnect');
  assert.match((p.received.at(-1) as ErrorMsg).message, /this connection is closed/);

  // A well-behaved peer on the same server is unaffected.
  const { welcome } = await peer(b, t, 'calm');
  assert.equal(welcome?.clientId, 'calm');
});

test('error replies to one connection are rate-limited: a flood of bad frames gets a bounded number of answers', async (t) => {
  const b = await startBench(2, { ...small, minClients: 5, rateFramesPerS: 10_000, rateBurst: 10_000, errorRepliesPerS: 2, floodLimit: 10_000 });
  t.after(() => b.agg.close());
  const { p } = await peer(b, t);
  const t0 = Date.now();
  for (let i = 0; i < 500; i++) p.sendRaw('logits', new Uint8Array([0xc1]));
  // The server is still there and answers (a hello), after the flood.
  p.send('hello', hello('after-flood'));
  await sleep(600);
  const seconds = (Date.now() - t0) / 1000;
  const errors = p.received.filter((m) => m.type === 'error').length;
  // Burst 2R = 4, then R = 2 per second.
  assert.ok(errors <= 4 + Math.ceil(2 * seconds) + 1, `${errors} error replies to 500 bad frames in ${seconds.toFixed(1)} s`);
  assert.ok(errors >= 1);
});

test('hello refreshes are rate-limited, and a refresh that changes nothing writes no journal record', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fedistill-abuse-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const b = await startBench(2, { ...small, minClients: 5, stateDir: dir, helloIntervalS: 60 });
  t.after(() => b.agg.close());
  const { p, welcome } = await peer(b, t, 'h');
  const journal = join(dir, 'journal.log');
  const size = async () => (await stat(journal)).size;
  const before = await size();
  for (let i = 0; i < 3; i++) {
    p.send('hello', hello('h', welcome!.resumeToken));
    await p.next((m) => m.type === 'welcome');
  }
  assert.equal(await size(), before, 'unchanged refreshes: no journal record');
  p.send('hello', hello('h', welcome!.resumeToken, 101));
  await p.next((m) => m.type === 'welcome');
  assert.ok((await size()) > before, 'a refresh that changes the registration is journaled');
  // 5 hellos so far (the burst); the next within the interval is refused.
  p.send('hello', hello('h', welcome!.resumeToken, 102));
  const e = (await p.next((m) => m.type === 'error')) as ErrorMsg;
  assert.equal(e.code, 'rate-limited');
  assert.match(e.message, /one hello per 60 s/);
});

test('failed handshakes from one address back off exponentially; the table of addresses is bounded', async (t) => {
  const b = await startBench(2, { ...small, minClients: 5, authFailures: 2, authBackoffS: 1.5, authBackoffMaxS: 30 });
  t.after(() => b.agg.close());
  for (let i = 0; i < 3; i++) assert.match(String(await handshake(b.url, 'wrong-token')), /unauthorized/, `failure ${i + 1}`);
  // Three failures, two free: backing off for 1.5 s. Even the right token is refused meanwhile, before any auth work.
  const refused = await handshake(b.url, TOKEN);
  assert.match(String(refused), /^rate-limited: too many failed authentications from this address; retry in \d+ s/, 'refused, saying why and when');
  await sleep(1700);
  assert.equal(await handshake(b.url, TOKEN), true, 'accepted once the back-off is over');
  // One more failure doubles the back-off (3 s): still refused after 1.7 s.
  assert.match(String(await handshake(b.url, 'wrong-token')), /unauthorized/);
  await sleep(1700);
  assert.notEqual(await handshake(b.url, TOKEN), true, 'the second back-off is twice as long');

  // The table itself: capped, least recently failed forgotten first; IPv6 counted per /64.
  const g = new AddressGuard({ failures: 0, baseMs: 1000, maxMs: 60_000, capacity: 3 });
  for (const a of ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4']) g.failed(a, 0);
  assert.equal(g.size, 3);
  assert.equal(g.blockedFor('10.0.0.1', 10), 0, 'the oldest entry was evicted');
  assert.ok(g.blockedFor('10.0.0.4', 10) > 0);
  assert.equal(g.blockedFor('10.0.0.4', 61_001 + 1000), 0, 'entries lapse');
  assert.equal(addressKey('2001:db8:1:2:aaaa::1'), addressKey('2001:db8:1:2::ffff'));
  assert.equal(addressKey('::ffff:192.0.2.7'), '192.0.2.7');
});

test('HTTP: a refused bearer token counts toward the same back-off; an address backing off gets 429, /healthz stays up', async (t) => {
  const b = await startBench(2, { ...small, minClients: 5, authFailures: 2, authBackoffS: 30, authBackoffMaxS: 60 });
  t.after(() => b.agg.close());
  const get = (path: string, token?: string) => fetch(b.url + path, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  for (let i = 0; i < 3; i++) assert.equal((await get(b.agg.proxyInfo.path, 'wrong-token')).status, 401, `failure ${i + 1}`);
  const r = await get(b.agg.proxyInfo.path, TOKEN);
  assert.equal(r.status, 429, 'even the right token waits out the back-off');
  assert.ok(Number(r.headers.get('retry-after')) > 0);
  assert.equal((await r.json()).error, 'rate-limited');
  assert.equal((await get('/healthz')).status, 200);
  assert.match(String(await handshake(b.url, TOKEN)), /^rate-limited/, 'and so does a socket.io handshake from it');
});

test('the SDK waits out an address back-off the server names, then joins', async (t) => {
  const b = await startBench(2, { ...small, minClients: 5, authFailures: 0, authBackoffS: 1, authBackoffMaxS: 5 });
  t.after(() => b.agg.close());
  assert.match(String(await handshake(b.url, 'wrong-token')), /unauthorized/);
  assert.match(String(await handshake(b.url, TOKEN)), /^rate-limited/, 'backing off now');
  const lines: string[] = [];
  const c = makeClient(b, 0, { log: (l) => lines.push(l) });
  t.after(() => c.stop());
  await c.start(); // resolves on welcome: refused once with "retry in 1 s", then connected
  assert.ok(lines.some((l) => /refused the connection: rate-limited/.test(l)), lines.join('\n'));
});

test('a connection that says no valid hello within --hello-timeout-s is closed; a welcomed one stays', async (t) => {
  const b = await startBench(2, { ...small, minClients: 5, helloTimeoutS: 0.5 });
  t.after(() => b.agg.close());
  const { p: silent } = await peer(b, t);
  const { p: welcomed } = await peer(b, t, 'w');
  const closed = new Promise<string>((r) => silent.socket.once('disconnect', r));
  silent.sendRaw('hello', 'not a frame'); // a refused hello does not count
  assert.equal(await closed, 'io server disconnect');
  assert.ok(silent.received.some(isError('hello-timeout')));
  await sleep(300);
  assert.ok(welcomed.socket.connected, 'the welcomed connection stays');
});

test('--max-clients: a hello for a new id beyond the cap is refused; known ids still reconnect', async (t) => {
  const b = await startBench(2, { ...small, minClients: 5, maxClients: 2 });
  t.after(() => b.agg.close());
  const { p: a, welcome: wa } = await peer(b, t, 'a');
  const { p: pb, welcome: wb } = await peer(b, t, 'b');
  const { p: c } = await peer(b, t);
  c.send('hello', hello('c'));
  const e = (await c.next((m) => m.type === 'error')) as ErrorMsg;
  assert.equal(e.code, 'too-many-clients');
  assert.match(e.message, /at most 2/);
  a.close();
  await until('a offline', () => b.agg.coordinator.status().clientCounts.connected === 1);
  const { p: back } = await peer(b, t);
  back.send('hello', hello('a', wa!.resumeToken));
  assert.equal(((await back.next((m) => m.type === 'welcome')) as WelcomeMsg).clientId, 'a');
  // Abandoned ids can't lock newcomers out: at the cap, a new id takes the place of the one offline the longest.
  pb.close();
  await until('b offline', () => b.agg.coordinator.status().clientCounts.connected === 1);
  c.send('hello', hello('c'));
  assert.equal(((await c.next((m) => m.type === 'welcome')) as WelcomeMsg).clientId, 'c');
  assert.deepEqual(b.agg.coordinator.status().clients.map((x) => x.id).sort(), ['a', 'c'], 'b was forgotten for c');
  const { p: b2 } = await peer(b, t);
  b2.send('hello', hello('b', wb!.resumeToken));
  assert.equal(((await b2.next((m) => m.type === 'error')) as ErrorMsg).code, 'too-many-clients', 'a and c are connected: no room');
});

/**
 * A federation with --idle-after-rounds 1 and short rounds: a 'zombie' peer (welcomed, never uploads unless told) and
 * two honest peers; answer(r) makes the honest peers selected for round r upload, once it is open.
 */
async function idleFederation(t: { after: (f: () => void) => void }, rounds: number) {
  const b = await startBench(2, { ...small, minClients: 2, quorum: 0.5, roundTimeoutS: 2, rounds, idleAfterRounds: 1 });
  t.after(() => b.agg.close());
  const { p: z, welcome } = await peer(b, t, 'zombie');
  const hash = welcome!.proxy.hash;
  const honest = [(await peer(b, t, 'h1')).p, (await peer(b, t, 'h2')).p];
  const answer = async (r: number) => {
    await until(`round ${r} open`, () => (b.agg.coordinator.status().openRound?.round ?? b.agg.coordinator.round) >= r, 15_000);
    await sleep(100);
    for (const h of honest) {
      const round = h.received.find((m) => m.type === 'round' && m.round === r) as RoundMsg | undefined;
      if (round) h.send('logits', logitsFor(round, hash));
    }
  };
  return { b, z, welcome: welcome!, hash, honest, answer };
}

test('idle clients: a selected client that never uploads is dropped from selection and sent nothing, until a late upload', async (t) => {
  const { b, z, hash, honest, answer } = await idleFederation(t, 4);
  const r1 = (await z.next((m) => m.type === 'round' && m.round === 1)) as RoundMsg;
  assert.ok(r1.model, 'round 1: the zombie (the student architecture) was sent the student');
  await sleep(100);
  await answer(1);
  // Round 1 closes at its deadline without the zombie's upload: it missed a round and is idle.
  await until('round 2 open', () => b.agg.coordinator.status().openRound?.round === 2, 15_000);
  await until('round 2 sent', () => honest.every((h) => h.received.some((m) => m.type === 'round' && m.round === 2)));
  const s2 = b.agg.coordinator.status();
  assert.deepEqual(s2.clientCounts, { registered: 3, connected: 3, active: 2, idle: 1, offline: 0 });
  assert.equal(s2.openRound?.selected, 2, 'round 2 selects only the active clients (minClients counts them alone)');
  assert.equal(s2.clients.find((c) => c.id === 'zombie')?.idle, true);
  await sleep(200);
  assert.ok(!z.received.some((m) => m.type === 'round' && m.round === 2), 'the idle client is sent no task and no student');

  // A sign of life: its late round-1 upload is refused as stale, and it is active again for the next round.
  z.send('logits', logitsFor(r1, hash));
  assert.equal(((await z.next((m) => m.type === 'error')) as ErrorMsg).code, 'stale-round');
  assert.equal(b.agg.coordinator.status().clientCounts.idle, 0);
  await answer(2);
  const r3 = (await z.next((m) => m.type === 'round' && m.round === 3, 15_000)) as RoundMsg;
  assert.ok(r3.model, 'selected again, with the student');
  assert.equal(b.agg.coordinator.status().openRound?.selected, 3);
  z.send('logits', logitsFor(r3, hash));
  await z.next((m) => m.type === 'ack' && m.round === 3);
});

test('idle clients: a hello revives an idle id at once only after its first strike; after that it backs off', async (t) => {
  const { b, z, welcome, answer } = await idleFederation(t, 6);
  const idle = () => b.agg.coordinator.status().clientCounts.idle;
  // Strike 1: round 1 passes without its upload. A hello (a restarted client) makes it selectable again at once.
  await answer(1);
  await until('zombie idle', () => idle() === 1, 15_000);
  z.send('hello', hello('zombie', welcome!.resumeToken));
  await z.next((m) => m.type === 'welcome');
  assert.equal(idle(), 0, 'revived by its first hello after one strike');
  // Selected for the next round it opens, it misses that one too: strike 2.
  const next = (await z.next((m) => m.type === 'round' && m.round >= 2, 15_000)) as RoundMsg;
  for (let r = 2; r <= next.round; r++) await answer(r);
  await until('zombie idle again', () => idle() === 1, 15_000);
  // Now a hello costs it nothing to send, so it no longer revives it (back-off: max(round timeout, 60 s), doubling).
  z.send('hello', hello('zombie', welcome!.resumeToken));
  await z.next((m) => m.type === 'welcome');
  assert.equal(idle(), 1, 'a second strike: the hello does not revive it');
  const later = next.round + 1;
  await answer(later);
  await sleep(200);
  assert.ok(!z.received.some((m) => m.type === 'round' && m.round > next.round), 'still idle: sent no task');
});

test("end carries the student's weights only to a client of its architecture; the others get its path", async (t) => {
  const b = await startBench(2, { ...small, minClients: 2, rounds: 1 });
  t.after(() => b.agg.close());
  const { p: same, welcome } = await peer(b, t, 'same-arch');
  const { p: other } = await peer(b, t);
  other.send('hello', { ...hello('other-arch'), model: 'cnn' });
  await other.next((m) => m.type === 'welcome');
  const hash = welcome!.proxy.hash;
  for (const p of [same, other]) p.send('logits', logitsFor((await p.next((m) => m.type === 'round')) as RoundMsg, hash));
  const [a, o] = await Promise.all([same, other].map((p) => p.next((m) => m.type === 'end', 30_000))) as Extract<ServerMsg, { type: 'end' }>[];
  assert.equal(a.model?.kind, 'mlp', 'the mlp client gets the mlp student');
  assert.equal(o.model, undefined, 'the cnn client does not');
  assert.equal(o.studentPath, a.studentPath);
  assert.ok(o.studentPath, 'it gets where to fetch it');
});

test('registry pruning: offline clients past --client-retention-s are forgotten, also after a restart', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fedistill-prune-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const config: Partial<ServerConfig> = { ...small, minClients: 5, stateDir: dir, clientRetentionS: 1 };
  let b = await startBench(2, config);
  const { p: stay } = await peer(b, t, 'stay');
  const { p: leave } = await peer(b, t, 'leave');
  leave.close();
  await until('leave pruned', () => !b.agg.coordinator.status().clients.some((c) => c.id === 'leave'), 10_000);
  assert.deepEqual(b.agg.coordinator.status().clientCounts, { registered: 1, connected: 1, active: 1, idle: 0, offline: 0 });
  stay.close();
  await b.agg.close();
  // The journal's 'forget' record (or the checkpoint) keeps it forgotten; 'stay' is back, offline, until it too lapses.
  b = await startBench(2, { ...config, clientRetentionS: 3600 });
  t.after(() => b.agg.close());
  const ids = b.agg.coordinator.status().clients.map((c) => c.id);
  assert.deepEqual(ids, ['stay']);
});

test('/status lists the --status-clients most recently active clients and counts them all', async (t) => {
  const b = await startBench(2, { ...small, minClients: 50, statusClients: 3, viewerToken: 'viewer-token-0123456789' });
  t.after(() => b.agg.close());
  for (let i = 0; i < 6; i++) {
    await peer(b, t, `p${i}`);
    await sleep(5); // distinct activity times
  }
  const res = await fetch(`${b.url}/status`, { headers: { authorization: 'Bearer viewer-token-0123456789' } });
  assert.equal(res.status, 200);
  const s = (await res.json()) as { clients: { id: string }[]; clientCounts: Record<string, number> };
  assert.deepEqual(s.clients.map((c) => c.id), ['p5', 'p4', 'p3']);
  assert.deepEqual(s.clientCounts, { registered: 6, connected: 6, active: 6, idle: 0, offline: 0 });
});
