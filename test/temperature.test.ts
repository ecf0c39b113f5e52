import { test } from 'node:test';
import assert from 'node:assert/strict';
import { subset, type Dataset } from '../shared/data/dataset.ts';
import { Rng } from '../shared/data/rng.ts';
import { softmaxRows } from '../shared/distill/aggregators.ts';
import { scheduledTemperature, TemperatureSchedule } from '../shared/distill/temperature.ts';
import { predictLogits } from '../shared/models/training.ts';
import { weightsToWire } from '../shared/models/wire.ts';
import type { ClientRoundStats } from '../shared/protocol/messages.ts';
import { decodeMatrix } from '../shared/tensor/logit-codec.ts';
import { DEFAULT_CONFIG, type ServerConfig } from '../server/config.ts';
import { silentLogger } from '../server/logger.ts';
import { EnsembleStrategy } from '../server/strategies/ensemble.ts';
import { OnlineStrategy } from '../server/strategies/online.ts';
import type { Participant, RoundContext, Update } from '../server/strategies/strategy.ts';
import { subsetData } from './helpers.ts';

const close = (a: number, b: number, tol = 1e-6) => assert.ok(Math.abs(a - b) <= tol, `${a} ≉ ${b}`);
const closeRows = (a: ArrayLike<number>, b: ArrayLike<number>, tol: number) => {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) close(a[i], b[i], tol);
};

async function proxySet(): Promise<Dataset> {
  const { train } = await subsetData();
  return { ...subset(train, Uint32Array.from({ length: 120 }, (_, i) => i)), labels: null };
}

function config(over: Partial<ServerConfig>): ServerConfig {
  return { ...DEFAULT_CONFIG, student: 'mlp', proxySubset: 60, distillBatchSize: 32, seed: 5, ...over };
}

const ctx = (cfg: ServerConfig, proxy: Dataset, seed: string): RoundContext => ({ round: 1, config: cfg, proxy, validation: null, rng: new Rng(seed), log: silentLogger });
const stats: ClientRoundStats = { trainLoss: 0, trainAccuracy: 0, trainSeconds: 0 };

/** Seeded logits a client could have sent for `rows` proxy rows. */
function logitsFor(rows: number, c: number): Float32Array {
  const rng = new Rng('client-logits');
  return Float32Array.from({ length: rows * c }, () => (rng.next() - 0.5) * 8);
}

test('the schedule: T(t) = max(1, T_max·e^(−k·t)), t < 0 reads as 0, re-tempering only when T differs', () => {
  const s = new TemperatureSchedule(4, 0.5);
  close(s.at(0), 4);
  close(s.at(-3), 4);
  close(s.at(1), 4 * Math.exp(-0.5));
  assert.equal(s.at(3), 1, '4·e^−1.5 < 1: floored');
  assert.equal(new TemperatureSchedule(3, 0).at(100), 3, 'k = 0: constant');
  assert.throws(() => new TemperatureSchedule(0, 0.1), /T_max/);
  assert.equal(scheduledTemperature(4, 0.5, 1), s.at(1));
  const z = [2, -1, 0.5];
  const out = new Float64Array(3);
  assert.equal(s.retemperRow(softmaxRows(z, 1, 3, 4), 0, 0, out), false, 'same step: the row is used as it is');
  assert.equal(s.retemperRow(softmaxRows(z, 1, 3, 4), 0, 1, out), true);
  closeRows(out, softmaxRows(z, 1, 3, s.at(1)), 1e-6);
});

test('online honours --temperature-decay: tasks, teacher and training follow T(student version)', async () => {
  const proxy = await proxySet();
  const c = proxy.numClasses;
  const cfg = config({ temperature: 4, temperatureDecay: 0.5, mutualBeta: 1, consensusCodec: 'fp32' });
  const T = new TemperatureSchedule(4, 0.5);
  const s = new OnlineStrategy(cfg, proxy, 'hash');
  // Another architecture than the student's: its tasks carry the student's soft labels at the task's temperature.
  const foreign: Participant = { id: 'cnn-client', model: 'cnn', numSamples: 10, codec: 'fp32' };
  assert.equal((await s.configureTask(ctx(cfg, proxy, 'a'), foreign, 1, -1)).mutual, undefined, 'v0: no soft labels from an untrained student');

  // A client's logits on its first task, computed against v0: labelled at T(0) = 4.
  const task = await s.configureTask(ctx(cfg, proxy, 'a'), { ...foreign, id: 'mlp-client', model: 'mlp' }, 1, -1);
  const rows = task.indices!;
  const z = logitsFor(rows.length, c);
  const update: Update = { clientId: 'mlp-client', numSamples: 10, payload: z, bytes: 0, stats };
  s.ingest(update, task);
  closeRows(s.teacherFor(rows), softmaxRows(z, rows.length, c, 4), 1e-5);

  for (const v of [1, 2]) {
    s.publish();
    assert.equal(s.version, v);
    const t = await s.configureTask(ctx(cfg, proxy, 'a'), foreign, v + 1, -1);
    close(t.mutual!.temperature, T.at(v));
    const student = await predictLogits(s.model, subset(proxy, t.indices!));
    closeRows(decodeMatrix(t.mutual!.probs), softmaxRows(student, t.indices!.length, c, T.at(v)), 1e-5);
    // The v0 contribution, re-tempered: exactly the client's logits at this version's temperature.
    closeRows(s.teacherFor(rows), softmaxRows(z, rows.length, c, T.at(v)), 1e-4);
  }

  // Training towards v3 distills at T(2): a step matches, weight for weight, one of a constant-T(2) run on the same data.
  const same = new OnlineStrategy(config({ temperature: T.at(2), temperatureDecay: 0 }), proxy, 'hash');
  same.ingest(update, task);
  same.publish();
  same.publish();
  const lossDecayed = await s.trainStep(ctx(cfg, proxy, 'step'));
  const lossConstant = await same.trainStep(ctx(cfg, proxy, 'step'));
  close(lossDecayed!, lossConstant!, 1e-4);
  const a = weightsToWire(s.model);
  const b = weightsToWire(same.model);
  a.forEach((w, i) => closeRows(w.data, b[i].data, 1e-5));

  // And not one at T_max (what online did before it followed the schedule).
  const atMax = new OnlineStrategy(config({ temperature: 4, temperatureDecay: 0 }), proxy, 'hash');
  atMax.ingest(update, task);
  atMax.publish();
  atMax.publish();
  const lossAtMax = await atMax.trainStep(ctx(cfg, proxy, 'step'));
  assert.ok(Math.abs(lossAtMax! - lossDecayed!) > 1e-3, `T(2) and T_max give different steps (${lossAtMax} vs ${lossDecayed})`);
});

test('ensemble and mutual read the same schedule: round r distills at T(r − 1)', async () => {
  const proxy = await proxySet();
  const e = new EnsembleStrategy(config({ temperature: 3, temperatureDecay: 0.2 }), proxy, 'hash');
  const T = new TemperatureSchedule(3, 0.2);
  for (const r of [0, 1, 2, 5, 20]) close(e.temperatureAt(r), T.at(r - 1));
});
