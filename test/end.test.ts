import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { FedistillError } from '../client/client.ts';
import { evaluateAccuracy } from '../shared/models/training.ts';
import { weightsToWire } from '../shared/models/wire.ts';
import type { EndMsg } from '../shared/protocol/messages.ts';
import { subset } from '../shared/data/dataset.ts';
import { makeClient, startBench, subsetData, TOKEN, type Bench } from './helpers.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Every client's finished(), and the server's own account, agree on the end; the model is the server's student. */
async function assertCompleted(b: Bench, ends: EndMsg[], rounds: number): Promise<void> {
  const last = b.agg.coordinator.history.at(-1)!;
  const student = weightsToWire(b.agg.coordinator.strategy.model);
  for (const e of ends) {
    assert.equal(e.reason, 'completed');
    assert.equal(e.round, rounds);
    assert.equal(e.studentAccuracy, last.studentAccuracy);
    assert.equal(e.studentPath, '/student/model.json');
    assert.equal(e.model?.version, b.agg.coordinator.strategy.version);
    e.model!.weights.forEach((w, i) => assert.deepEqual(w.data, student[i].data, `weight ${i} is the final student's`));
  }
}

test('ensemble: after the last round every client gets the final student; one that connects later gets it after welcome', async () => {
  const b = await startBench(2, { rounds: 2 });
  after(() => b.agg.close());
  const clients = [0, 1].map((i) => makeClient(b, i));
  after(() => clients.forEach((c) => c.stop()));
  const events: EndMsg[] = [];
  clients[0].on('end', (e) => events.push(e));
  await Promise.all(clients.map((c) => c.start()));
  const ends = await Promise.all(clients.map((c) => c.finished()));
  await assertCompleted(b, ends, 2);
  assert.equal(events.length, 1, "the 'end' event fired once");
  // The student from the end message scores what the server reported.
  const model = clients[0].studentFrom(ends[0])!;
  const validation = subset(b.test, Uint32Array.from({ length: 500 }, (_, i) => i)); // the server's (startBench)
  assert.equal(await evaluateAccuracy(model, validation), ends[0].studentAccuracy);

  // Without a state dir or viewer token the student is served from memory, publicly.
  const card = await (await fetch(`${b.url}${ends[0].studentPath!.replace('model.json', 'model-card.json')}`)).json();
  assert.equal(card.version, 2);
  assert.equal(card.evaluation.studentAccuracy, ends[0].studentAccuracy);

  const late = makeClient(b, 0, { clientId: 'late' });
  after(() => late.stop());
  const w = await late.start();
  assert.equal(w.clientId, 'late');
  await assertCompleted(b, [await late.finished()], 2);
  assert.equal(b.agg.coordinator.round, 2, 'no round ran for the late client');
});

test('fedavg: the end carries the averaged global model', async () => {
  const b = await startBench(2, { strategy: 'fedavg', rounds: 1 });
  after(() => b.agg.close());
  const clients = [0, 1].map((i) => makeClient(b, i));
  after(() => clients.forEach((c) => c.stop()));
  await Promise.all(clients.map((c) => c.start()));
  await assertCompleted(b, await Promise.all(clients.map((c) => c.finished())), 1);
});

test('online: the end comes after `rounds` published student versions', async () => {
  const b = await startBench(2, { strategy: 'online', rounds: 2, publishEverySteps: 6, publishEverySeconds: 60, stepsPerUpload: 6, maxStaleness: 1000 });
  after(() => b.agg.close());
  const clients = [0, 1].map((i) => makeClient(b, i));
  after(() => clients.forEach((c) => c.stop()));
  await Promise.all(clients.map((c) => c.start()));
  const ends = await Promise.all(clients.map((c) => c.finished()));
  await assertCompleted(b, ends, 2);
  assert.equal(b.agg.coordinator.strategy.version, 2);
});

