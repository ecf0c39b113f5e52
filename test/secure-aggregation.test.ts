import { test } from 'node:test';
import assert from 'node:assert/strict';
import { softmaxRows } from '../shared/distill/aggregators.ts';
import type { RoundSummary } from '../shared/dashboard-feed.ts';
import type { AggregateReport } from '../server/strategies/strategy.ts';
import type { FedistillClient, UploadDraft } from '../client/client.ts';
import { checkSecureSum } from '../server/strategies/ensemble.ts';
import { makeClient, roundsDone, startBench } from './helpers.ts';

interface Captured {
  /** Per round, per client: the probabilities it put into the masked sum. */
  values: Map<number, Map<string, Float32Array>>;
  summaries: RoundSummary[];
  teachers: Map<number, Float32Array>;
}

/** Record what each client contributes (its probabilities at the session's temperature) and what the server learns. */
function capture(clients: FedistillClient[], b: Awaited<ReturnType<typeof startBench>>): Captured {
  const cap: Captured = { values: new Map(), summaries: [], teachers: new Map() };
  b.agg.coordinator.on('round', (s: RoundSummary, r: AggregateReport) => {
    cap.summaries.push(s);
    if (r.teacher) cap.teachers.set(s.round, r.teacher.probs);
  });
  void clients;
  return cap;
}

function recorder(cap: Captured, id: string, then?: (round: number) => void) {
  return async (draft: UploadDraft, ctx: { round: { round: number; indices?: Uint32Array; secagg?: { temperature: number } } }) => {
    if (draft.task === 'logits') {
      const n = ctx.round.indices!.length;
      const p = softmaxRows(draft.logits, n, draft.numClasses, ctx.round.secagg!.temperature);
      if (!cap.values.has(ctx.round.round)) cap.values.set(ctx.round.round, new Map());
      cap.values.get(ctx.round.round)!.set(id, p);
    }
    then?.(ctx.round.round);
    return draft;
  };
}

