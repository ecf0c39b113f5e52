import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AGGREGATORS, aggregate, argmaxRows, softmaxRows, type AggregatorName, type TeacherLogits } from '../shared/distill/aggregators.ts';
import { cappedShares, clampClaims, coordinateCentre, shareCap, trimCount, waterFill } from '../shared/distill/robust.ts';
import { Reputation, REPUTATION_MAX_ENTRIES } from '../shared/distill/reputation.ts';
import { averageWeights, FEDAVG_AGGREGATORS } from '../shared/distill/weight-averaging.ts';
import { staleTeacherRow } from '../shared/distill/staleness.ts';

/** Seeded LCG in [0, 1) and a standard normal from it. */
function rng(seed: number): { u: () => number; g: () => number } {
  let s = seed >>> 0;
  const u = () => (s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32;
  return { u, g: () => Math.sqrt(-2 * Math.log(u() + 1e-12)) * Math.cos(2 * Math.PI * u()) };
}

const c = 10;

/**
 * Honest non-IID teachers on n rows with labels y: client k knows classes {2k, 2k+1} mod c well and leans to them,
 * and has a weak signal for the others — the shape of a shards-partitioned federation.
 */
function honestTeachers(K: number, y: Int32Array, r: ReturnType<typeof rng>): TeacherLogits[] {
  const n = y.length;
  return Array.from({ length: K }, (_, k) => {
    const held = [(2 * k) % c, (2 * k + 1) % c];
    const z = new Float32Array(n * c);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < c; j++) {
        const mine = held.includes(j);
        z[i * c + j] = r.g() + (mine ? 1.5 : 0) + (j === y[i] ? (mine ? 4 : 1.5) : 0);
      }
    }
    return { logits: z, weight: 500 + Math.floor(r.u() * 500) };
  });
}

function labels(n: number, r: ReturnType<typeof rng>): Int32Array {
  return Int32Array.from({ length: n }, () => Math.floor(r.u() * c));
}

/** One-hot logits of `magnitude` on class (y + shift) mod c: a confident liar. */
function liar(y: Int32Array, shift: number, magnitude = 50): Float32Array {
  const z = new Float32Array(y.length * c);
  if (magnitude > 1e30) z.fill(-magnitude);
  for (let i = 0; i < y.length; i++) z[i * c + ((y[i] + shift) % c)] = magnitude;
  return z;
}

function accuracy(p: Float32Array, y: Int32Array): number {
  const a = argmaxRows(p, y.length, c);
  let hit = 0;
  for (let i = 0; i < y.length; i++) if (a[i] === y[i]) hit++;
  return hit / y.length;
}

test('water-filling: shares sum to 1, none above the cap, proportional below it (seeded property check)', () => {
  const r = rng(1);
  for (let trial = 0; trial < 500; trial++) {
    const K = 1 + Math.floor(r.u() * 12);
    const w = Array.from({ length: K }, () => (r.u() < 0.2 ? 0 : r.u() < 0.1 ? 1e300 * r.u() : r.u() * 10));
    const cap = shareCap(K, [0, 1, 1.5, 2, 3][trial % 5]);
    const pi = cappedShares(w, cap);
    const sum = pi.reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(sum - 1) < 1e-9, `trial ${trial}: Σ = ${sum}`);
    for (let k = 0; k < K; k++) assert.ok(pi[k] >= 0 && pi[k] <= Math.max(cap, 1 / K) + 1e-12, `trial ${trial}: π_${k} = ${pi[k]} > ${cap}`);
    // Uncapped positive-weight clients keep their relative weights.
    const free = w.map((x, k) => k).filter((k) => w[k] > 0 && pi[k] < cap - 1e-12);
    for (const a of free) for (const b of free) assert.ok(Math.abs(pi[a] * w[b] - pi[b] * w[a]) <= 1e-9 * pi[a] * w[b] + 1e-300);
  }
  // By hand: weights 8, 1, 1 under a cap of 0.5 → the 8 is capped and its excess goes to the others: [0.5, 0.25, 0.25].
  const near = (a: ArrayLike<number>, b: number[]) => assert.ok(b.every((v, i) => Math.abs(a[i] - v) < 1e-12), `${Array.from(a)} vs ${b}`);
  near(waterFill([8, 1, 1], 0.5), [0.5, 0.25, 0.25]);
  // Too few positive weights to fill under the cap: the rest is spread over the zero-weight ones.
  near(cappedShares([5, 0, 0, 0], 0.4), [0.4, 0.2, 0.2, 0.2]);
  assert.equal(shareCap(10, 2), 0.2);
  assert.equal(shareCap(10, 0), 1);
  assert.equal(shareCap(3, 0.5), 1 / 3);
});

