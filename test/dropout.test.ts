import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RawPeer, subsetData, TOKEN, makeClient, roundsDone, startBench } from './helpers.ts';
import { PROTOCOL_VERSION } from '../shared/protocol/messages.ts';
import { splitForFederation } from '../shared/data/federated-split.ts';

test('a client killed mid-round does not stall the round', async () => {
  const timeoutS = 60;
  const b = await startBench(3, { rounds: 2, minClients: 3, roundTimeoutS: timeoutS, quorum: 0.5 });
  after(() => b.agg.close());
  // The victim is a separate process holding client 2's partition (same split as startBench).
  const { train } = await subsetData();
  const split = splitForFederation(train, { proxySize: 400, numClients: 3, partition: 'dirichlet', alpha: 0.5, shardsPerClient: 2, seed: 3 });
  const rowsFile = join(mkdtempSync(join(tmpdir(), 'fedistill-')), 'rows.json');
  writeFileSync(rowsFile, JSON.stringify(Array.from(split.clients[2])));
  const victim = fork(fileURLToPath(new URL('./fixtures/client-process.ts', import.meta.url)), [b.url, TOKEN, 'victim', rowsFile], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  after(() => victim.kill('SIGKILL'));
  await new Promise<void>((r) => victim.once('message', () => r()));

  // SIGKILL it the moment round 1 is sent out: its local training can't have finished, so it never uploads.
  b.agg.coordinator.once('round-start', (_round: number, selected: string[]) => {
    assert.ok(selected.includes('victim'));
    victim.kill('SIGKILL');
    b.agg.config.minClients = 2; // let round 2 start with the survivors
  });
  const clients = [0, 1].map((i) => makeClient(b, i));
  await Promise.all(clients.map((c) => c.start()));
  after(() => clients.forEach((c) => c.stop()));

  await roundsDone(b, 2, 30_000);
  const [r1, r2] = b.agg.coordinator.history;
  assert.equal(r1.status, 'completed');
  assert.equal(r1.selected, 3);
  assert.equal(r1.participants, 2);
  assert.deepEqual(r1.dropped, ['victim']);
  assert.ok(r1.seconds < timeoutS / 2, `round 1 took ${r1.seconds} s: it waited for the dead client`);
  // Round 2 goes on with the two live clients only.
  assert.equal(r2.selected, 2);
  assert.equal(r2.participants, 2);
});

test('a round below quorum at the deadline leaves the student unchanged and the server goes on', async () => {
  const b = await startBench(2, { rounds: 1, minClients: 2, roundTimeoutS: 2, quorum: 1 });
  after(() => b.agg.close());
  // One real client; the other registers, stays connected and never answers (a stuck device).
  const stuck = new RawPeer(b.url);
  stuck.send('hello', { type: 'hello', protocol: PROTOCOL_VERSION, clientId: 'stuck', model: 'mlp', numSamples: 10, codec: 'fp16' });
  await stuck.next((m) => m.type === 'welcome');
  const live = makeClient(b, 0);
  await live.start();
  after(() => (live.stop(), stuck.close()));
  const v0 = b.agg.coordinator.strategy.version;
  await roundsDone(b, 1, 20_000);
  const r = b.agg.coordinator.history[0];
  assert.equal(r.status, 'no-quorum');
  assert.equal(r.participants, 1);
  assert.equal(b.agg.coordinator.strategy.version, v0);
  assert.equal((await fetch(`${b.url}/healthz`)).status, 200);
});

test('a client whose connection drops mid-round reconnects, re-registers and its upload counts once', async () => {
  const b = await startBench(2, { rounds: 2, minClients: 2, roundTimeoutS: 60 });
  after(() => b.agg.close());
  const clients = [0, 1].map((i) => makeClient(b, i));
  const refusals: string[] = [];
  clients[0].on('server-error', (e) => refusals.push(e.code));
  await Promise.all(clients.map((c) => c.start()));
  after(() => clients.forEach((c) => c.stop()));
  let reconnected = 0;
  clients[0].on('welcome', () => reconnected++);
  // Cut client 0's transport as round 1 goes out (not a clean disconnect: socket.io reconnects by itself, here after
  // 1.5 s, so the client finishes training and uploads while offline).
  const manager = clients[0].connection!.io;
  manager.reconnectionDelay(1500).reconnectionDelayMax(1500).randomizationFactor(0);
  let cut = false;
  clients[0].connection!.on('round', () => {
    if (cut) return;
    cut = true; // the client has queued the round: now drop the link under it
    setTimeout(() => (manager as unknown as { engine: { close(): void } }).engine.close(), 0);
  });
  await roundsDone(b, 2);
  assert.ok(reconnected >= 1, 'client 0 re-registered');
  assert.deepEqual(b.agg.coordinator.history.map((r) => r.participants), [2, 2]);
  assert.deepEqual(refusals, [], 'no duplicate or stale uploads were sent');
});
