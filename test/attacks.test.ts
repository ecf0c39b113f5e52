/**
 * simulate --attack: every attack changes what a real aggregator receives the way attacks.ts says (observed on the
 * wire, as the frames the attackers' sockets send), and the harness's table shows a non-robust aggregator's teacher
 * collapse under confident wrong logits while `median` stays near its attack-free teacher.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FedistillClient } from '../client/client.ts';
import { buildModel } from '../shared/models/builders.ts';
import { predictLogits } from '../shared/models/training.ts';
import { applyWireWeights } from '../shared/models/wire.ts';
import { decodeFrame } from '../shared/protocol/frame-codec.ts';
import type { ClientMsg, HelloMsg, RoundMsg, WireTensor } from '../shared/protocol/messages.ts';
import { decodeWeights } from '../shared/models/weight-codec.ts';
import { classHistogram } from '../shared/data/partition.ts';
import { decodeMatrix } from '../shared/tensor/logit-codec.ts';
import { chooseAttackers, CONFIDENT_LOGIT, INFLATED_SAMPLES, makeAttacker, type AttackKind } from '../simulations/attacks.ts';
import { attackRows, runAttackTable } from '../simulations/attack-table.ts';
import { makeClient, roundsDone, startBench, type Bench } from './helpers.ts';

const C = 10;

/** One client of the bench, honest (kind null) or an attacker, with every frame its socket sent. */
interface Peer {
  kind: AttackKind | null;
  client: FedistillClient;
  sent: ClientMsg[];
  round?: RoundMsg;
}

async function federation(t: { after: (f: () => unknown) => void }, kinds: (AttackKind | null)[], config: Parameters<typeof startBench>[1]): Promise<{ b: Bench; peers: Peer[] }> {
  const b = await startBench(kinds.length, { rounds: 1, ...config });
  const peers = kinds.map((kind, i): Peer => {
    const attacker = kind ? makeAttacker({ kind, seed: 1 }, `c${i}`) : null;
    const client = makeClient(b, i, attacker ? { data: attacker.data(b.parts[i]), outbound: attacker.outbound } : {});
    return { kind, client, sent: [] };
  });
  t.after(async () => {
    for (const p of peers) p.client.stop();
    await b.agg.close();
  });
  await Promise.all(
    peers.map((p) => {
      const started = p.client.start();
      // What goes on the wire is what the server receives: decode every outgoing frame.
      p.client.connection!.onAnyOutgoing((_event: string, frame: Uint8Array) => p.sent.push(decodeFrame(frame) as ClientMsg));
      p.client.on('round-start', (r) => (p.round = r));
      return started;
    }),
  );
  await roundsDone(b, 1, 60_000);
  return { b, peers };
}

const hello = (p: Peer) => p.sent.find((m): m is HelloMsg => m.type === 'hello')!;
const upload = <T extends 'logits' | 'weights'>(p: Peer, type: T) => p.sent.find((m) => m.type === type) as Extract<ClientMsg, { type: T }>;
const logitsOf = (p: Peer) => decodeMatrix(upload(p, 'logits').logits);

function argmax(z: Float32Array, i: number): number {
  let best = 0;
  for (let j = 1; j < C; j++) if (z[i * C + j] > z[i * C + best]) best = j;
  return best;
}

/** Fraction of rows whose argmax is `label(row, i)` (i: the row's position in the upload). */
function agreement(z: Float32Array, rows: Uint32Array, label: (row: number, i: number) => number): number {
  let hit = 0;
  rows.forEach((row, i) => (hit += argmax(z, i) === label(row, i) ? 1 : 0));
  return hit / rows.length;
}

/** Per row, the class with the most summed softmax probability over the given uploads. */
function honestVote(uploads: Float32Array[], n: number): number[] {
  const sum = new Float32Array(n * C);
  for (const z of uploads) {
    for (let i = 0; i < n; i++) {
      const m = Math.max(...z.subarray(i * C, (i + 1) * C));
      let s = 0;
      for (let j = 0; j < C; j++) s += Math.exp(z[i * C + j] - m);
      for (let j = 0; j < C; j++) sum[i * C + j] += Math.exp(z[i * C + j] - m) / s;
    }
  }
  return Array.from({ length: n }, (_, i) => argmax(sum, i));
}

function rms(x: Float32Array): number {
  let s = 0;
  for (const v of x) s += v * v;
  return Math.sqrt(s / x.length);
}

function distance(a: WireTensor[], b: WireTensor[]): number {
  let s = 0;
  a.forEach((w, i) => w.data.forEach((v, j) => (s += (v - b[i].data[j]) ** 2)));
  return Math.sqrt(s);
}