test('the share cap holds for every weighting aggregator and every row, even against ±3e38 logits and 1e300 claims', () => {
  const r = rng(2);
  const n = 60;
  for (const K of [3, 5, 10]) {
    const y = labels(n, r);
    const honest = honestTeachers(K, y, r);
    // Teacher 0 is extreme in every way a client can be: huge logits, huge claims, all its counts on one class.
    const evil: TeacherLogits = { logits: liar(y, 1, 3e38), weight: 1e300, classCounts: Array.from({ length: c }, (_, j) => (j === 3 ? 1e300 : 0)) };
    const teachers = [evil, ...honest.slice(1)];
    const cap = shareCap(K, 2);
    for (const name of AGGREGATORS) {
      const p = aggregate(name, teachers, n, c, { temperature: 2 });
      for (const v of p) assert.ok(Number.isFinite(v) && v >= 0, `${name}: ${v}`);
      // mean-logits: bounded weight, unbounded logits (documented as not robust); era: its mean is capped, then
      // sharpened by 1/0.1, which amplifies any change of the mean, honest ones alike.
      if (name === 'mean-logits' || name === 'era') continue;
      // The evil teacher's influence on row i: how far its presence moves the teacher, at most its share of the row.
      const without = aggregate(name, [{ ...evil, logits: honest[0].logits, weight: honest[0].weight, classCounts: undefined }, ...honest.slice(1)], n, c, { temperature: 2 });
      for (let i = 0; i < n; i++) {
        let tv = 0;
        for (let j = 0; j < c; j++) tv += Math.abs(p[i * c + j] - without[i * c + j]);
        tv /= 2;
        // Moving one teacher with share π changes a capped weighted mean by at most π (TV, before renormalisation
        // for `weighted`, whose per-class shares can bind each column: allow the c columns).
        const bound = name === 'weighted' ? Math.min(1, c * cap) : name === 'median' || name === 'trimmed-mean' ? 1 : cap;
        assert.ok(tv <= bound + 1e-6, `${name} K=${K} row ${i}: moved ${tv.toFixed(3)} > ${bound}`);
      }
    }
  }
});

test('confidence under the cap: per-row shares of a confident liar stay ≤ 2/K (direct check of the weights)', () => {
  // A liar with one-hot rows has exp(−H) = 1 against ≈ 0.15 for honest tempered rows: uncapped it would hold ~40% of
  // every row with K = 10; capped it holds 2/K = 20%. Measured through linearity: the teacher with the liar's rows
  // replaced by e_j on a class nobody else favours shows the liar's mass on that class ≈ its share.
  const r = rng(3);
  const n = 40;
  const K = 10;
  const y = Int32Array.from({ length: n }, () => Math.floor(r.u() * 5)); // classes 0–4 only: class 9 is the liar's own
  const honest = honestTeachers(K, y, r).slice(1).map((t) => ({ logits: t.logits.map((v, x) => (x % c === 9 ? -40 : v)) }));
  const evil = { logits: new Float32Array(n * c).map((_, x) => (x % c === 9 ? 60 : 0)) };
  const capped = aggregate('confidence', [evil, ...honest], n, c, { temperature: 2 });
  const uncapped = aggregate('confidence', [evil, ...honest], n, c, { temperature: 2, maxShare: 0 });
  for (let i = 0; i < n; i++) {
    assert.ok(capped[i * c + 9] <= 0.2 + 1e-6, `row ${i}: liar's share ${capped[i * c + 9]}`);
    assert.ok(uncapped[i * c + 9] > 0.2, `row ${i}: without the cap the liar weighs ${uncapped[i * c + 9]} (the test must be able to fail)`);
  }
});

