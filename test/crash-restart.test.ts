import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FedistillClient, type RoundDone } from '../client/client.ts';
import { subset } from '../shared/data/dataset.ts';
import { splitForFederation } from '../shared/data/federated-split.ts';
import { encodeFrame } from '../shared/protocol/frame-codec.ts';
import { PROTOCOL_VERSION, type RoundMsg, type WelcomeMsg } from '../shared/protocol/messages.ts';
import { encodeMatrix } from '../shared/tensor/logit-codec.ts';
import { RawPeer, subsetData, TOKEN, viewerAuth } from './helpers.ts';

const FIXTURE = fileURLToPath(new URL('./fixtures/server-process.ts', import.meta.url));

interface ServerProcess {
  child: ChildProcess;
  url: string;
  logs: string[];
}

function startServer(port: number, stateDir: string, config: object): Promise<ServerProcess> {
  const child = fork(FIXTURE, [String(port), stateDir, JSON.stringify(config)], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const logs: string[] = [];
  after(() => child.kill('SIGKILL'));
  return new Promise((resolve, reject) => {
    child.on('message', (m: { type: string; line?: string; url?: string }) => {
      if (m.type === 'log') logs.push(m.line!);
      if (m.type === 'listening') resolve({ child, url: m.url!, logs });
    });
    child.once('exit', (code) => reject(new Error(`server process exited with ${code}: ${logs.join('\n')}`)));
  });
}

async function status(url: string): Promise<any> {
  return (await fetch(`${url}/status`, { headers: viewerAuth() })).json();
}

async function until<T>(what: string, f: () => Promise<T | undefined | false>, timeoutMs = 60_000): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await f().catch(() => undefined);
    if (v) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A participant whose answers the test times: registers over a raw socket and uploads plausible logits on demand. */
function rawParticipant(url: string, resumeToken?: string) {
  const peer = new RawPeer(url);
  peer.send('hello', { type: 'hello', protocol: PROTOCOL_VERSION, clientId: 'raw', model: 'mlp', numSamples: 300, codec: 'fp32', resumeToken });
  return {
    peer,
    welcome: peer.next((m) => m.type === 'welcome') as Promise<WelcomeMsg>,
    nextRound: () => peer.next((m) => m.type === 'round', 60_000) as Promise<RoundMsg>,
    /** Sends the upload; returns its frame size (what the server must count for it). */
    answer(round: RoundMsg, hash: string): number {
      const rows = round.indices!.length;
      const logits = Float32Array.from({ length: rows * 10 }, (_, i) => ((i * 7919) % 13) / 4 - 1.5);
      const frame = encodeFrame({ type: 'logits', round: round.round, proxyHash: hash, logits: encodeMatrix(logits, rows, 10, 'fp32'), stats: { trainLoss: 1, trainAccuracy: 0.5, trainSeconds: 0.1 } });
      peer.sendRaw('logits', frame);
      return frame.byteLength;
    },
  };
}

test('SIGKILL mid-round: the restarted server resumes the open round with the uploads it had accepted, none lost or counted twice', async () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'fedistill-crash-'));
  const config = { rounds: 3, minClients: 3, roundTimeoutS: 120, quorum: 1 };
  let srv = await startServer(0, stateDir, config);
  const port = Number(new URL(srv.url).port);

  const { train } = await subsetData();
  const split = splitForFederation(train, { proxySize: 400, numClients: 3, partition: 'dirichlet', alpha: 0.5, shardsPerClient: 2, seed: 3 });
  const done: RoundDone[][] = [[], []];
  const clients = [0, 1].map((i) => {
    const c = new FedistillClient({ url: srv.url, token: TOKEN, clientId: `c${i}`, model: 'mlp', data: subset(train, split.clients[i]), log: () => {} });
    c.on('round-done', (r) => done[i].push(r));
    return c;
  });
  after(() => clients.forEach((c) => c.stop()));
  const duplicates: string[] = [];
  clients[0].on('server-error', (e) => duplicates.push(e.code));

  let raw = rawParticipant(srv.url);
  const { proxy: { hash }, resumeToken } = await raw.welcome;
  await Promise.all(clients.map((c) => c.start()));
  raw.answer(await raw.nextRound(), hash);
  await until('round 1', async () => (await status(srv.url)).round >= 1);

  // Round 2: both real clients upload and are acked; the raw participant holds its answer.
  const r2 = await raw.nextRound();
  assert.equal(r2.round, 2);
  await until('2 accepted uploads in round 2', async () => (await status(srv.url)).openRound?.received === 2);
  const c1Bytes = done[1].find((r) => r.round === 2)!.uploadBytes;
  const c0Bytes = done[0].find((r) => r.round === 2)!.uploadBytes;
  clients[1].stop(); // c1 leaves for good: its accepted upload exists only on the server's side now
  raw.peer.close();
  srv.child.kill('SIGKILL');
  await new Promise((r) => srv.child.once('exit', r));

  // Restarted with another row rule (the shuffle's windows, not the student's least-sure rows), it would recompute other
  // rows for round 2: the journaled ones are what the accepted uploads answered, so those are asked for again.
  srv = await startServer(port, stateDir, { ...config, uncertainRows: 0 });
  assert.ok(srv.logs.some((l) => /round 2 was open at the crash; resuming it with 2 of 3 uploads already accepted/.test(l)), srv.logs.join('\n'));
  let st = await status(srv.url);
  assert.equal(st.round, 1);
  assert.equal(st.studentVersion, 1, 'student weights of round 1 restored');
  assert.deepEqual(
    st.clients.map((c: { id: string }) => c.id).sort(),
    ['c0', 'c1', 'raw'],
  );

  // The raw participant reconnects and gets round 2's task again (not a new round); c0 reconnects by itself.
  raw = rawParticipant(srv.url, resumeToken); // a known id comes back with the resume token its welcome gave
  await raw.welcome;
  const again = await raw.nextRound();
  assert.equal(again.round, 2);
  assert.deepEqual(again.indices, r2.indices, 'the resumed round asks for the same proxy rows');
  await until('the journaled rows won over the recomputed ones', async () => srv.logs.some((l) => /round 2: the rows recomputed on resuming differ from the journaled ones/.test(l)));
  const rawBytes = raw.answer(again, hash);
  await until('round 2 done and checkpointed after restart', async () => readdirSync(stateDir).includes('round-00000002.ckpt'));
  st = await status(srv.url);
  const round2 = st.history[1];
  assert.equal(round2.round, 2);
  assert.equal(round2.status, 'completed');
  assert.equal(round2.participants, 3, 'c1 uploaded before the crash and is gone: its upload survived in the journal');
  assert.equal(round2.uplinkBytes, c0Bytes + c1Bytes + rawBytes, 'each accepted upload counted exactly once');
  assert.equal(done[0].filter((r) => r.round === 2).length, 1, 'c0 was not asked to redo round 2');
  assert.deepEqual(duplicates, []);
  raw.peer.close();
  srv.child.kill('SIGKILL');
});

