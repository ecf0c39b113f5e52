import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { subset } from '../shared/data/dataset.ts';
import { softmaxRows } from '../shared/distill/aggregators.ts';
import { predictLogits } from '../shared/models/training.ts';
import { parseServerFrame } from '../shared/protocol/validate.ts';
import type { RoundMsg } from '../shared/protocol/messages.ts';
import { decodeMatrix } from '../shared/tensor/logit-codec.ts';
import { continualReport, makeScenario, rowsPerTask, taskAccuracy, taskOfRound } from '../simulations/continual.ts';
import { makeClient, roundsDone, startBench } from './helpers.ts';

test('mutual: clients keep their own weights and get the student\'s soft labels on the round\'s proxy rows', async () => {
  const b = await startBench(2, { strategy: 'mutual', rounds: 2, mutualBeta: 0.5, temperature: 2 });
  after(() => b.agg.close());
  const clients = [0, 1].map((i) => makeClient(b, i));
  const got: RoundMsg[] = [];
  let expected: Float32Array | null = null;
  b.agg.coordinator.on('round-start', async (round: number) => {
    if (round !== 2) return;
    // configureRound has run and the student won't change before this round's aggregate: recompute what it sent.
    const idx = got.find((m) => m.round === 2)?.indices ?? (b.agg.coordinator.strategy as unknown as { proxyIndicesFor(r: number): Uint32Array }).proxyIndicesFor(2);
    expected = softmaxRows(await predictLogits(b.agg.coordinator.strategy.model, subset(b.proxy, idx)), idx.length, 10, 2);
  });
  const started = clients.map((c) => c.start());
  // Parsed as the SDK parses it (its rows come as a row set, decoded into `indices`), before any round can come.
  clients[0].connection!.on('round', (f: Uint8Array) => got.push(parseServerFrame('round', f) as RoundMsg));
  await Promise.all(started);
  after(() => clients.forEach((c) => c.stop()));
  const adopted: boolean[] = [];
  clients[0].on('round-done', (r) => adopted.push(r.adoptedStudent));
  await roundsDone(b, 2);
  const r1 = got.find((m) => m.round === 1)!;
  const r2 = got.find((m) => m.round === 2)!;
  assert.equal(r1.model, undefined, 'no weights travel downlink');
  assert.equal(r1.mutual, undefined, 'round 1: the untrained student has nothing to teach');
  assert.equal(r2.model, undefined);
  assert.ok(r2.mutual);
  assert.equal(r2.mutual!.beta, 0.5);
  assert.equal(r2.mutual!.temperature, 2);
  const probs = decodeMatrix(r2.mutual!.probs);
  assert.equal(probs.length, r2.indices!.length * 10);
  for (let i = 0; i < probs.length; i++) assert.ok(Math.abs(probs[i] - expected![i]) < 2e-3, `row ${Math.floor(i / 10)}: ${probs[i]} vs ${expected![i]}`);
  assert.deepEqual(adopted, [false, false], 'the client trained on from its own weights both rounds');
  const h = b.agg.coordinator.history;
  assert.deepEqual(h.map((r) => [r.status, r.participants]), [['completed', 2], ['completed', 2]]);
  assert.ok(h[1].downlinkBytes < 2 * 60_000, `downlink ${h[1].downlinkBytes} B: soft labels, not the student's weights`);
});