test('trimmed mean and median ignore up to the trim fraction of arbitrary teachers, ±3e38 included', () => {
  const r = rng(4);
  const n = 50;
  for (const K of [5, 10, 11]) {
    const g = trimCount(K, 0.2);
    assert.equal(g, Math.ceil(0.2 * K));
    // Honest teachers that agree (IID-like), so the trimmed mean of the honest ones is a known answer.
    const y = labels(n, r);
    const honest = Array.from({ length: K }, () => ({ logits: Float32Array.from({ length: n * c }, (_, x) => (x % c === y[Math.floor(x / c)] ? 3 : 0) + 0.3 * r.g()) }));
    for (const kind of ['huge', 'wrong', 'random'] as const) {
      const teachers = honest.map((t, k) => {
        if (k >= g) return t;
        if (kind === 'huge') return { logits: Float32Array.from({ length: n * c }, () => (r.u() < 0.5 ? 3e38 : -3e38)) };
        if (kind === 'wrong') return { logits: liar(y, 1 + k) };
        return { logits: Float32Array.from({ length: n * c }, () => 20 * r.g()) };
      });
      for (const name of ['trimmed-mean', 'median'] as AggregatorName[]) {
        const p = aggregate(name, teachers, n, c, { temperature: 2 });
        for (const v of p) assert.ok(Number.isFinite(v));
        assert.equal(accuracy(p, y), 1, `${name} K=${K} ${kind}`);
        // Each coordinate stays within the honest teachers' range of that coordinate (before renormalisation).
        const probs = teachers.map((t) => softmaxRows(t.logits, n, c, 2));
        const centre = coordinateCentre(probs, name === 'median' ? 0 : g, name === 'median');
        for (let x = 0; x < n * c; x++) {
          const hv = probs.slice(g).map((q) => q[x]);
          assert.ok(centre[x] >= Math.min(...hv) - 1e-7 && centre[x] <= Math.max(...hv) + 1e-7, `${name} ${kind} x=${x}`);
        }
      }
      // The plain mean is pulled away by the same attackers (so the check above can fail).
      if (kind === 'wrong') assert.ok(accuracy(aggregate('mean-logits', teachers, n, c, { temperature: 2 }), y) < 1);
    }
  }
});

test('one confident-wrong teacher of 3–5 does not win rows under the default (confidence + cap + reputation)', () => {
  const r = rng(5);
  const n = 200;
  for (const K of [3, 4, 5]) {
    // Teachers that know every class moderately well (so K = 3 covers all classes), one of them lying confidently.
    const y = labels(n, r);
    const honest = Array.from({ length: K }, () => ({ logits: Float32Array.from({ length: n * c }, (_, x) => (x % c === y[Math.floor(x / c)] ? 2.5 : 0) + r.g()) }));
    const teachers = [{ logits: liar(y, 1) }, ...honest.slice(1)];
    const rep = new Reputation(0.5);
    const trust = rep.observeRound(1, teachers.map((_, k) => `c${k}`), teachers.map((t) => softmaxRows(t.logits, n, c, 2)), n, c);
    const p = aggregate('confidence', teachers.map((t, k) => ({ ...t, trust: trust[k] })), n, c, { temperature: 2 });
    const won = argmaxRows(p, n, c).filter((a, i) => a === (y[i] + 1) % c).length;
    assert.ok(won / n < 0.05, `K=${K}: the liar won ${won} of ${n} rows`);
    assert.ok(accuracy(p, y) >= accuracy(aggregate('mean-probs', honest.slice(1), n, c, { temperature: 2 }), y) - 0.05);
    // Without cap and reputation (the old default) the liar takes most rows: the check above can fail.
    const old = aggregate('confidence', teachers, n, c, { temperature: 2, maxShare: 0 });
    assert.ok(argmaxRows(old, n, c).filter((a, i) => a === (y[i] + 1) % c).length / n > 0.5, `K=${K}: old confidence`);
  }
});