function meanOf(vs: Float32Array[]): Float64Array {
  const out = new Float64Array(vs[0].length);
  for (const v of vs) for (let i = 0; i < v.length; i++) out[i] += v[i] / vs.length;
  return out;
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const SECURE = { secureAggregation: { enabled: true, threshold: 0.5, phaseTimeoutS: 10 }, aggregator: 'mean-probs' as const, rounds: 2 };

test('secure aggregation: the server learns the mean of the teachers (to fixed-point precision) and nothing else', async (t) => {
  const b = await startBench(4, SECURE);
  t.after(() => b.agg.close());
  const cap = capture([], b);
  const clients = [0, 1, 2, 3].map((i) => makeClient(b, i, { outbound: { upload: recorder(cap, `c${i}`) } }));
  t.after(() => clients.forEach((c) => c.stop()));
  await Promise.all(clients.map((c) => c.start()));
  await roundsDone(b, 2);
  for (const s of cap.summaries) {
    assert.equal(s.status, 'completed', `round ${s.round}: ${s.status}`);
    assert.equal(s.secureAggregation?.contributors, 4);
    assert.ok(s.secureAggregation!.keyBytes > 0);
    const mine = cap.values.get(s.round)!;
    assert.equal(mine.size, 4);
    const diff = maxDiff(cap.teachers.get(s.round)!, meanOf([...mine.values()]));
    // Fixed point with scale ≥ 2^16 per contributor, and float32 teachers: far below 1e-4.
    assert.ok(diff < 1e-4, `round ${s.round}: teacher differs from the plain mean by ${diff}`);
  }
});

test('secure aggregation survives a client that drops after sending its shares and one that drops after masking', async (t) => {
  const b = await startBench(5, { ...SECURE, rounds: 1 });
  t.after(() => b.agg.close());
  const cap = capture([], b);
  const clients: FedistillClient[] = [];
  for (let i = 0; i < 5; i++) {
    // c0 dies when its upload is ready (it sent keys and shares, never a masked input); c1 right after its masked input.
    const then = i === 0 ? () => clients[0].stop() : undefined;
    clients.push(makeClient(b, i, { outbound: { upload: recorder(cap, `c${i}`, then) } }));
  }
  clients[1].on('ack', () => clients[1].stop());
  t.after(() => clients.forEach((c) => c.stop()));
  await Promise.all(clients.map((c) => c.start()));
  await roundsDone(b, 1);
  const s = cap.summaries[0];
  assert.equal(s.status, 'completed');
  assert.equal(s.secureAggregation?.contributors, 4, 'c1 (masked, then gone) is in the sum; c0 (no masked input) is not');
  const mine = cap.values.get(1)!;
  const expected = meanOf(['c1', 'c2', 'c3', 'c4'].map((id) => mine.get(id)!));
  const diff = maxDiff(cap.teachers.get(1)!, expected);
  assert.ok(diff < 1e-4, `teacher differs from the survivors' mean by ${diff}`);
});

test('secure aggregation with the confidence aggregator: the teacher is the confidence-weighted mean', async (t) => {
  const b = await startBench(3, { ...SECURE, aggregator: 'confidence', rounds: 1 });
  t.after(() => b.agg.close());
  const cap = capture([], b);
  const clients = [0, 1, 2].map((i) => makeClient(b, i, { outbound: { upload: recorder(cap, `c${i}`) } }));
  t.after(() => clients.forEach((c) => c.stop()));
  await Promise.all(clients.map((c) => c.start()));
  await roundsDone(b, 1);
  assert.equal(cap.summaries[0].status, 'completed');
  const ps = [...cap.values.get(1)!.values()];
  const c = 10;
  const n = ps[0].length / c;
  const expected = new Float64Array(n * c);
  for (let i = 0; i < n; i++) {
    let wsum = 0;
    for (const p of ps) {
      let h = 0;
      for (let j = 0; j < c; j++) if (p[i * c + j] > 0) h -= p[i * c + j] * Math.log(p[i * c + j]);
      const w = Math.exp(-h);
      wsum += w;
      for (let j = 0; j < c; j++) expected[i * c + j] += w * p[i * c + j];
    }
    for (let j = 0; j < c; j++) expected[i * c + j] /= wsum;
  }
  const diff = maxDiff(cap.teachers.get(1)!, expected);
  assert.ok(diff < 1e-4, `teacher differs from the confidence-weighted mean by ${diff}`);
});

test('a secure sum that cannot be a sum of probability rows is not learned from', () => {
  const ok = { sum: Float64Array.from([0.5, 1.5, 1, 1]), count: 2, params: { length: 4 } };
  assert.doesNotThrow(() => checkSecureSum(ok, 2, 2, 'probs'));
  assert.throws(() => checkSecureSum({ ...ok, sum: Float64Array.from([0.5, 1.5, 3, -1]) }, 2, 2, 'probs'), /outside \[0, 2\]/);
  assert.throws(() => checkSecureSum({ ...ok, sum: Float64Array.from([0.5, 1, 1, 1]) }, 2, 2, 'probs'), /sums to 1.5, not 2/);
  // confidence rows: w·p then w; Σ_j w·p_j must equal Σ w.
  assert.doesNotThrow(() => checkSecureSum({ sum: Float64Array.from([0.3, 0.6, 0.9]), count: 2, params: { length: 3 } }, 1, 2, 'confidence'));
  assert.throws(() => checkSecureSum({ sum: Float64Array.from([0.3, 0.9, 0.9]), count: 2, params: { length: 3 } }, 1, 2, 'confidence'), /not 0.9/);
  // With DP noise (σ = 0.5 per entry of the sum): a noisy sum passes, one client's 1e4 does not.
  const dp = { noiseStd: 0.5, clip: 1 };
  assert.doesNotThrow(() => checkSecureSum({ ...ok, sum: Float64Array.from([2.1, -0.9, 1.4, 0.3]) }, 2, 2, 'probs', dp));
  assert.throws(() => checkSecureSum({ ...ok, sum: Float64Array.from([1e4, 0, 1, 1]) }, 2, 2, 'probs', dp), /beyond the noise/);
});

test('a client whose connection drops mid key exchange reconnects and is still in the sum', async (t) => {
  const b = await startBench(3, { ...SECURE, rounds: 1 });
  t.after(() => b.agg.close());
  const cap = capture([], b);
  const clients = [0, 1, 2].map((i) => makeClient(b, i, { outbound: { upload: recorder(cap, `c${i}`) } }));
  t.after(() => clients.forEach((c) => c.stop()));
  await Promise.all(clients.map((c) => c.start()));
  // c1's transport dies as the roster arrives: its sealed shares are computed while it is offline and must wait for
  // its next welcome; the server sends the step it missed again when it is back.
  let dropped = 0;
  const io = clients[1].connection!.io as unknown as { engine: { close(): void } };
  clients[1].connection!.on('sa-roster', () => {
    if (dropped++ === 0) io.engine.close();
  });
  await roundsDone(b, 1, 60_000);
  const s = cap.summaries[0];
  assert.equal(dropped >= 1, true, 'the drop happened');
  assert.equal(s.status, 'completed', `round 1: ${s.status}`);
  assert.equal(s.secureAggregation?.contributors, 3);
  const diff = maxDiff(cap.teachers.get(1)!, meanOf([...cap.values.get(1)!.values()]));
  assert.ok(diff < 1e-4, `teacher differs from the plain mean by ${diff}`);
});
