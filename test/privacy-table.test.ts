/**
 * `fedistill simulate --dp-epsilons`: the accuracy-versus-ε table, run for real through the CLI on the committed
 * subset (2–3 clients, an MLP, 2 rounds): every strategy gets a column per ε, a DP run spends ε > 0 and no more than
 * its target (by the server's accountant and by each client's own), its clients tell the server 0/1 samples, and the
 * run without DP has no privacy section at all.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from './helpers.ts';
import type { PrivacyTable } from '../simulations/privacy-table.ts';
import type { SimulationResult } from '../simulations/simulate.ts';

/** The smallest federation that still trains: the committed subset, MLPs, one epoch each way, 200 proxy rows a round. */
const SMALL = ['--clients', '2', '--models', 'mlp', '--student', 'mlp', '--rounds', '2', '--local-epochs', '1', '--distill-epochs', '1', '--proxy-subset', '200', '--workers', '1'];

async function tempDir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'fedistill-privacy-table-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function offlineEnv(dir: string): Record<string, string> {
  return { FEDISTILL_OFFLINE: '1', FEDISTILL_SYSTEM_DATA_DIRS: '', FEDISTILL_DATA_DIR: '', XDG_CACHE_HOME: join(dir, 'xdg') };
}

test('--dp-epsilons 8,inf: ensemble and DP-FedAvg, each at ε = 8 and without DP, ε within the target', { timeout: 120_000 }, async (t) => {
  const dir = await tempDir(t);
  const out = join(dir, 'privacy.json');
  const r = await runCli(['simulate', '--strategy', 'ensemble,fedavg', '--dp-epsilons', '8,inf', ...SMALL, '--out', out], offlineEnv(dir), 110_000);
  assert.equal(r.code, 0, r.stdout + r.stderr);

  const { privacyTable, runs } = JSON.parse(await readFile(out, 'utf8')) as { privacyTable: PrivacyTable; runs: SimulationResult[] };
  assert.deepEqual(privacyTable.targets, [8, null]);
  assert.deepEqual(privacyTable.rows.map((x) => x.strategy), ['ensemble', 'fedavg']);
  assert.match(privacyTable.rows[1].label, /DP-FedAvg/);
  assert.equal(runs.length, 4);
  for (const row of privacyTable.rows) {
    assert.deepEqual(row.cells.map((c) => c.target), [8, null], row.label);
    const [dp, plain] = row.cells;
    assert.ok(dp.epsilon! > 0 && dp.epsilon! <= 8 * (1 + 1e-9), `${row.label}: ε spent ${dp.epsilon} is not in (0, 8]`);
    assert.ok(dp.noiseMultiplier! > 0, `${row.label}: no noise multiplier`);
    assert.equal(dp.mode, 'local');
    assert.equal(plain.epsilon, undefined);
    assert.equal(plain.noiseMultiplier, undefined);
    for (const c of row.cells) assert.ok(c.studentAccuracy! >= 0 && c.studentAccuracy! <= 1 && c.uplinkBytes > 0, `${row.label}: ${JSON.stringify(c)}`);
  }

  for (const run of runs) {
    const dpRun = run.options.privacy.epsilon > 0;
    const name = `${run.options.strategy} ε=${dpRun ? run.options.privacy.epsilon : '∞'}`;
    if (!dpRun) {
      assert.equal(run.privacy, undefined, name);
      assert.ok(run.rounds.every((x) => x.privacy === undefined), name);
      continue;
    }
    // ε per round and cumulative, for every round, growing to the federation's final ε.
    assert.equal(run.rounds.length, 2, name);
    const perRound = run.rounds.map((x) => x.privacy!.epsilon);
    assert.ok(perRound[0] > 0 && perRound[1] > perRound[0], `${name}: ${perRound}`);
    assert.equal(perRound[1], run.privacy!.status.epsilon);
    assert.ok(run.rounds.every((x) => x.privacy!.epsilonRound === run.rounds[0].privacy!.epsilonRound), name);
    // Each client enforced the run's budget itself, counted the same ε as the server, and hid its sample count.
    assert.equal(run.privacy!.clientBudget, 8);
    assert.equal(run.privacy!.clients.length, 2, name);
    for (const c of run.privacy!.clients) {
      assert.ok(c.numSamples === 0 || c.numSamples === 1, `${name} ${c.id} told the server ${c.numSamples} samples`);
      assert.equal(c.uploads, 2, `${name} ${c.id}`);
      assert.equal(c.declined, 0, `${name} ${c.id}`);
      assert.ok(Math.abs(c.clientEpsilon! - c.serverEpsilon!) < 1e-9 && c.clientEpsilon! <= 8 * (1 + 1e-9), `${name} ${c.id}: ${JSON.stringify(c)}`);
    }
  }

  // What the terminal shows: ε next to accuracy each round, and the table with both columns for both rows.
  assert.match(r.stdout, /student acc \(test\).*ε round\s+ε total/);
  assert.match(r.stdout, /strategy\s+ε = 8\s+ε = ∞ \(no DP\)/);
  assert.match(r.stdout, /\nensemble \([\w-]+, local noise\)\s+\d+\.\d\d% \(\d\.\d{3}\)\s+\d+\.\d\d%/);
  assert.match(r.stdout, /\nDP-FedAvg \([\w-]+, local noise\)\s+\d+\.\d\d% \(\d\.\d{3}\)\s+\d+\.\d\d%/);
});