test('claimed counts are clamped, classCounts used as a distribution with the clamped total', () => {
  assert.deepEqual(Array.from(clampClaims([600, 500, 700, 1e9], 3)), [600, 500, 700, 1800]);
  assert.deepEqual(Array.from(clampClaims([100, 1e9], 3)), [100, 300], 'two clients: the lower median is the smaller claim');
  assert.deepEqual(Array.from(clampClaims([100, 1e9], 0)), [100, 1e9], '0 = believe the claims');
  // weighted: a claim of 1e9 samples counts exactly as 3 × the lower median claim (1500 here).
  const r = rng(6);
  const n = 100;
  const K = 5;
  const y = labels(n, r);
  const honest = Array.from({ length: K }, () => ({ logits: Float32Array.from({ length: n * c }, (_, x) => (x % c === y[Math.floor(x / c)] ? 2 : 0) + r.g()), weight: 500 }));
  const lie = liar(y, 1, 5);
  const opts = { temperature: 2 };
  const inflated = [{ logits: lie, weight: 1e9 }, ...honest.slice(1)];
  assert.deepEqual(aggregate('weighted', inflated, n, c, opts), aggregate('weighted', [{ logits: lie, weight: 1500 }, ...honest.slice(1)], n, c, opts));
  // classCounts are a distribution: 1e300 per class counts as the clamped total spread the same way (150 per class)…
  const withCounts = honest.slice(1).map((t) => ({ logits: t.logits, classCounts: Array.from({ length: c }, () => 50) }));
  assert.deepEqual(
    aggregate('weighted', [{ logits: lie, classCounts: Array.from({ length: c }, () => 1e300) }, ...withCounts], n, c, opts),
    aggregate('weighted', [{ logits: lie, classCounts: Array.from({ length: c }, () => 150) }, ...withCounts], n, c, opts),
  );
  // …and all of them on one class does not hand it that class's column: the holders of a column are capped too.
  const hoard = [{ logits: lie, classCounts: Array.from({ length: c }, (_, j) => (j === 0 ? 1e300 : 0)) }, ...withCounts];
  const q = aggregate('weighted', hoard, n, c, opts);
  const qs = aggregate('weighted', hoard, n, c, { ...opts, maxShare: 0, claimFactor: 0 });
  const rowsOn0 = (p: Float32Array) => argmaxRows(p, n, c).filter((a, i) => a === 0 && y[i] !== 0).length;
  assert.ok(rowsOn0(q) < rowsOn0(qs), `capped ${rowsOn0(q)} vs believed ${rowsOn0(qs)}`);
  // Believed, the inflated liar wins every row; with the reputation the strategies apply, the honest majority does.
  assert.ok(accuracy(aggregate('weighted', inflated, n, c, { ...opts, claimFactor: 0, maxShare: 0 }), y) < 0.1, 'believed, it wins');
  const trust = new Reputation(0.5).observeRound(1, ['a', 'b', 'c', 'd', 'e'], inflated.map((t) => softmaxRows(t.logits, n, c, 2)), n, c);
  assert.ok(accuracy(aggregate('weighted', inflated.map((t, k) => ({ ...t, trust: trust[k] })), n, c, opts), y) > 0.9);
});

test('reputation decays for a persistent outlier, recovers when it agrees, and ignores an honest spread', () => {
  const r = rng(7);
  const n = 100;
  const K = 6;
  const rep = new Reputation(0.5);
  const ids = Array.from({ length: K }, (_, k) => `c${k}`);
  const scores: number[] = [];
  for (let round = 1; round <= 8; round++) {
    const y = labels(n, r);
    const teachers = honestTeachers(K, y, r);
    if (round <= 4) teachers[0] = { logits: liar(y, 1) };
    const trust = rep.observeRound(round, ids, teachers.map((t) => softmaxRows(t.logits, n, c, 2)), n, c);
    scores.push(rep.score('c0'));
    if (round <= 4) assert.ok(trust[0] < 0.05, `round ${round}: liar trust ${trust[0]}`);
    for (let k = 1; k < K; k++) assert.ok(trust[k] > 0.9, `round ${round}: honest c${k} trust ${trust[k]}`);
  }
  for (let i = 1; i < 4; i++) assert.ok(scores[i] < scores[i - 1], `decays: ${scores}`);
  assert.ok(scores[3] < 0.1);
  for (let i = 5; i < 8; i++) assert.ok(scores[i] > scores[i - 1], `recovers: ${scores}`);
  assert.ok(scores[7] > 0.9);
  // Checkpoint round trip, and an old checkpoint without reputation.
  const copy = new Reputation(0.5);
  copy.importState(structuredClone(rep.exportState()));
  assert.deepEqual(copy.list(), rep.list());
  copy.importState(undefined);
  assert.deepEqual(copy.list(), []);
  assert.equal(copy.score('c0'), 1);
  // Off (rate 0): every multiplier 1 and nothing recorded.
  const off = new Reputation(0);
  const y = labels(n, r);
  const t = [{ logits: liar(y, 1) }, ...honestTeachers(4, y, r)];
  assert.deepEqual(Array.from(off.observeRound(1, ['a', 'b', 'c', 'd', 'e'], t.map((x) => softmaxRows(x.logits, n, c, 2)), n, c)), [1, 1, 1, 1, 1]);
  assert.deepEqual(off.list(), []);
});

