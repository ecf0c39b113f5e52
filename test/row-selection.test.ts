import { test } from 'node:test';
import assert from 'node:assert/strict';
import { margins, selectRows } from '../shared/distill/row-selection.ts';
import { softmaxRows } from '../shared/distill/aggregators.ts';
import { predictLogits } from '../shared/models/training.ts';

const c = 3;
/** Row i's probabilities: a margin that we choose, the rest spread over the other classes. */
function rowsWithMargins(ms: number[]): Float32Array {
  const p = new Float32Array(ms.length * c);
  ms.forEach((m, i) => {
    // top = (1 + 2m)/3, the two others (1 − m)/3 each → margin top − second = m.
    p[i * c] = (1 + 2 * m) / 3;
    p[i * c + 1] = (1 - m) / 3;
    p[i * c + 2] = (1 - m) / 3;
  });
  return p;
}

test('margins: top-1 minus top-2 probability per row, whatever the order of the classes', () => {
  const m = margins(Float32Array.from([0.1, 0.7, 0.2, 0.5, 0.5, 0, 0.2, 0.1, 0.7]), 3, 3);
  assert.deepEqual(Array.from(m, (v) => Math.round(v * 100) / 100), [0.5, 0, 0.5]);
});

test('selectRows: the share by smallest margin, the rest by oldest label, sorted, ties by the shuffle', () => {
  const ms = [0.9, 0.05, 0.8, 0.1, 0.7, 0.2, 0.6, 0.3, 0.5, 0.4];
  const probs = rowsWithMargins(ms);
  // Rows 0..4 labelled in round 2, rows 5..7 in round 1, rows 8 and 9 never.
  const labelledAt = Uint32Array.from([2, 2, 2, 2, 2, 1, 1, 1, 0, 0]);
  const order = Uint32Array.from([9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
  // 6 rows, half by margin: the three smallest margins are rows 1 (0.05), 3 (0.1), 5 (0.2); then the oldest labels:
  // never-labelled rows 9 and 8 (9 first in the shuffle), then from round 1 row 7 (before 6 in the shuffle).
  const rows = selectRows({ probs, labelledAt, numClasses: c, n: 6, uncertainShare: 0.5, order });
  assert.deepEqual(Array.from(rows), [1, 3, 5, 7, 8, 9]);
  // Share 0: age alone; share 1: margin alone.
  assert.deepEqual(Array.from(selectRows({ probs, labelledAt, numClasses: c, n: 4, uncertainShare: 0, order })), [6, 7, 8, 9]);
  assert.deepEqual(Array.from(selectRows({ probs, labelledAt, numClasses: c, n: 4, uncertainShare: 1, order })), [1, 3, 5, 7]);
  // Every row asked for: all of them, once.
  assert.deepEqual(Array.from(selectRows({ probs, labelledAt, numClasses: c, n: 50, uncertainShare: 0.5, order })), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
});

test('selectRows: equal margins and equal ages fall on the shuffle order, not on low indices', () => {
  const probs = rowsWithMargins(new Array(8).fill(0.5));
  const labelledAt = new Uint32Array(8);
  const order = Uint32Array.from([5, 2, 7, 0, 1, 3, 4, 6]);
  assert.deepEqual(Array.from(selectRows({ probs, labelledAt, numClasses: c, n: 3, uncertainShare: 0.5, order })), [2, 5, 7]);
});

test('selectRows: inconsistent input is refused', () => {
  const probs = rowsWithMargins([0.1, 0.2]);
  const labelledAt = new Uint32Array(2);
  assert.throws(() => selectRows({ probs, labelledAt: new Uint32Array(3), numClasses: c, n: 1, uncertainShare: 0.5, order: Uint32Array.from([0, 1, 2]) }), /probabilities for 3 rows/);
  assert.throws(() => selectRows({ probs, labelledAt, numClasses: c, n: 1, uncertainShare: 0.5, order: Uint32Array.from([0]) }), /order of 1 rows/);
  assert.throws(() => selectRows({ probs, labelledAt, numClasses: c, n: 1, uncertainShare: 1.5, order: Uint32Array.from([0, 1]) }), /not in \[0, 1\]/);
});

test('ensemble strategy: after a round, the next asks for the rows where the distilled student is least sure, plus the oldest', async () => {
  const { EnsembleStrategy } = await import('../server/strategies/ensemble.ts');
  const { DEFAULT_CONFIG } = await import('../server/config.ts');
  const { Rng } = await import('../shared/data/rng.ts');
  const { silentLogger } = await import('../server/logger.ts');
  const { logitsTask } = await import('../server/strategies/logits-task.ts');
  const rng = new Rng('row-selection');
  const count = 120;
  const k = 10;
  const proxy = { images: Uint8Array.from({ length: count * 28 * 28 }, () => Math.floor(rng.next() * 256)), labels: null, count, shape: [28, 28, 1] as [number, number, number], numClasses: k };
  const cfg = { ...DEFAULT_CONFIG, student: 'mlp' as const, proxySubset: 40, distillEpochs: 1, distillBatchSize: 40, distillThreads: 1, uncertainRows: 0.5 };
  const strategy = new EnsembleStrategy(cfg, proxy, 'hash');
  try {
    // Round 1: the untrained student knows nothing, so the first window of the shuffle is asked for.
    const r1 = await strategy.roundRows(1);
    assert.deepEqual(Array.from(r1), Array.from(strategy.proxyIndicesFor(1)));
    const logits = Float32Array.from({ length: r1.length * k }, () => 4 * rng.next());
    const ctx = { round: 1, config: cfg, proxy, validation: null, rng: new Rng('t/1'), log: silentLogger };
    const update = { clientId: 'a', numSamples: 100, payload: logits, bytes: 0, stats: { trainLoss: 0, trainAccuracy: 0, trainSeconds: 0 } };
    await strategy.aggregate(ctx, [update], new Map([['a', logitsTask(cfg, r1)]]));
    const r2 = await strategy.roundRows(2);
    assert.equal(r2.length, 40);
    assert.deepEqual(Array.from(r2), Array.from(r2).sort((a, b) => a - b), 'sorted');
    const m = margins(softmaxRows(await predictLogits(strategy.model, proxy), count, k, 1), count, k);
    const byMargin = Array.from({ length: count }, (_, i) => i).sort((a, b) => m[a] - m[b]);
    for (const row of byMargin.slice(0, 20)) assert.ok(r2.includes(row), `row ${row} (margin ${m[row]}) is among the 20 least sure`);
    // The other 20 are never-labelled rows (round 1 labelled 40 of 120, so 80 have never been asked for).
    const labelled = new Set(r1);
    const rest = Array.from(r2).filter((row) => !byMargin.slice(0, 20).includes(row));
    assert.equal(rest.length, 20);
    assert.ok(rest.every((row) => !labelled.has(row)), 'the rest are rows never labelled');
    // And it is what the round's tasks carry.
    const tasks = await strategy.configureRound({ ...ctx, round: 2, rng: new Rng('t/2') }, [{ id: 'a', model: 'mlp', weightEncodings: [] } as never]);
    assert.deepEqual(Array.from(tasks.get('a')!.indices!), Array.from(r2));
    // A server restored from a checkpoint (same student, same bank) asks for the same rows.
    const restored = new EnsembleStrategy(cfg, proxy, 'hash');
    await restored.importState(await strategy.exportState());
    assert.deepEqual(Array.from(await restored.roundRows(2)), Array.from(r2));
    await restored.close();
    // --uncertain-rows 0: the shuffle's windows, as before, also once the student has learned.
    const windows = new EnsembleStrategy({ ...cfg, uncertainRows: 0 }, proxy, 'hash');
    await windows.aggregate(ctx, [update], new Map([['a', logitsTask(cfg, r1)]]));
    assert.equal(windows.version, 1);
    assert.deepEqual(Array.from(await windows.roundRows(2)), Array.from(windows.proxyIndicesFor(2)));
    assert.notDeepEqual(Array.from(windows.proxyIndicesFor(2)), Array.from(r2), 'the two rules pick different rows here');
    await windows.close();
  } finally {
    await strategy.close();
  }
});