test('--dp-epsilons with --secure-aggregation: distributed noise, the protocol\'s cost per round in the table', { timeout: 120_000 }, async (t) => {
  const dir = await tempDir(t);
  const out = join(dir, 'privacy-sa.json');
  const args = ['simulate', '--strategy', 'ensemble', '--secure-aggregation', '--aggregator', 'mean-probs', '--dp-epsilons', '8', ...SMALL, '--clients', '3', '--out', out];
  const r = await runCli(args, offlineEnv(dir), 110_000);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const { privacyTable, runs } = JSON.parse(await readFile(out, 'utf8')) as { privacyTable: PrivacyTable; runs: SimulationResult[] };
  const [cell] = privacyTable.rows[0].cells;
  assert.equal(cell.mode, 'distributed');
  assert.ok(cell.epsilon! > 0 && cell.epsilon! <= 8 * (1 + 1e-9), `ε ${cell.epsilon}`);
  assert.equal(cell.secureAggregation!.rounds, 2);
  assert.ok(cell.secureAggregation!.contributorsMin >= 2 && cell.secureAggregation!.keyBytesPerRound > 0, JSON.stringify(cell.secureAggregation));
  assert.ok(runs[0].rounds.every((x) => x.secureAggregation!.contributors === 3), JSON.stringify(runs[0].rounds.map((x) => x.secureAggregation)));
  assert.match(privacyTable.rows[0].label, /secure aggregation/);
  assert.match(r.stdout, /ε round\s+ε total\s+secagg K\s+secagg s\s+secagg bytes/);
});

test('--dp-epsilons refuses what it cannot run, before any run starts', { timeout: 60_000 }, async (t) => {
  const dir = await tempDir(t);
  const env = offlineEnv(dir);
  const both = await runCli(['simulate', '--dp-epsilons', '1,inf', '--dp-epsilon', '4', ...SMALL, '--out', join(dir, 'a.json')], env);
  assert.equal(both.code, 2, both.stdout + both.stderr);
  assert.match(both.stderr, /--dp-epsilons .*without --dp-epsilon/);
  const bad = await runCli(['simulate', '--dp-epsilons', '0,8', ...SMALL], env);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--dp-epsilons: '0' is not an ε > 0 or inf/);
  // Without DP a secure sum gives only mean-probs or confidence: said before minutes of other runs, not after.
  const median = await runCli(['simulate', '--dp-epsilons', '8,inf', '--secure-aggregation', '--aggregator', 'median', ...SMALL, '--out', join(dir, 'b.json')], env);
  assert.notEqual(median.code, 0);
  assert.match(median.stderr, /mean-probs or confidence/);
  assert.doesNotMatch(median.stdout, /round\s+uploads/);
});
