/**
 * `fedistill simulate --strategy compare` (what `npm run demo` runs): distillation and textbook FedAvg on the same
 * split, then the centralized ceiling, side by side. On the committed subset with tiny settings: the ceiling trains on
 * exactly the clients' pooled partitions and learns; the comparison is read off the runs' measured bytes and rounds.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from './helpers.ts';
import { loadFashionMnist } from '../datasets/fashion-mnist.ts';
import { splitForFederation } from '../shared/data/federated-split.ts';
import { pooledRows, runCentralized, type CentralizedResult } from '../simulations/centralized.ts';
import { buildComparison, renderComparison, type Comparison } from '../simulations/compare-table.ts';
import type { SimulationResult } from '../simulations/simulate.ts';

/** The smallest federation that still trains: the committed subset, MLPs, one epoch each way, 200 proxy rows a round. */
const SMALL = ['--clients', '2', '--models', 'mlp', '--student', 'mlp', '--local-epochs', '1', '--distill-epochs', '1', '--proxy-subset', '200', '--workers', '1'];

async function tempDir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'fedistill-compare-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function offlineEnv(dir: string): Record<string, string> {
  return { FEDISTILL_OFFLINE: '1', FEDISTILL_SYSTEM_DATA_DIRS: '', FEDISTILL_DATA_DIR: '', XDG_CACHE_HOME: join(dir, 'xdg') };
}

/** Run `fn` with the offline environment set in this process (the subset, no download), restored after. */
async function offline<T>(env: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.keys(env).map((k) => [k, process.env[k]] as const);
  Object.assign(process.env, env);
  try {
    return await fn();
  } finally {
    for (const [k, v] of saved) v === undefined ? delete process.env[k] : (process.env[k] = v);
  }
}