test('each logits attack changes what the aggregator receives, as described', { timeout: 90_000 }, async (t) => {
  const kinds: (AttackKind | null)[] = [null, null, null, null, 'confident-wrong', 'label-flip', 'random', 'inflated-counts', 'collude', 'collude', 'free-ride', 'free-ride'];
  const { b, peers } = await federation(t, kinds, { aggregator: 'median', localEpochs: 3 });
  const y = b.proxy.labels!;
  const rows = peers[0].round!.indices!;
  const honest = peers.filter((p) => !p.kind);
  const of = (k: AttackKind) => peers.filter((p) => p.kind === k);
  const honestAcc = honest.map((p) => agreement(logitsOf(p), rows, (r) => y[r]));
  const honestMean = honestAcc.reduce((a, v) => a + v, 0) / honestAcc.length;
  assert.ok(honestMean > 0.3, `honest clients learn something (mean proxy accuracy ${honestMean})`);
  // The honest clients' vote per row (argmax of their summed logits' softmax), and how often an upload agrees with it.
  const vote = honestVote(honest.map(logitsOf), rows.length);
  const withVote = (z: Float32Array) => agreement(z, rows, (_r, i) => vote[i]);
  const honestWithVote = Math.min(...honest.map((p) => withVote(logitsOf(p))));
  const acc = (k: AttackKind) => agreement(logitsOf(of(k)[0]), rows, (r) => y[r]);
  t.diagnostic(`proxy accuracy: honest ${honestMean.toFixed(3)}, ${(['confident-wrong', 'label-flip', 'random', 'collude', 'free-ride'] as const).map((k) => `${k} ${acc(k).toFixed(3)}`).join(', ')}`);
  t.diagnostic(`agreement with the honest vote: honest ≥ ${honestWithVote.toFixed(3)}, ${(['confident-wrong', 'random', 'collude'] as const).map((k) => `${k} ${withVote(logitsOf(of(k)[0])).toFixed(3)}`).join(', ')}`);

  // The student the round handed out, on the round's rows (what free-riders echo and colluders build on).
  const round = peers[0].round!;
  const student = buildModel({ kind: round.model!.kind, inputShape: b.proxy.shape, numClasses: C });
  applyWireWeights(student, round.model!.weights);
  const studentZ = await predictLogits(student, b.proxy, rows);
  student.dispose();

  // confident-wrong: one-hot rows of CONFIDENT_LOGIT, never on the class its own (trained) model predicts.
  const cwPeer = of('confident-wrong')[0];
  const cw = logitsOf(cwPeer);
  const ownZ = await predictLogits(cwPeer.client.model, b.proxy, rows);
  for (let i = 0; i < rows.length; i++) {
    assert.equal(cw[i * C + argmax(cw, i)], CONFIDENT_LOGIT);
    assert.equal(cw.subarray(i * C, (i + 1) * C).filter((v) => v !== 0).length, 1, `row ${i} is one-hot`);
    assert.notEqual(argmax(cw, i), argmax(ownZ, i), `row ${i}: not its own model's class`);
  }
  assert.ok(acc('confident-wrong') < honestMean - 0.1, 'confident-wrong rows are mostly wrong');

  // label-flip and inflated-counts: trained on y → 9 − y, and they report that histogram (hello) honestly or inflated.
  for (const p of [...of('label-flip'), ...of('inflated-counts')]) {
    const z = logitsOf(p);
    assert.ok(agreement(z, rows, (r) => C - 1 - y[r]) > agreement(z, rows, (r) => y[r]) + 0.15, `${p.kind} predicts flipped labels`);
  }
  const i5 = peers.indexOf(of('label-flip')[0]);
  const truth = classHistogram(b.parts[i5].labels!, Uint32Array.from({ length: b.parts[i5].count }, (_, i) => i), C);
  assert.deepEqual(hello(peers[i5]).classCounts, truth.map((_, j) => truth[C - 1 - j]));
  const inflated = hello(of('inflated-counts')[0]);
  assert.equal(inflated.numSamples, INFLATED_SAMPLES);
  const claimed = inflated.classCounts!.reduce((a, v) => a + v, 0);
  assert.ok(claimed > 0.99 * INFLATED_SAMPLES && claimed <= INFLATED_SAMPLES, `classCounts scaled to the claim (${claimed})`);
  assert.ok(honest.every((p) => hello(p).numSamples < 10_000));

  // random: large-magnitude noise, no better than chance.
  const rz = logitsOf(of('random')[0]);
  assert.ok(rms(rz) > 10 && honest.every((p) => rms(logitsOf(p)) < 10), `random logits are large (rms ${rms(rz)})`);
  assert.ok(acc('random') < 0.25 && withVote(rz) < honestWithVote - 0.1);

  // collude: the colluders name the same class for every row, never the handed-out student's, rarely the honest vote.
  const [k1, k2] = of('collude').map(logitsOf);
  for (let i = 0; i < rows.length; i++) {
    assert.equal(argmax(k1, i), argmax(k2, i), `colluders agree on row ${i}`);
    assert.notEqual(argmax(k1, i), argmax(studentZ, i), `row ${i}: colluders shift the student's class`);
  }
  assert.ok(withVote(k1) < honestWithVote - 0.1, 'the colluders mostly disagree with the honest vote');

  // free-ride: both echo the student the round handed out (its logits on the round's rows), not anything they learnt.
  for (const p of of('free-ride')) {
    const z = logitsOf(p);
    let worst = 0;
    z.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - studentZ[i]))));
    assert.ok(worst < 0.05, `free-rider uploads the student's logits (max |Δ| ${worst}, fp16)`);
  }
});