test('shutdown: connected clients are told before the sockets close', async () => {
  // Three needed, two come: no round starts, the server is stopped while they wait.
  const b = await startBench(2, { rounds: 5, minClients: 3 });
  const clients = [0, 1].map((i) => makeClient(b, i));
  after(() => clients.forEach((c) => c.stop()));
  await Promise.all(clients.map((c) => c.start()));
  await b.agg.close();
  const ends = await Promise.all(clients.map((c) => c.finished()));
  assert.deepEqual(ends.map((e) => [e.reason, e.round, e.model]), [['shutdown', 0, undefined], ['shutdown', 0, undefined]]);
});

test('a wrong token and a client id in use: start() and finished() reject with the reason, nothing retries', async () => {
  const b = await startBench(2, { rounds: 5, minClients: 3 });
  after(() => b.agg.close());
  const wrong = makeClient(b, 0, { token: 'not-the-token' });
  after(() => wrong.stop());
  const e1 = await wrong.start().then(() => null, (e: unknown) => e);
  assert.ok(e1 instanceof FedistillError && e1.code === 'unauthorized', String(e1));
  await assert.rejects(wrong.finished(), (e: FedistillError) => e.code === 'unauthorized' && /unauthorized/.test(e.message));
  assert.equal(wrong.connection?.active, false, 'no reconnection after a refused handshake');

  const first = makeClient(b, 0, { clientId: 'same' });
  const second = makeClient(b, 1, { clientId: 'same' });
  after(() => (first.stop(), second.stop()));
  await first.start();
  await assert.rejects(second.start(), (e: FedistillError) => e.code === 'duplicate' && /'same'/.test(e.message));
  await assert.rejects(second.finished(), (e: FedistillError) => e.code === 'duplicate');
  assert.equal(b.agg.coordinator.status().clients.find((c) => c.id === 'same')?.connected, true, 'the first session keeps the id');
});

test('an unreachable server: finished() rejects after giveUpAfterMs, naming the URL and the cause', async () => {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const { train } = await subsetData();
  const lines: string[] = [];
  const c = makeClient({ url, parts: [train] } as Bench, 0, { giveUpAfterMs: 1500, log: (m) => lines.push(m) });
  after(() => c.stop());
  await assert.rejects(c.start(), (e: FedistillError) => e.code === 'unreachable' && e.message.includes(url) && /ECONNREFUSED/.test(e.message));
  await assert.rejects(c.finished(), (e: FedistillError) => e.code === 'unreachable');
  assert.equal(lines.filter((l) => l.startsWith('cannot reach')).length, 1, `the cause is said once, not at every retry: ${lines.join(' | ')}`);
});

test('fedistill client: exit 0 with a final line at the end, exit 1 with one line on a wrong token', async () => {
  const b = await startBench(1, { rounds: 1, minClients: 1 });
  after(() => b.agg.close());
  const run = (token: string) => cli(['client', '--url', b.url, '--token', token, '--id', 'cli', '--model', 'mlp', '--backend', 'wasm', '--data-dir', `${ROOT}data/fashion-mnist-subset`]);
  const bad = await run('wrong-token');
  assert.equal(bad.code, 1, bad.stderr);
  assert.match(bad.stderr.trim(), /^[^\n]*unauthorized[^\n]*$/, 'one line saying why');
  const good = await run(TOKEN);
  assert.equal(good.code, 0, good.stderr);
  const acc = (b.agg.coordinator.history[0].studentAccuracy! * 100).toFixed(2);
  assert.match(good.stdout, new RegExp(`federation complete after round 1: student accuracy ${acc}%; student model: ${b.url}/student/model.json`));
});

function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [`${ROOT}bin/fedistill.mjs`, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const t = setTimeout(() => (child.kill('SIGKILL'), reject(new Error(`fedistill ${args[0]} did not exit: ${stdout}${stderr}`))), 120_000);
    child.on('exit', (code) => (clearTimeout(t), resolve({ code, stdout, stderr })));
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}
