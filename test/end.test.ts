import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Server as IoServer } from 'socket.io';
import { FedistillError, type RoundProgress } from '../client/client.ts';
import type { EndDelivery } from '../server/coordinator.ts';
import { decodeFrame, encodeFrame } from '../shared/protocol/frame-codec.ts';
import { PROTOCOL_VERSION, type HelloMsg, type WelcomeMsg } from '../shared/protocol/messages.ts';
import { evaluateAccuracy } from '../shared/models/training.ts';
import { weightsToWire } from '../shared/models/wire.ts';
import type { EndMsg } from '../shared/protocol/messages.ts';
import { subset } from '../shared/data/dataset.ts';
import { makeClient, RawPeer, runCli, startBench, subsetData, TOKEN, VIEWER_TOKEN, viewerAuth, type Bench } from './helpers.ts';

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

  // Without a state dir the student is served from memory, with the token the clients connect with.
  const cardUrl = `${b.url}${ends[0].studentPath!.replace('model.json', 'model-card.json')}`;
  const card = await (await fetch(cardUrl, { headers: { authorization: `Bearer ${TOKEN}` } })).json();
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

/** A hello as a hand-written client sends it. */
function helloFrom(clientId: string): HelloMsg {
  return { type: 'hello', protocol: PROTOCOL_VERSION, clientId, model: 'mlp', numSamples: 10, codec: 'fp32' };
}

test('the server exits only once every registered client got the end: one offline at the end gets it on return', { timeout: 240_000 }, async () => {
  const server = spawnServer(['--rounds', '1', '--min-clients', '2', '--round-timeout', '120']);
  after(() => server.child.kill('SIGKILL'));
  const [, url] = await server.waitFor(/listening on (http:\/\/[\d.]+:\d+)/);
  const { train } = await subsetData();
  const bench = { url, parts: [train, train] } as Bench;

  // 'away' registers, then drops off before the round (min-clients 2: it alone opens nothing).
  const away = new RawPeer(url);
  await away.connected();
  away.send('hello', helloFrom('away'));
  const { resumeToken } = (await away.next((m) => m.type === 'welcome')) as WelcomeMsg;
  away.close();
  const status = async () => (await fetch(`${url}/status`, { headers: viewerAuth() })).json() as Promise<{ clients: { id: string; connected: boolean }[] }>;
  while ((await status()).clients.find((c) => c.id === 'away')?.connected !== false) await new Promise((r) => setTimeout(r, 50));

  const clients = [0, 1].map((i) => makeClient(bench, i));
  after(() => clients.forEach((c) => c.stop()));
  await Promise.all(clients.map((c) => c.start()));
  const ends = await Promise.all(clients.map((c) => c.finished()));
  assert.deepEqual(ends.map((e) => [e.reason, e.round]), [['completed', 1], ['completed', 1]]);
  await server.waitFor(/1 connected clients sent the final student|2 connected clients sent the final student/);
  assert.doesNotMatch(server.output(), /federation complete; exiting/, 'the server waits for the registered client that was away');

  // It comes back (a reconnect): welcome, then the same end, and only then does the server exit 0.
  const back = makeClient(bench, 0, { clientId: 'away', resumeToken, giveUpAfterMs: 30_000 });
  after(() => back.stop());
  await back.start();
  const end = await back.finished();
  assert.deepEqual([end.reason, end.round, end.model?.version], ['completed', 1, ends[0].model?.version]);
  assert.equal(await server.exit, 0, server.output());
  assert.match(server.output(), /all 3 registered clients were sent the final student/);
  assert.match(server.output(), /federation complete; exiting/);
});