test('SIGKILL during online training: the restarted server has every accepted upload exactly once and the last student version', async () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'fedistill-crash-online-'));
  // Two uploads make a version (6 steps owed per upload, a version every 12 steps).
  const config = { strategy: 'online', rounds: 0, minClients: 2, stepsPerUpload: 6, publishEverySteps: 12, publishEverySeconds: 600, roundTimeoutS: 120 };
  let srv = await startServer(0, stateDir, config);
  const port = Number(new URL(srv.url).port);
  const resumeTokens: Record<string, string> = {};
  const hello = (peer: RawPeer, id: string) => peer.send('hello', { type: 'hello', protocol: PROTOCOL_VERSION, clientId: id, model: 'mlp', numSamples: 300, codec: 'fp32', resumeToken: resumeTokens[id] });
  const peers = ['p0', 'p1'].map((id) => {
    const peer = new RawPeer(srv.url);
    hello(peer, id);
    return peer;
  });
  const welcomes = (await Promise.all(peers.map((p) => p.next((m) => m.type === 'welcome')))) as WelcomeMsg[];
  welcomes.forEach((w) => (resumeTokens[w.clientId] = w.resumeToken));
  const hash = welcomes[0].proxy.hash;
  const upload = (peer: RawPeer, task: RoundMsg) => {
    const rows = task.indices!.length;
    const logits = Float32Array.from({ length: rows * 10 }, (_, i) => ((i * 31) % 17) / 5 - 1.6);
    const frame = encodeFrame({ type: 'logits', round: task.round, proxyHash: hash, logits: encodeMatrix(logits, rows, 10, 'fp32'), stats: { trainLoss: 1, trainAccuracy: 0.5, trainSeconds: 0.1 } });
    peer.sendRaw('logits', frame);
    return peer.next((m) => m.type === 'ack' || m.type === 'error');
  };
  const task = (peer: RawPeer) => peer.next((m) => m.type === 'round', 60_000) as Promise<RoundMsg>;
  assert.equal((await upload(peers[0], await task(peers[0]))).type, 'ack');
  assert.equal((await upload(peers[1], await task(peers[1]))).type, 'ack');
  await until('student v1 checkpointed', async () => readdirSync(stateDir).includes('round-00000001.ckpt'));
  // A third upload lands after v1's checkpoint: it lives only in the journal when the server dies.
  const third = await task(peers[0]);
  const ack = await upload(peers[0], third);
  assert.equal(ack.type, 'ack');
  const before = await status(srv.url);
  assert.equal(before.online.accepted, 3);
  assert.equal(before.studentVersion, 1);
  peers.forEach((p) => p.close());
  const firstLogs = srv.logs;
  srv.child.kill('SIGKILL');
  await new Promise((r) => srv.child.once('exit', r));

  srv = await startServer(port, stateDir, config);
  assert.ok(srv.logs.some((l) => /online: student v1, 3 uploads taken in so far/.test(l)), srv.logs.join("\n") + "\nBEFORE:\n" + firstLogs.join("\n"));
  const afterRestart = await status(srv.url);
  assert.equal(afterRestart.studentVersion, 1);
  assert.equal(afterRestart.online.accepted, 3, 'nothing accepted lost, nothing counted twice');
  assert.deepEqual(afterRestart.online.histogram.reduce((a: number, n: number) => a + n, 0), 3);
  // p0 comes back: its acked upload for the old task is not taken in again, and new tasks never reuse a ticket.
  const p0 = new RawPeer(srv.url);
  hello(p0, 'p0');
  const p1 = new RawPeer(srv.url);
  hello(p1, 'p1');
  const retry = await upload(p0, third);
  assert.equal(retry.type, 'error');
  assert.equal((retry as { code: string }).code, 'stale-round');
  const fresh = await task(p0);
  assert.ok(fresh.round > third.round, `ticket ${fresh.round} after ${third.round}`);
  assert.equal((await status(srv.url)).online.accepted, 3);
  assert.equal((await upload(p0, fresh)).type, 'ack');
  await until('student v2 after restart', async () => (await status(srv.url)).studentVersion >= 2);
  assert.equal((await status(srv.url)).online.accepted, 4);
  p0.close();
  p1.close();
  srv.child.kill('SIGKILL');
});
