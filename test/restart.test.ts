import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAggregator } from '../server/app.ts';
import type * as tf from '@tensorflow/tfjs';
import { weightsToWire } from '../shared/models/wire.ts';
import { exportOptimizer } from '../server/strategies/optimizer-state.ts';
import { linesLogger } from '../server/logger.ts';
import { makeClient, roundsDone, startBench, TOKEN } from './helpers.ts';

test('a server restarted on the same state dir continues from its last completed round', async () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'fedistill-state-'));
  const config = { rounds: 2, stateDir };
  const b = await startBench(2, config);
  const clients = [0, 1].map((i) => makeClient(b, i));
  await Promise.all(clients.map((c) => c.start()));
  after(() => clients.forEach((c) => c.stop()));
  await roundsDone(b, 2);
  const before = weightsToWire(b.agg.coordinator.strategy.model);
  const adam = (agg: typeof b.agg) => exportOptimizer((agg.coordinator.strategy as unknown as { student: { optimizer: tf.Optimizer } }).student.optimizer);
  const adamBefore = await adam(b.agg);
  // A checkpoint holds no unset fields (the codec leaves out undefined values): compare with those left out here too.
  const historyBefore = b.agg.coordinator.history.map((r) => Object.fromEntries(Object.entries(r).filter(([, v]) => v !== undefined)));
  const port = Number(new URL(b.url).port);
  await b.agg.close();
  // The 2 configured rounds were done: each client was sent the end with the final student, and stopped.
  const ends = await Promise.all(clients.map((c) => c.finished()));
  assert.deepEqual(ends.map((e) => [e.reason, e.round, e.model?.version]), [['completed', 2, 2], ['completed', 2, 2]]);
  assert.deepEqual(readdirSync(stateDir).filter((f) => f.endsWith('.ckpt')).sort(), ['round-00000001.ckpt', 'round-00000002.ckpt']);

  // A torn newest checkpoint (as left by a crash mid-write without rename safety) is detected and skipped.
  writeFileSync(join(stateDir, 'round-00000003.ckpt'), new Uint8Array([0x85, 0xa5, 0x6d, 0x61, 0x67]));
  const logs: string[] = [];
  const again = createAggregator({
    proxy: b.proxy,
    validation: b.test,
    log: (m) => logs.push(m),
    config: { host: '127.0.0.1', port, token: TOKEN, student: 'mlp', minClients: 2, proxySubset: 200, localEpochs: 1, distillEpochs: 2, rounds: 3, stateDir },
  });
  after(() => again.close());
  const url = await again.start();
  assert.ok(logs.some((l) => /round-00000003\.ckpt skipped/.test(l)), logs.join('\n'));
  assert.equal(again.coordinator.round, 2);
  assert.equal(again.coordinator.strategy.version, 2);
  const restored = weightsToWire(again.coordinator.strategy.model);
  restored.forEach((w, i) => assert.deepEqual(w.data, before[i].data));
  // Adam's moments and step count come back too, so the next round's updates are the ones an uninterrupted server makes.
  const adamAfter = await adam(again);
  assert.ok(adamBefore.length > 1);
  assert.deepEqual(adamAfter.map((w) => w.data), adamBefore.map((w) => w.data));
  assert.deepEqual(again.coordinator.history, historyBefore);
  // New sessions of the same clients present the resume tokens the first server issued (it kept only their hashes);
  // round 3 runs, rounds 1-2 are not redone.
  const again2 = [0, 1].map((i) => makeClient({ ...b, url }, i, { resumeToken: clients[i].resumeToken }));
  after(() => again2.forEach((c) => c.stop()));
  const welcomes = await Promise.all(again2.map((c) => c.start()));
  assert.deepEqual(welcomes.map((w) => w.resumeToken), clients.map((c) => c.resumeToken), 'the restarted server recognised the tokens');
  await roundsDone({ ...b, agg: again, url }, 3);
  assert.equal(again.coordinator.history[2].participants, 2);
  assert.deepEqual(again.coordinator.history.map((r) => r.round), [1, 2, 3]);
  assert.equal(again.coordinator.strategy.version, 3);
});

test('checkpoints are sealed: a flipped byte is detected and the previous one is used', async () => {
  const { FileCheckpointStore } = await import('../server/state/checkpoint-store.ts');
  const { readFileSync } = await import('node:fs');
  const dir = mkdtempSync(join(tmpdir(), 'fedistill-ckpt-'));
  const logs: string[] = [];
  const store = new FileCheckpointStore(dir, linesLogger((m) => logs.push(m)), 5);
  await store.save(1, { round: 1, w: new Float32Array([1, 2, 3]) });
  const file2 = await store.save(2, { round: 2, w: new Float32Array([4, 5, 6]) });
  assert.deepEqual(readdirSync(dir).sort(), ['round-00000001.ckpt', 'round-00000002.ckpt']); // no temp files left
  const bytes = new Uint8Array(readFileSync(file2));
  bytes[bytes.length - 3] ^= 0xff; // inside the float payload
  writeFileSync(file2, bytes);
  const latest = await store.loadLatest();
  assert.equal(latest?.round, 1);
  assert.deepEqual((latest?.state as { w: Float32Array }).w, new Float32Array([1, 2, 3]));
  assert.ok(logs.some((l) => /round-00000002\.ckpt skipped: checksum mismatch/.test(l)), logs.join('\n'));
});

test('upload journal: durable appends, a torn tail is cut with a log line, compaction keeps records written after the checkpoint', async () => {
  const { FileUploadJournal } = await import('../server/state/upload-journal.ts');
  const { appendFileSync, statSync } = await import('node:fs');
  const dir = mkdtempSync(join(tmpdir(), 'fedistill-journal-'));
  const logs: string[] = [];
  const j = new FileUploadJournal(dir, linesLogger((m) => logs.push(m)));
  assert.equal(j.append('open', { round: 1, selected: ['a', 'b'] }), 1);
  assert.equal(j.append('update', { round: 1, update: { clientId: 'a', payload: new Float32Array([1.5, -2]) } }), 2);
  assert.equal(j.append('update', { round: 1, update: { clientId: 'b', payload: new Float32Array([3]) } }), 3);
  j.close();
  // A crash mid-append leaves half a record behind.
  appendFileSync(join(dir, 'journal.log'), new Uint8Array([200, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]));
  const k = new FileUploadJournal(dir, linesLogger((m) => logs.push(m)));
  assert.ok(logs.some((l) => /torn or corrupt record at byte \d+ .*truncated record/.test(l)), logs.join('\n'));
  assert.equal(k.seq, 3, 'numbering goes on after the last good record');
  const records = k.replay(0);
  assert.deepEqual(records.map((r) => [r.seq, r.kind]), [[1, 'open'], [2, 'update'], [3, 'update']]);
  assert.deepEqual((records[1].update as { payload: Float32Array }).payload, new Float32Array([1.5, -2]));
  assert.deepEqual(k.replay(2).map((r) => r.seq), [3]);
  // A checkpoint covering seq ≤ 2 was written while record 3 (and now 4) came in: those must survive compaction.
  k.append('update', { round: 2, update: { clientId: 'a' } });
  k.compact(2);
  assert.deepEqual(k.replay(0).map((r) => r.seq), [3, 4]);
  k.compact(4);
  assert.deepEqual(k.replay(0), []);
  assert.equal(statSync(join(dir, 'journal.log')).size, 0);
  assert.equal(k.append('client', { participant: { id: 'c' } }), 5);
  k.close();
});