test('continual scenarios: tasks, per-client task rows, per-task accuracy and forgetting', () => {
  const s = makeScenario('class-incremental', 10, 2, 3);
  assert.deepEqual(s.tasks, [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]);
  assert.deepEqual([1, 3, 4, 15, 99].map((r) => taskOfRound(s, r)), [0, 0, 1, 4, 4]);
  const labels = Uint8Array.from({ length: 100 }, (_, i) => i % 10);
  const pool = Array.from({ length: 100 }, (_, i) => i);
  const inc = rowsPerTask(s, pool, labels, 'x');
  assert.deepEqual(inc[1].map((r) => labels[r]).sort(), Array(10).fill(2).concat(Array(10).fill(3)));
  const drift = rowsPerTask({ ...s, kind: 'drift' }, pool, labels, 'x', 0.5);
  assert.ok(drift[1].filter((r) => labels[r] === 2 || labels[r] === 3).length === 20, 'all rows of the task classes');
  const others = drift[1].filter((r) => labels[r] !== 2 && labels[r] !== 3).length;
  assert.ok(others > 10 && others < 70, `about half the other rows, got ${others}`);
  assert.throws(() => makeScenario('class-incremental', 10, 3, 1), /divide/);
  // Task accuracy weighs classes by their test rows.
  assert.equal(taskAccuracy([1, 0.5, 0, 0, 0, 0, 0, 0, 0, 0], [0, 1], [100, 300, 0, 0, 0, 0, 0, 0, 0, 0]), (100 + 150) / 400);
  // Two tasks of 1 round each: task 1 learned (0.9) then forgotten (0.3); task 2 learned at the end.
  const two = makeScenario('class-incremental', 4, 2, 1);
  const rows = [1, 1, 1, 1];
  const r = continualReport(two, [[0.9, 0.9, 0, 0], [0.3, 0.3, 0.8, 0.8]], rows);
  assert.deepEqual(r.tasks.map((t) => [t.atEndOfTask, t.best, t.final]), [[0.9, 0.9, 0.3], [0.8, 0.8, 0.8]]);
  assert.ok(Math.abs(r.tasks[0].forgetting - 0.6) < 1e-12);
  assert.ok(Math.abs(r.averageForgetting - 0.6) < 1e-12, 'the last task is not counted');
  assert.ok(Math.abs(r.averageAccuracy - 0.55) < 1e-12);
  // A round that did not complete is a gap ([]), not a shift: task 1 still ends at round 1 and is scored at round 3.
  const gap = continualReport(makeScenario('class-incremental', 4, 2, 1), [[0.9, 0.9, 0, 0], [], [0.4, 0.4, 0.7, 0.7]], rows);
  assert.deepEqual(gap.tasks.map((t) => [t.atEndOfTask, t.best, t.final]), [[0.9, 0.9, 0.4], [NaN, 0.7, 0.7]]);
});

test('a client whose private data changes tells the server its new counts, without disturbing the round', async () => {
  const b = await startBench(2, { rounds: 3 });
  after(() => b.agg.close());
  const small = subset(b.parts[0], Uint32Array.from({ length: 50 }, (_, i) => i));
  const none = subset(b.parts[0], new Uint32Array(0));
  // Round 1 on the full partition, round 2 on its first 50 rows, round 3 on nothing (all its data expired).
  const c0 = makeClient(b, 0, { dataAt: (round) => (round >= 3 ? none : round === 2 ? small : b.parts[0]) });
  const c1 = makeClient(b, 1);
  const welcomes: number[] = [];
  c0.on('welcome', () => welcomes.push(Date.now()));
  await Promise.all([c0.start(), c1.start()]);
  after(() => (c0.stop(), c1.stop()));
  const counts: number[] = [];
  b.agg.coordinator.on('round', () => counts.push(b.agg.coordinator.status().clients.find((c) => c.id === 'c0')!.numSamples));
  await roundsDone(b, 3);
  assert.deepEqual(counts, [b.parts[0].count, 50, 0], 'the server knew each round what the client trained on');
  assert.equal(welcomes.length, 3, 'a re-registration per change, on the same connection');
  // With no data left the client still answers (its logits are what its model knows) and weighs nothing by count.
  assert.deepEqual(b.agg.coordinator.history.map((r) => r.participants), [2, 2, 2]);
  // The re-hello did not make the server send round 2 again: both rounds' downlink is one task per client.
  const [r1, r2] = b.agg.coordinator.history;
  assert.ok(Math.abs(r2.downlinkBytes - r1.downlinkBytes) < 0.05 * r1.downlinkBytes, `${r1.downlinkBytes} vs ${r2.downlinkBytes}`);
});