test('after the end: clients that never come back are waited for at most the bound, and end is sent only once', { timeout: 120_000 }, async () => {
  // A finished federation, restarted on its state dir: it is over at once, with c0 and c1 registered and offline.
  const stateDir = mkdtempSync(join(tmpdir(), 'fedistill-end-'));
  const first = await startBench(2, { rounds: 1, stateDir });
  const clients = [0, 1].map((i) => makeClient(first, i));
  after(() => clients.forEach((c) => c.stop()));
  await Promise.all(clients.map((c) => c.start()));
  await Promise.all(clients.map((c) => c.finished()));
  await first.agg.close();

  const lines: string[] = [];
  const b = await startBench(2, { rounds: 1, stateDir, roundTimeoutS: 1 }, (m) => lines.push(m));
  let closing: Promise<void> | null = null;
  after(() => (closing ??= b.agg.close()));
  assert.ok(b.agg.coordinator.status().ended, 'the restored federation is over');
  const [delivery] = (await once(b.agg.coordinator, 'all-told')) as [EndDelivery];
  assert.equal(delivery.reason, 'timeout');
  assert.deepEqual([delivery.told, [...delivery.missing].sort()], [[], ['c0', 'c1']]);
  assert.ok(lines.some((l) => /2 registered clients never got the final student .*: c0, c1/.test(l)), lines.join('\n'));

  // A client that connects now gets the completed end after its welcome; the shutdown then sends it nothing more.
  const peer = new RawPeer(b.url);
  after(() => peer.close());
  await peer.connected();
  peer.send('hello', helloFrom('late'));
  await peer.next((m) => m.type === 'welcome');
  const end = await peer.next((m) => m.type === 'end');
  assert.equal(end.type === 'end' && end.reason, 'completed');
  const closed = new Promise((r) => peer.socket.once('disconnect', r));
  await (closing ??= b.agg.close());
  await closed;
  assert.deepEqual(peer.received.filter((m) => m.type === 'end'), [], 'no second end (no shutdown end after the completed one)');
});

test('replaced only when the server says so: a takeover ends the old session, a plain server close reconnects', { timeout: 120_000 }, async () => {
  const b = await startBench(2, { rounds: 5, minClients: 3 });
  after(() => b.agg.close());
  const first = makeClient(b, 0, { clientId: 'same' });
  after(() => first.stop());
  await first.start();

  // The server closes the (welcomed) connection without a takeover: the client connects again and is welcomed again.
  const rewelcomed = first.once('welcome');
  b.agg.io.of('/').sockets.get(first.connection!.id!)!.disconnect(true);
  await rewelcomed;
  assert.equal(b.agg.coordinator.status().clients.find((c) => c.id === 'same')?.connected, true);

  // A newer session with the resume token takes over: the old one is told (error 'unauthorized'), then closed.
  const errors: string[] = [];
  first.on('server-error', (e) => errors.push(e.code));
  const second = makeClient(b, 1, { clientId: 'same', resumeToken: first.resumeToken });
  after(() => second.stop());
  await second.start();
  await assert.rejects(first.finished(), (e: FedistillError) => e.code === 'replaced' && /took over/.test(e.message));
  assert.deepEqual(errors, ['unauthorized']);
  assert.equal(b.agg.coordinator.status().clients.find((c) => c.id === 'same')?.connected, true, 'the new session holds the id');
});

