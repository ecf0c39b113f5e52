import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { io, type Socket } from 'socket.io-client';
import { createAggregator } from '../server/app.ts';
import type { RoundSummary } from '../server/coordinator.ts';
import { resolveRepoPath } from '../datasets/fashion-mnist.ts';
import { VIEWER_EVENT_ALLOWANCE, type ClientsUpdate, type DashboardSnapshot } from '../server/dashboard/feed.ts';
import { PROTOCOL_VERSION } from '../shared/protocol/messages.ts';
import { encodeFrame } from '../shared/protocol/frame-codec.ts';
import { makeClient, RawPeer, roundsDone, startBench, TOKEN, VIEWER_TOKEN } from './helpers.ts';

const VIEWER = 'viewer-token-9876543210';

function viewer(url: string, auth: Record<string, unknown> = {}): Socket {
  return io(`${url}/dashboard`, { auth, transports: ['websocket'], reconnection: false, forceNew: true });
}

/** Every event a viewer receives, in order. */
function record(s: Socket): { event: string; data: unknown }[] {
  const got: { event: string; data: unknown }[] = [];
  s.onAny((event: string, data: unknown) => got.push({ event, data }));
  return got;
}

function next<T>(s: Socket, event: string, timeoutMs = 10_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no '${event}' from the dashboard in ${timeoutMs} ms`)), timeoutMs);
    s.once(event, (d: T) => (clearTimeout(t), resolve(d)));
  });
}

function refused(s: Socket): Promise<Error> {
  return new Promise((resolve, reject) => {
    s.once('connect_error', resolve);
    s.once('snapshot', () => reject(new Error('a viewer without the right token got a snapshot')));
  });
}

async function until(pred: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const json = <T>(v: T): T => JSON.parse(JSON.stringify(v));

test('dashboard: live feed over /dashboard, viewer token, read-only', async (t) => {
  const b = await startBench(2, { viewerToken: VIEWER });
  after(() => b.agg.close());

  await t.test('no or a wrong viewer token is refused; the right one gets a snapshot without secrets', async () => {
    for (const auth of [{}, { viewerToken: 'nope' }, { viewerToken: VIEWER.slice(0, -1) + 'x' }, { token: TOKEN }]) {
      const s = viewer(b.url, auth);
      const err = await refused(s);
      assert.match(err.message, /unauthorized/);
      s.close();
    }
    const s = viewer(b.url, { viewerToken: VIEWER });
    const snap = await next<DashboardSnapshot>(s, 'snapshot');
    s.close();
    assert.equal(snap.server.strategy, 'ensemble');
    assert.equal(snap.server.student, 'mlp');
    assert.deepEqual(snap.history, []);
    assert.equal(snap.tasks, null);
    assert.equal((snap.server.config as { viewerToken: string }).viewerToken, '(set)');
    assert.equal((snap.server.config as { token: string }).token, '(set)');
    const text = JSON.stringify(snap);
    assert.ok(!text.includes(VIEWER) && !text.includes(TOKEN), 'no token reaches a viewer');
    // The clients' socket.io namespace still wants the client token, not the viewer's.
    const wrong = new RawPeer(b.url, VIEWER);
    await assert.rejects(wrong.connected(), /unauthorized/);
    wrong.close();
  });

  await t.test('two rounds with two real clients: round-start, upload, phase, round and clients events match the coordinator', async () => {
    const s = viewer(b.url, { viewerToken: VIEWER });
    const got = record(s);
    await next(s, 'snapshot');
    const clients = [0, 1].map((i) => makeClient(b, i));
    await Promise.all(clients.map((c) => c.start()));
    after(() => clients.forEach((c) => c.stop()));
    await roundsDone(b, 2);
    await until(() => got.filter((g) => g.event === 'round').length === 2, 'two round events');
    const history = b.agg.coordinator.history;
    const of = <T>(e: string) => got.filter((g) => g.event === e).map((g) => g.data as T);

    assert.deepEqual(of<RoundSummary>('round'), json(history));
    const starts = of<{ round: number; at: number; deadline: number; selected: string[] }>('round-start');
    assert.deepEqual(starts.map((r) => r.round), [1, 2]);
    assert.ok(starts.every((r) => r.deadline > r.at && r.selected.length === 2));
    const uploads = of<{ round: number; clientId: string; bytes: number; at: number }>('upload');
    assert.equal(uploads.length, 4);
    for (const r of history) {
      const mine = uploads.filter((u) => u.round === r.round);
      assert.deepEqual(mine.map((u) => u.clientId).sort(), ['c0', 'c1']);
      assert.equal(mine.reduce((n, u) => n + u.bytes, 0), r.uplinkBytes);
    }
    const phases = of<{ round: number; phase: string; at: number }>('phase');
    for (const r of [1, 2]) {
      assert.deepEqual(phases.filter((p) => p.round === r).map((p) => p.phase), ['closed', 'aggregate', 'evaluate', 'done']);
    }
    // Events come in causal order: a round's uploads after its start, its summary after its phases.
    const order = got.map((g) => `${g.event}:${(g.data as { round?: number }).round ?? ''}`);
    assert.ok(order.indexOf('round-start:2') > order.lastIndexOf('round:1'));
    assert.ok(order.indexOf('upload:2') > order.indexOf('round-start:2'));

    await until(() => {
      const last = of<ClientsUpdate>('clients').at(-1);
      return !!last && last.round === 2 && last.clients.filter((c) => c.lastUploadRound === 2).length === 2;
    }, 'a client list after round 2');
    const list = of<ClientsUpdate>('clients').at(-1)!;
    assert.deepEqual(list.clients.map((c) => c.id).sort(), ['c0', 'c1']);
    const status = b.agg.coordinator.status();
    // Both were connected while the rounds ran; after the last round the federation ends and they leave.
    assert.ok(of<ClientsUpdate>('clients').some((u) => u.clients.filter((c) => c.connected).length === 2), 'both connected');
    await until(() => of<ClientsUpdate>('clients').at(-1)!.clients.every((c) => !c.connected), 'clients gone after the end');
    for (const c of list.clients) {
      assert.equal(c.model, 'mlp');
      assert.equal(c.numSamples, b.parts[Number(c.id.slice(1))].count);
      assert.ok(c.lastUploadAt && Date.parse(c.lastUploadAt) >= history[1].startedAt);
      assert.equal(c.backend, status.clients.find((x) => x.id === c.id)!.backend);
      assert.ok(!('resumeToken' in c));
    }
    // Client-list pushes are throttled: far fewer than the events that trigger them.
    const pushes = of<ClientsUpdate>('clients');
    for (let i = 1; i < pushes.length; i++) assert.ok(pushes[i].at - pushes[i - 1].at >= 240, 'at most one client list per 250 ms');

    // A new viewer's snapshot holds the same history and the last round's timeline.
    const late = viewer(b.url, { viewerToken: VIEWER });
    const snap = await next<DashboardSnapshot>(late, 'snapshot');
    late.close();
    assert.deepEqual(snap.history, json(history));
    assert.equal(snap.timeline?.round, 2);
    assert.deepEqual(snap.timeline!.events.filter((e) => e.kind === 'upload').map((e) => e.clientId).sort(), ['c0', 'c1']);
    assert.deepEqual(snap.timeline!.events.filter((e) => e.kind !== 'upload').map((e) => e.kind), ['closed', 'aggregate', 'evaluate', 'done']);
    assert.equal(snap.status.clients.length, 2);

    // The backend a hello names shows up in the list (rounds are over: this peer joins none).
    const probe = new RawPeer(b.url);
    probe.send('hello', { type: 'hello', protocol: PROTOCOL_VERSION, clientId: 'probe', model: 'cnn', numSamples: 7, codec: 'fp32', backend: 'webgpu' });
    await probe.next((m) => m.type === 'welcome');
    await until(() => of<ClientsUpdate>('clients').some((u) => u.clients.some((c) => c.id === 'probe' && c.backend === 'webgpu' && c.model === 'cnn')), 'the probe in a client list');
    probe.close();
    await until(() => of<ClientsUpdate>('clients').some((u) => u.clients.some((c) => c.id === 'probe' && !c.connected)), 'the probe shown offline');
    s.close();
  });

  await t.test('a viewer that sends events changes nothing, gets no answer, and is disconnected after a few', async () => {
    const s = viewer(b.url, { viewerToken: VIEWER });
    const got = record(s);
    await next(s, 'snapshot');
    const before = json({ clients: b.agg.coordinator.status().clients, history: b.agg.coordinator.history, round: b.agg.coordinator.round });
    // Nothing answers an ack.
    await assert.rejects(s.timeout(300).emitWithAck('snapshot'));
    const disconnected = next<string>(s, 'disconnect');
    const hello = encodeFrame({ type: 'hello', protocol: PROTOCOL_VERSION, clientId: 'intruder', model: 'mlp', numSamples: 10, codec: 'fp32' });
    const events: [string, unknown][] = [
      ['hello', hello],
      ['logits', encodeFrame({ type: 'logits', round: 3, proxyHash: 'x', logits: {}, stats: {} })],
      ['weights', new Uint8Array(16)],
      ['round', { round: 99 }],
      ['stop', null],
      ['snapshot', {}],
      ['clients', { clients: [] }],
    ];
    for (let i = 0; i <= VIEWER_EVENT_ALLOWANCE; i++) s.emit(...events[i % events.length]);
    assert.equal(await disconnected, 'io server disconnect');
    assert.deepEqual(json({ clients: b.agg.coordinator.status().clients, history: b.agg.coordinator.history, round: b.agg.coordinator.round }), before);
    assert.deepEqual(got.map((g) => g.event), ['snapshot'], 'a viewer gets nothing back for what it sends');
  });

  await t.test('/ serves the dashboard page (or says the browser assets are not built)', async () => {
    const res = await fetch(`${b.url}/`);
    if (existsSync(resolveRepoPath('dist', 'browser', 'dashboard.html'))) {
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /text\/html/);
      const html = await res.text();
      assert.match(html, /\/sdk\/dashboard\.js/);
      assert.match(html, /id="student-acc"/);
    } else {
      assert.equal(res.status, 503);
      assert.match(await res.text(), /browser assets are not built .*run 'npm run build'/);
    }
  });
});

test('dashboard: after a restart on the same state dir the snapshot holds the restored history', async () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'fedistill-dash-'));
  const b = await startBench(2, { rounds: 1, stateDir });
  const clients = [0, 1].map((i) => makeClient(b, i));
  await Promise.all(clients.map((c) => c.start()));
  await roundsDone(b, 1);
  const history = json(b.agg.coordinator.history);
  clients.forEach((c) => c.stop());
  await b.agg.close();

  const again = createAggregator({
    proxy: b.proxy,
    validation: b.test,
    log: () => {},
    config: { host: '127.0.0.1', port: 0, token: TOKEN, viewerToken: VIEWER, student: 'mlp', minClients: 2, proxySubset: 200, rounds: 1, stateDir },
  });
  after(() => again.close());
  const url = await again.start();
  const s = viewer(url, { viewerToken: VIEWER });
  const snap = await next<DashboardSnapshot>(s, 'snapshot');
  s.close();
  assert.ok(snap.history.length >= 1);
  assert.deepEqual(snap.history, history);
  assert.equal(snap.status.round, 1);
  assert.deepEqual(snap.status.clients.map((c) => [c.id, c.connected]).sort(), [
    ['c0', false],
    ['c1', false],
  ]);
  assert.equal(snap.timeline, null);
});

test('dashboard: online strategy: uploads carry staleness, versions arrive as round events, tasks come from the config', async () => {
  const tasks = [
    [0, 1, 2, 3, 4],
    [5, 6, 7, 8, 9],
  ];
  const b = await startBench(2, { strategy: 'online', rounds: 2, publishEverySteps: 6, publishEverySeconds: 60, stepsPerUpload: 6, maxStaleness: 1000, tasks });
  after(() => b.agg.close());
  const s = viewer(b.url, { viewerToken: VIEWER_TOKEN });
  const got = record(s);
  const snap = await next<DashboardSnapshot>(s, 'snapshot');
  assert.deepEqual(snap.tasks, tasks);
  const clients = [0, 1].map((i) => makeClient(b, i));
  await Promise.all(clients.map((c) => c.start()));
  after(() => clients.forEach((c) => c.stop()));
  await roundsDone(b, 2, 90_000);
  await until(() => got.filter((g) => g.event === 'round').length >= 2, 'two version events');
  s.close();
  const of = <T>(e: string) => got.filter((g) => g.event === e).map((g) => g.data as T);
  assert.deepEqual(of<RoundSummary>('round').slice(0, 2), json(b.agg.coordinator.history.slice(0, 2)));
  const uploads = of<{ round: number; clientId: string; staleness: number }>('upload');
  assert.ok(uploads.length >= 2);
  assert.ok(uploads.every((u) => u.round >= 1 && Number.isInteger(u.staleness) && u.staleness >= 0));
  // Version 1's window: its uploads, then the evaluation of the published version.
  assert.ok(of<{ round: number; phase: string }>('phase').some((p) => p.round === 1 && p.phase === 'done'));
  assert.ok(of<{ round: number }>('round-start').some((r) => r.round === 1));
});