test('the centralized ceiling trains on exactly the pooled client partitions and learns', { timeout: 60_000 }, async (t) => {
  const env = offlineEnv(await tempDir(t));
  // Non-default split settings, so a setting the ceiling failed to pass to the partitioner shows as other counts.
  // 5,500 of the subset's 6,000 rows held out as proxy leaves 500 pooled images: one epoch is a second.
  const split = { clients: 3, partition: 'dirichlet', alpha: 0.3, seed: 5, proxySize: 5500 } as const;
  const lines: string[] = [];
  const r: CentralizedResult = await offline(env, () => runCentralized({ ...split, epochs: 1, student: 'mlp', log: (l) => lines.push(l) }));

  const data = await offline(env, () => loadFashionMnist({ log: () => {} }));
  const expected = splitForFederation(data.train, { proxySize: split.proxySize, numClients: split.clients, partition: split.partition, alpha: split.alpha, shardsPerClient: 2, seed: split.seed });
  assert.deepEqual(r.data.clientSizes, expected.clients.map((c) => c.length), 'the same partitions as the federation');
  assert.equal(r.data.train, 500);
  assert.equal(r.data.trainSet, 6000);
  assert.equal(r.data.proxy, 5500);
  assert.equal(r.data.test, data.test.count);
  // pooledRows: every client's rows once, none of the proxy's.
  const pooled = pooledRows(expected);
  assert.equal(pooled.length, r.data.train);
  assert.deepEqual([...pooled], expected.clients.flatMap((c) => [...c]).sort((a, b) => a - b));
  const proxy = new Set(expected.proxy);
  assert.ok(pooled.every((row) => !proxy.has(row)), 'a proxy row was pooled');
  assert.throws(() => pooledRows({ proxy: expected.proxy, clients: [expected.clients[0], expected.clients[0].subarray(0, 1)] }), /two clients' partitions/);

  assert.equal(r.epochs.length, 1);
  assert.ok(r.finalAccuracy! > 0.3, `500 images, one epoch: ${r.finalAccuracy} is near chance (0.1)`);
  assert.equal(r.bestAccuracy, r.finalAccuracy);
  assert.deepEqual(r.options, { student: 'mlp', epochs: 1, learningRate: 0.001, batchSize: 64, seed: 5, clients: 3, partition: 'dirichlet', alpha: 0.3, shardsPerClient: 2, proxySize: 5500 });
  assert.match(lines.join('\n'), /centralized epoch 1\/1: test accuracy \d+\.\d\d%/);
  await assert.rejects(offline(env, () => runCentralized({ epochs: 0, log: () => {} })), /needs ≥ 1 epoch/);
});

test('--strategy compare: ensemble, textbook FedAvg and the ceiling, side by side from the measured bytes', { timeout: 90_000 }, async (t) => {
  const dir = await tempDir(t);
  const out = join(dir, 'compare.json');
  const r = await runCli(['simulate', '--strategy', 'compare', ...SMALL, '--rounds', '2', '--ceiling-epochs', '1', '--out', out], offlineEnv(dir), 85_000);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const { runs, ceiling, comparison } = JSON.parse(await readFile(out, 'utf8')) as { runs: SimulationResult[]; ceiling: CentralizedResult; comparison: Comparison };

  assert.deepEqual(runs.map((x) => x.options.strategy), ['ensemble', 'fedavg']);
  assert.equal(runs[1].options.fedavgAggregator, 'mean', "compare's FedAvg is the textbook mean, as npm run demo:fedavg");
  // The ceiling pools the same clients' partitions as the runs (the same split and seed).
  assert.deepEqual(ceiling.data.clientSizes, runs[0].data.clientSizes);
  assert.equal(ceiling.data.train, runs[0].data.clientSizes.reduce((a, b) => a + b, 0));
  assert.equal(ceiling.data.train, runs[0].data.train - runs[0].data.proxy);
  assert.equal(ceiling.epochs.length, 1);

  // The JSON's comparison is the one built from the runs; percentages are of the FedAvg run's measured bytes.
  assert.deepEqual(comparison, JSON.parse(JSON.stringify(buildComparison(runs, ceiling))));
  assert.equal(comparison.baseline, 'fedavg (mean)');
  const [ens, avg] = runs;
  for (const run of runs) {
    const uploads = run.rounds.reduce((n, x) => n + x.participants, 0);
    assert.equal(run.summary.uplinkPerClientRound, run.rounds.reduce((n, x) => n + x.uplinkBytes, 0) / uploads);
    assert.ok(run.summary.uplinkPerClientRound > 0 && run.summary.downlinkPerClientRound > 0);
  }
  const row = comparison.runs[0];
  const close = (a: number | null, b: number) => assert.ok(a !== null && Math.abs(a - b) < 1e-9, `${a} ≠ ${b}`);
  close(row.percentOfFedAvg.uplink, (100 * ens.summary.uplinkPerClientRound) / avg.summary.uplinkPerClientRound);
  close(row.percentOfFedAvg.downlink, (100 * ens.summary.downlinkPerClientRound) / avg.summary.downlinkPerClientRound);
  const total = (x: SimulationResult) => x.summary.uplinkPerClientRound + x.summary.downlinkPerClientRound;
  close(row.percentOfFedAvg.total, (100 * total(ens)) / total(avg));
  assert.ok(row.percentOfFedAvg.uplink! < 5, 'top-3 logits on 200 rows are far below an MLP’s weights');
  close(comparison.runs[1].percentOfFedAvg.total, 100);
  // Time to accuracy agrees with the run's own summary; the round is the first at or above the target.
  for (const [i, run] of runs.entries()) {
    comparison.runs[i].toTarget.forEach((x, j) => assert.equal(x.seconds, run.summary.timeToAccuracy[j].seconds));
  }
  assert.deepEqual(comparison.perRound.map((x) => x.round), [1, 2]);
  assert.equal(comparison.perRound[1].runs[1]!.studentAccuracy, avg.rounds[1].studentAccuracy);
  const [verdict] = comparison.verdicts;
  assert.equal(verdict.round, 2);
  assert.equal(verdict.reached, ens.summary.finalStudentAccuracy! >= avg.summary.finalStudentAccuracy!);

  // What the terminal shows: the tables, the ceiling row and the verdict line.
  assert.ok(r.stdout.includes(renderComparison(comparison)), 'the printed comparison is the JSON one');
  assert.match(r.stdout, /round\s+ensemble acc\s+ensemble s\s+fedavg \(mean\) acc\s+fedavg \(mean\) s/);
  assert.match(r.stdout, /\ncentralized ceiling\s+\d+\.\d\d%\s+\d+\.\d\d%\s+1 ep/);
  assert.match(r.stdout, /\nensemble (REACHED|did NOT reach) FedAvg's accuracy after 2 rounds: student \d+\.\d\d% vs fedavg \(mean\) \d+\.\d\d%.*; uplink \d+\.\d% and total \(up \+ down\) \d+\.\d% of FedAvg's/);

  // Runs of different lengths: the verdict compares at the last round both reached, the table leaves gaps.
  const shorter = { ...avg, rounds: avg.rounds.slice(0, 1) };
  const c = buildComparison([ens, shorter]);
  assert.equal(c.verdicts[0].round, 1);
  assert.equal(c.verdicts[0].studentAccuracy, ens.rounds[0].studentAccuracy);
  assert.equal(c.perRound[1].runs[1], null);
  assert.match(renderComparison(c), /\n\s+2\s+\d+\.\d\d%\s+\d+\s+-\s+-\n/);
});

test('--strategy compare keeps a --fedavg-aggregator that is given; --ceiling-epochs 0 skips the ceiling, and is refused with --attack', { timeout: 60_000 }, async (t) => {
  const dir = await tempDir(t);
  const out = join(dir, 'compare.json');
  const r = await runCli(['simulate', '--strategy', 'compare', ...SMALL, '--rounds', '1', '--fedavg-aggregator', 'median', '--ceiling-epochs', '0', '--out', out], offlineEnv(dir), 55_000);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const j = JSON.parse(await readFile(out, 'utf8')) as { runs: SimulationResult[]; ceiling?: unknown; comparison: Comparison };
  assert.equal(j.runs[1].options.fedavgAggregator, 'median');
  assert.equal(j.ceiling, undefined);
  assert.equal(j.comparison.ceiling, undefined);
  assert.equal(j.comparison.baseline, 'fedavg (median)');
  assert.doesNotMatch(r.stdout, /centralized ceiling/);
  // The attack and privacy tables have no ceiling row: asking for one there is a usage error, before any run.
  const refused = await runCli(['simulate', '--attack', 'random', '--ceiling-epochs', '1', ...SMALL], offlineEnv(dir), 30_000);
  assert.equal(refused.code, 2, refused.stdout + refused.stderr);
  assert.match(refused.stderr, /--ceiling-epochs adds the centralized ceiling to a side-by-side comparison/);
});