test('reputation stays bounded under a flood of ids and keeps offenders', () => {
  const rep = new Reputation(0.5);
  rep.observeOne(1, 'a', 0.2);
  rep.observeOne(1, 'b', 0.2);
  rep.observeOne(1, 'bad', 0.9);
  assert.ok(rep.score('bad') < 0.6);
  for (let i = 0; i < REPUTATION_MAX_ENTRIES + 50; i++) rep.observeOne(2 + i, `sybil-${i}`, 0.2);
  assert.ok(rep.list().length <= REPUTATION_MAX_ENTRIES);
  assert.ok(rep.score('bad') < 0.6, 'the offender is remembered');
});

test('online teacher rows: trust multiplies and the share cap binds', () => {
  const liarRow = { probs: [1, 0, 0], version: 5 };
  const honest = Array.from({ length: 4 }, () => ({ probs: [0.1, 0.8, 0.1], version: 5 }));
  const out = new Float64Array(3);
  staleTeacherRow([liarRow, ...honest], 5, 3, { exponent: 0.5, confidence: true, maxShare: 2 }, out);
  assert.ok(out[0] <= 0.4 + 1e-9 && out[0] > 0.35, `capped at 2/5: ${out[0]}`);
  staleTeacherRow([{ ...liarRow, trust: 0 }, ...honest], 5, 3, { exponent: 0.5, confidence: true }, out);
  assert.deepEqual(Array.from(out).map((v) => +v.toFixed(9)), [0.1, 0.8, 0.1]);
});

test('robust FedAvg ignores a scaled or random update; clipped-mean bounds it; mean does not', () => {
  const r = rng(8);
  const size = 200;
  const global = [Float32Array.from({ length: size }, () => r.g()), Float32Array.from({ length: 10 }, () => r.g())];
  const step = global.map((t) => Float32Array.from(t, () => 0.01 * r.g()));
  const honest = (k: number) => global.map((t, i) => Float32Array.from(t, (v, x) => v + step[i][x] + 0.002 * Math.sin(k * 7 + x)));
  const target = global.map((t, i) => Float32Array.from(t, (v, x) => v + step[i][x]));
  const dist = (a: Float32Array[]) => Math.sqrt(a.reduce((s, t, i) => s + t.reduce((u, v, x) => u + (v - target[i][x]) ** 2, 0), 0));
  for (const attack of ['scaled', 'random', 'huge']) {
    const updates = Array.from({ length: 5 }, (_, k) => honest(k));
    const claims = [600, 500, 700, 550, 650];
    if (attack === 'scaled') updates[0] = global.map((t, i) => Float32Array.from(t, (v, x) => v - 100 * step[i][x]));
    if (attack === 'random') updates[0] = global.map((t) => Float32Array.from(t, () => 50 * r.g()));
    if (attack === 'huge') updates[0] = global.map((t) => Float32Array.from(t, (_, x) => (x % 2 ? 3e38 : -3e38)));
    claims[0] = 1e9;
    const honestStep = dist(global); // ≈ ‖step‖: what not moving at all would cost
    for (const name of FEDAVG_AGGREGATORS) {
      const out = averageWeights(name, global, updates, claims);
      for (const t of out) for (const v of t) assert.ok(Number.isFinite(v), `${name} ${attack}: ${v}`);
      const d = dist(out);
      if (name === 'mean') assert.ok(d > 5 * honestStep, `${name} ${attack}: plain mean must be hijacked (${d})`);
      // clipped-mean bounds the attacker's effect by its capped share π (2/5: its 1e9 claim clamped to 3 × the median)
      // times (its clipped norm B ≈ ‖step‖ + the honest step its share displaced): ≤ 2π·‖step‖. The order statistics
      // ignore it.
      else if (name === 'clipped-mean') assert.ok(d <= (2 * 0.4 + 0.05) * honestStep, `${name} ${attack}: off by ${d} vs step ${honestStep}`);
      else assert.ok(d < 0.3 * honestStep, `${name} ${attack}: off by ${d} vs step ${honestStep}`);
    }
    // With the attacker's claim no larger than the others', clipped-mean's pull is at most its equal share.
    const fair = averageWeights('clipped-mean', global, updates, [600, 600, 600, 600, 600]);
    assert.ok(dist(fair) <= (2 * 0.2 + 0.05) * honestStep, `fair claims: ${dist(fair)}`);
  }
  // Attack-free, clipped-mean stays close to the plain mean.
  const updates = Array.from({ length: 5 }, (_, k) => honest(k));
  const a = averageWeights('mean', global, updates, [1, 1, 1, 1, 1]);
  const b = averageWeights('clipped-mean', global, updates, [1, 1, 1, 1, 1]);
  assert.ok(dist(b) < 0.2 * dist(global) && dist(a) < 0.2 * dist(global));
});

