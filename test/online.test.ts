import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { PROTOCOL_VERSION, type RoundMsg, type WelcomeMsg } from '../shared/protocol/messages.ts';
import { encodeMatrix } from '../shared/tensor/logit-codec.ts';
import type { RoundSummary } from '../server/coordinator.ts';
import type { OnlineCoordinator } from '../server/online-coordinator.ts';
import { makeClient, RawPeer, roundsDone, startBench, viewerAuth } from './helpers.ts';

const ONLINE = { strategy: 'online' as const, publishEverySteps: 6, publishEverySeconds: 60, stepsPerUpload: 6, maxStaleness: 1000 };

test('online: student versions keep coming while a slow client is still on its first task', async () => {
  const b = await startBench(3, { ...ONLINE, rounds: 4, minClients: 3 });
  after(() => b.agg.close());
  const acks: { id: string; at: number }[] = [];
  // c2 is an emulated device 40× slower than this machine: its first upload comes long after the others' fourth.
  const clients = [0, 1, 2].map((i) => makeClient(b, i, { slowdown: i === 2 ? 40 : 1 }));
  clients.forEach((c) => c.on('ack', () => acks.push({ id: c.clientId, at: Date.now() })));
  const published: number[] = [];
  b.agg.coordinator.on('round', () => published.push(Date.now()));
  await Promise.all(clients.map((c) => c.start()));
  after(() => clients.forEach((c) => c.stop()));
  await roundsDone(b, 4, 90_000);
  const slowFirst = acks.find((a) => a.id === 'c2')?.at ?? Infinity;
  assert.ok(published[3] < slowFirst, 'version 4 was published before the slow client uploaded anything');
  const fast = acks.filter((a) => a.id !== 'c2').length;
  assert.ok(fast >= 2, `fast clients uploaded ${fast} times`);
  const hist = b.agg.coordinator.history as RoundSummary[];
  assert.deepEqual(hist.map((h) => h.round), [1, 2, 3, 4]);
  assert.ok(hist.every((h) => h.trainSteps! > 0 && h.studentAccuracy !== undefined));
  const stats = (b.agg.coordinator as OnlineCoordinator).onlineStats();
  assert.ok(stats.accepted >= acks.length); // an ack may still be on its way
  assert.equal(stats.histogram.reduce((a, n) => a + n, 0), stats.accepted);
  // Later uploads were computed against older students than the one being trained: staleness shows up.
  assert.ok(stats.staleness.max >= 1, JSON.stringify(stats));
  const status = await (await fetch(`${b.url}/status`, { headers: viewerAuth() })).json();
  assert.ok(status.online.accepted >= stats.accepted);
  const metrics = await (await fetch(`${b.url}/metrics`, { headers: viewerAuth() })).text();
  assert.match(metrics, /^fedistill_online_uploads_accepted \d+/m);
  assert.match(metrics, /^fedistill_online_staleness_mean [\d.]+/m);
});

test('online: an upload too many versions behind is refused with resync and the next task brings the latest student', async () => {
  const b = await startBench(2, { ...ONLINE, rounds: 0, minClients: 2, maxStaleness: 1 });
  after(() => b.agg.close());
  const raw = new RawPeer(b.url);
  raw.send('hello', { type: 'hello', protocol: PROTOCOL_VERSION, clientId: 'laggard', model: 'mlp', numSamples: 100, codec: 'fp32' });
  const welcome = (await raw.next((m) => m.type === 'welcome')) as WelcomeMsg;
  const fast = makeClient(b, 0);
  await fast.start();
  after(() => (fast.stop(), raw.close()));
  const task = (await raw.next((m) => m.type === 'round')) as RoundMsg;
  assert.equal(task.studentVersion, 0);
  assert.equal(task.model?.version, 0, 'a same-architecture client gets the student with its task');
  // The laggard sits on its task while the fast client's uploads move the student two versions on.
  await roundsDone(b, 2, 60_000);
  const rows = task.indices!.length;
  raw.send('logits', { type: 'logits', round: task.round, proxyHash: welcome.proxy.hash, logits: encodeMatrix(new Float32Array(rows * 10), rows, 10, 'fp32'), stats: { trainLoss: 1, trainAccuracy: 0.5, trainSeconds: 1 } });
  const err = await raw.error();
  assert.equal(err.code, 'resync');
  assert.match(err.message, /versions behind/);
  const next = (await raw.next((m) => m.type === 'round')) as RoundMsg;
  assert.ok(next.round > task.round);
  assert.ok(next.studentVersion! >= 2);
  assert.equal(next.model?.version, next.studentVersion, 'the resync task carries the latest student');
  // The refused upload was not taken in and its task is closed: a retry of it is stale.
  raw.send('logits', { type: 'logits', round: task.round, proxyHash: welcome.proxy.hash, logits: encodeMatrix(new Float32Array(rows * 10), rows, 10, 'fp32'), stats: { trainLoss: 1, trainAccuracy: 0.5, trainSeconds: 1 } });
  assert.equal((await raw.error()).code, 'stale-round');
  await roundsDone(b, b.agg.coordinator.round + 1, 60_000);
  assert.ok(b.agg.coordinator.history.some((h) => h.dropped.includes('laggard')), 'the resync is on record in the version summary');
});