test("a hello refused with 'internal' is said again after a back-off; the client gives up after giveUpAfterMs", { timeout: 120_000 }, async (t) => {
  // A hand-written server (socket.io, our frames): fails the first `failures` hellos with 'internal', then welcomes.
  const fake = async (failures: number) => {
    const http = createHttpServer();
    const io = new IoServer(http, { transports: ['websocket'] });
    const hellos: string[] = [];
    io.on('connection', (socket) => {
      socket.on('hello', (frame: Uint8Array) => {
        const hello = decodeFrame(frame) as HelloMsg;
        hellos.push(hello.clientId);
        if (hellos.length <= failures) return void socket.emit('error', encodeFrame({ type: 'error', code: 'internal', message: 'internal server error' }));
        const proxy = { id: 'p', hash: 'h', count: 1, shape: [28, 28, 1], numClasses: 10, path: '/proxy/p' };
        const student = { kind: 'mlp', numClasses: 10, inputShape: [28, 28, 1] };
        socket.emit('welcome', encodeFrame({ type: 'welcome', protocol: PROTOCOL_VERSION, clientId: hello.clientId, resumeToken: 'r', serverVersion: 't', strategy: 'ensemble', proxy, student }));
        socket.emit('end', encodeFrame({ type: 'end', reason: 'completed', round: 3 }));
      });
    });
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    t.after(() => {
      io.disconnectSockets(true);
      void io.close();
      http.closeAllConnections();
    });
    return { url: `http://127.0.0.1:${(http.address() as { port: number }).port}`, hellos };
  };
  const { train } = await subsetData();

  const flaky = await fake(2);
  const c = makeClient({ url: flaky.url, parts: [train] } as Bench, 0, { giveUpAfterMs: 30_000 });
  t.after(() => c.stop());
  assert.equal((await c.start()).clientId, 'c0');
  assert.equal((await c.finished()).round, 3);
  assert.equal(flaky.hellos.length, 3, 'two refused hellos, then the one welcomed');

  const broken = await fake(Infinity);
  const d = makeClient({ url: broken.url, parts: [train] } as Bench, 0, { giveUpAfterMs: 1200 });
  t.after(() => d.stop());
  await assert.rejects(d.start(), (e: FedistillError) => e.code === 'refused' && /hello \(internal\)/.test(e.message));
  assert.ok(broken.hellos.length >= 2, `retried: ${broken.hellos.length} hellos`);
});

test('after end, a round still training stops at its next batch and uploads nothing', { timeout: 120_000 }, async () => {
  // Many local epochs: the round is far from done when the server shuts down (end{shutdown}) under it.
  const b = await startBench(1, { rounds: 1, minClients: 1, localEpochs: 200 });
  const c = makeClient(b, 0);
  after(() => c.stop());
  let last: RoundProgress | null = null;
  let afterEnd = 0;
  let ended = false;
  const done: number[] = [];
  c.on('progress', (p) => ((last = p), ended && afterEnd++));
  c.on('end', () => (ended = true));
  c.on('round-done', (r) => done.push(r.round));
  const training = new Promise<void>((resolve) => c.on('progress', () => resolve()));
  await c.start();
  await training;
  await b.agg.close();
  assert.equal((await c.finished()).reason, 'shutdown');
  await c.idle();
  const p = last as RoundProgress | null;
  assert.ok(p && p.phase === 'train' && p.done < p.total, `training stopped early: ${JSON.stringify(p)}`);
  assert.equal(afterEnd, 0, 'no batch trained after the end');
  assert.deepEqual(done, [], 'nothing uploaded');
});

/** `fedistill server` on a free port and the committed subset, its output kept for waitFor. */
function spawnServer(args: string[]) {
  const child = spawn(process.execPath, [`${ROOT}bin/fedistill.mjs`, 'server', '--port', '0', '--token', TOKEN, '--viewer-token', VIEWER_TOKEN, '--student', 'mlp',
    '--data-dir', `${ROOT}data/fashion-mnist-subset`, '--proxy-subset', '200', '--local-epochs', '1', '--distill-epochs', '1', '--backend', 'wasm', ...args],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const waitFor = (re: RegExp) =>
    new Promise<RegExpMatchArray>((resolve, reject) => {
      const t = setInterval(() => {
        const m = re.exec(out);
        if (m) (clearInterval(t), resolve(m));
        else if (child.exitCode !== null) (clearInterval(t), reject(new Error(`server exited (${child.exitCode}) before ${re}:\n${out}`)));
      }, 50);
    });
  return { child, exit, output: () => out, waitFor };
}

const cli = (args: string[]) => runCli(args, {}, 120_000);

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}