test('ensemble strategy: reputation comes from real rounds, reaches the report, survives exportState/importState', async () => {
  const { EnsembleStrategy } = await import('../server/strategies/ensemble.ts');
  const { DEFAULT_CONFIG } = await import('../server/config.ts');
  const { Rng } = await import('../shared/data/rng.ts');
  const { silentLogger } = await import('../server/logger.ts');
  const { logitsTask } = await import('../server/strategies/logits-task.ts');
  const r = rng(9);
  const rows = 40;
  const proxy = { images: Uint8Array.from({ length: rows * 28 * 28 }, () => Math.floor(r.u() * 256)), labels: null, count: rows, shape: [28, 28, 1] as [number, number, number], numClasses: c };
  const cfg = { ...DEFAULT_CONFIG, student: 'mlp' as const, proxySubset: rows, distillEpochs: 1, distillBatchSize: 40 };
  const strategy = new EnsembleStrategy(cfg, proxy, 'hash');
  const ids = ['honest-a', 'honest-b', 'honest-c', 'honest-d', 'liar'];
  for (let round = 1; round <= 3; round++) {
    const indices = strategy.proxyIndicesFor(round);
    const y = labels(indices.length, r);
    const honest = honestTeachers(4, y, r);
    const updates = ids.map((clientId, k) => ({
      clientId,
      numSamples: k === 4 ? 1e9 : 500,
      payload: k === 4 ? liar(y, 1) : honest[k].logits,
      bytes: 0,
      stats: { trainLoss: 0, trainAccuracy: 0, trainSeconds: 0 },
    }));
    const ctx = { round, config: cfg, proxy, validation: null, rng: new Rng(`t/${round}`), log: silentLogger };
    const report = await strategy.aggregate(ctx, updates, new Map([['x', logitsTask(cfg, indices)]]));
    const liarTrust = report.trust!.find((t) => t.clientId === 'liar')!;
    assert.ok(liarTrust.trust < 0.05 && liarTrust.score < 1, `round ${round}: ${JSON.stringify(liarTrust)}`);
    assert.ok(report.trust!.filter((t) => t.clientId !== 'liar').every((t) => t.trust > 0.9));
    // The liar wins at most 5% of the teacher's rows (rows where the honest teachers themselves are split).
    const won = argmaxRows(report.teacher!.probs, indices.length, c).filter((a, i) => a === (y[i] + 1) % c).length;
    assert.ok(won <= Math.ceil(0.05 * indices.length), `round ${round}: liar won ${won} of ${indices.length} rows`);
  }
  const scores = strategy.reputationScores();
  assert.equal(scores[0].clientId, 'liar');
  assert.ok(scores[0].score < 0.2, JSON.stringify(scores[0]));
  const state = structuredClone(await strategy.exportState());
  const restarted = new EnsembleStrategy(cfg, proxy, 'hash');
  await restarted.importState(state);
  assert.deepEqual(restarted.reputationScores(), scores);
  // A checkpoint written before reputation existed still imports; everyone starts at 1.
  const old = structuredClone(state) as unknown as Record<string, unknown>;
  delete old.reputation;
  const fromOld = new EnsembleStrategy(cfg, proxy, 'hash');
  await fromOld.importState(old);
  assert.deepEqual(fromOld.reputationScores(), []);
  assert.equal(fromOld.version, 3);
});
