import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { decodeFrame } from '../shared/protocol/frame-codec.ts';
import type { RoundDone } from '../client/client.ts';
import { makeClient, roundsDone, startBench } from './helpers.ts';

test('ensemble distillation end to end: clients upload only proxy logits, the student learns', async () => {
  const b = await startBench(3, { rounds: 2, proxySubset: 200 });
  after(() => b.agg.close());
  const clients = [0, 1, 2].map((i) => makeClient(b, i, { codec: i === 2 ? 'int8' : 'fp16' }));
  await Promise.all(clients.map((c) => c.start()));
  after(() => clients.forEach((c) => c.stop()));
  const done: RoundDone[] = [];
  clients.forEach((c) => c.on('round-done', (r) => done.push(r)));
  await roundsDone(b, 2);

  const h = b.agg.coordinator.history;
  assert.equal(h.length, 2);
  for (const r of h) {
    assert.equal(r.participants, 3);
    // 200 rows × 10 classes: fp16 = 4000 B, int8 = 2000 B + per-row scale/offset; plus a small envelope.
    assert.ok(r.uplinkBytes > 2 * 4000 + 2000 && r.uplinkBytes < 2 * 4000 + 5000 + 3 * 400, `uplink ${r.uplinkBytes}`);
  }
  // A 500-image validation slice: the MLP student distilled on 400 unlabelled proxy rows beats chance by far.
  assert.ok(h[1].studentAccuracy! > 0.55, `student accuracy ${h[1].studentAccuracy}`);
  assert.ok(done.every((r) => r.adoptedStudent && r.task === 'logits'));
  assert.equal(b.agg.coordinator.strategy.version, 2);
});

test('heterogeneous clients: a CNN client digests the MLP student\'s consensus instead of adopting weights', async () => {
  const b = await startBench(2, { rounds: 2, proxySubset: 100 });
  after(() => b.agg.close());
  const clients = [makeClient(b, 0), makeClient(b, 1, { model: 'cnn' })];
  const done: RoundDone[] = [];
  clients[1].on('round-done', (r) => done.push(r));
  let sawWeights = false;
  let sawConsensus = false;
  clients[1].on('welcome', () => {
    clients[1].connection!.on('round', (f: Uint8Array) => {
      const m = decodeFrame(f) as { model?: unknown; consensus?: unknown };
      sawWeights ||= m.model !== undefined;
      sawConsensus ||= m.consensus !== undefined;
    });
  });
  await Promise.all(clients.map((c) => c.start()));
  after(() => clients.forEach((c) => c.stop()));
  await roundsDone(b, 2);
  assert.equal(sawWeights, false, 'a CNN client must not be sent MLP weights');
  assert.equal(sawConsensus, true);
  assert.deepEqual(done.map((r) => [r.round, r.adoptedStudent, r.digestedConsensus]), [[1, false, false], [2, false, true]]);
  assert.ok(b.agg.coordinator.history.every((r) => r.participants === 2));
});

test('FedAvg baseline over the same transport: every client uploads its full weights', async () => {
  const b = await startBench(2, { rounds: 2, strategy: 'fedavg' });
  after(() => b.agg.close());
  const clients = [0, 1].map((i) => makeClient(b, i));
  await Promise.all(clients.map((c) => c.start()));
  after(() => clients.forEach((c) => c.stop()));
  await roundsDone(b, 2);
  const h = b.agg.coordinator.history;
  const params = b.agg.coordinator.strategy.model.countParams();
  for (const r of h) {
    assert.equal(r.participants, 2);
    assert.ok(r.uplinkBytes >= 2 * params * 4, `uplink ${r.uplinkBytes} for ${params} params`);
  }
  assert.ok(h[1].studentAccuracy! > 0.5, `FedAvg accuracy ${h[1].studentAccuracy}`);
});