test('each weights attack (FedAvg) changes what the aggregator receives, as described', { timeout: 90_000 }, async (t) => {
  const kinds: (AttackKind | null)[] = [null, null, null, 'confident-wrong', 'random', 'inflated-counts', 'collude', 'collude', 'free-ride'];
  const { peers } = await federation(t, kinds, { strategy: 'fedavg' });
  const of = (k: AttackKind) => peers.filter((p) => p.kind === k);
  const global = decodeWeights(peers[0].round!.model!.weights);
  const weights = (p: Peer) => upload(p, 'weights').weights;
  const honestSteps = peers.filter((p) => !p.kind).map((p) => distance(weights(p), global));
  const step = Math.max(...honestSteps);

  // free-ride: the received model, unchanged.
  assert.equal(distance(weights(of('free-ride')[0]), global), 0);
  // confident-wrong: a boosted update, far beyond any honest step.
  const boosted = distance(weights(of('confident-wrong')[0]), global);
  assert.ok(boosted > 4 * step, `boosted update ${boosted} vs honest ≤ ${step}`);
  // random: weights of rms ≈ 1, far from the model.
  const flat = Float32Array.from(weights(of('random')[0]).flatMap((w) => Array.from(w.data)));
  assert.ok(Math.abs(rms(flat) - 1) < 0.05, `random weights rms ${rms(flat)}`);
  // inflated-counts: the claim in hello and in the upload.
  const inflated = of('inflated-counts')[0];
  assert.equal(hello(inflated).numSamples, INFLATED_SAMPLES);
  assert.equal(upload(inflated, 'weights').numSamples, INFLATED_SAMPLES);
  // collude: the very same update from both, and not the model they were given.
  const [a, b] = of('collude').map(weights);
  assert.equal(distance(a, b), 0);
  assert.ok(distance(a, global) > step, 'the colluders moved the model');
});

test('the attack table: a non-robust teacher collapses under confident wrong logits, median stays near clean', { timeout: 120_000 }, async (t) => {
  // The committed subset, offline, in this process and in the workers it forks.
  const tmp = await mkdtemp(join(tmpdir(), 'fedistill-attacks-'));
  const env: Record<string, string> = { FEDISTILL_OFFLINE: '1', FEDISTILL_SYSTEM_DATA_DIRS: '', FEDISTILL_DATA_DIR: '', XDG_CACHE_HOME: join(tmp, 'xdg') };
  const saved = Object.keys(env).map((k) => [k, process.env[k]] as const);
  Object.assign(process.env, env);
  t.after(async () => {
    for (const [k, v] of saved) v === undefined ? delete process.env[k] : (process.env[k] = v);
    await rm(tmp, { recursive: true, force: true });
  });

  // Reputation off: mean-logits as the plain FedDF average, the non-robust baseline (median weighs nobody anyway).
  const settings = { clients: 5, rounds: 2, models: ['mlp' as const], student: 'mlp' as const, localEpochs: 1, distillEpochs: 1, proxySubset: 300, workers: 2, attackFraction: 0.2, reputationDecay: 0 };
  const rows = attackRows(['ensemble'], ['mean-logits', 'median'], { aggregator: 'confidence', fedavgAggregator: 'mean' });
  const { table, runs } = await runAttackTable({ ...settings, log: () => {} }, { attacks: ['confident-wrong'], rows });
  assert.equal(runs.length, 4);
  // 20% of 5 clients: one attacker, the same one (picked by the seed) in every attacked run.
  const expected = chooseAttackers(5, 0.2, 1).map((i) => `client-${String(i).padStart(2, '0')}`);
  assert.equal(expected.length, 1);
  assert.deepEqual(table.attackers, expected);
  assert.deepEqual(runs.filter((r) => r.attack).map((r) => r.attack!.attackers), [expected, expected]);
  assert.ok(runs.filter((r) => !r.attack).length === 2);

  const [meanLogits, median] = table.rows;
  for (const r of table.rows) t.diagnostic(`${r.label}: teacher ${r.clean.teacherAccuracy} clean, drop ${r.attacks['confident-wrong']!.teacherDrop} points`);
  assert.equal(meanLogits.aggregator, 'mean-logits');
  assert.equal(median.aggregator, 'median');
  for (const r of table.rows) assert.ok(r.clean.teacherAccuracy! > 0.3, `${r.label}: the clean teacher learnt something (${r.clean.teacherAccuracy})`);
  // mean-logits: the attacker's logit of 100 outweighs four honest clients' on nearly every row.
  assert.ok(meanLogits.attacks['confident-wrong']!.teacherDrop! > 20, `mean-logits teacher drop ${meanLogits.attacks['confident-wrong']!.teacherDrop}`);
  // median: one of five cannot move a coordinate-wise median far (it may gain: 300 rows, one point is 3 of them).
  assert.ok(median.attacks['confident-wrong']!.teacherDrop! < 10, `median teacher drop ${median.attacks['confident-wrong']!.teacherDrop}`);
});
