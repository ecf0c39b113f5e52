import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { readCommandLine } from '../server/command-line.ts';
import { createLogger, type LogOptions } from '../server/logger.ts';
import type { StrategyName } from '../server/config.ts';
import { renderHelp, setPath, settingByKey, UsageError } from '../shared/settings/index.ts';
import { fmtEpsilon, runSimulation, type SimulationInput, type SimulationResult } from './simulate.ts';
import { kb, pct, table } from './report.ts';
import { attackRows, expandAttacks, renderAttackTable, runAttackTable } from './attack-table.ts';
import { privacyRows, privacySettingsLine, renderPrivacyTable, runPrivacyTable } from './privacy-table.ts';
import { runCentralized, type CentralizedResult } from './centralized.ts';
import { buildComparison, renderComparison, runLabel } from './compare-table.ts';
import type { AggregatorName } from '../shared/distill/aggregators.ts';
import type { FedAvgAggregatorName } from '../shared/distill/weight-averaging.ts';

const TITLE = 'fedistill simulate — a real aggregator and N real clients on Fashion-MNIST, on this machine';

/** Settings that shape the command rather than one simulation: what to compare, where the report goes, logging. */
const CLI_ONLY = new Set(['strategies', 'prevLambdas', 'out', 'logLevel', 'logFormat', 'attacks', 'attackRows', 'dpEpsilons', 'ceilingEpochs']);

export async function main(argv: string[]): Promise<void> {
  // Every flag, env var, default, range and relation comes from the settings table (shared/settings/).
  const cmd = readCommandLine('simulate', argv);
  if (cmd.help) {
    console.log(renderHelp('simulate', TITLE));
    return;
  }
  const v = cmd.values;
  // Only what was given: runSimulation fills in the rest, and scales a default that does not fit the data it finds.
  const opts: SimulationInput = {};
  // Dotted keys (privacy.epsilon, secureAggregation.enabled) are nested settings: runSimulation fills in the rest.
  for (const key of cmd.given) if (!CLI_ONLY.has(key)) setPath(opts as Record<string, unknown>, key, v[key]);
  // The embedded server's log lines (silent by default: the report is what this command prints).
  if (v.logLevel !== 'silent') opts.serverLog = createLogger({ level: v.logLevel as string, format: v.logFormat as LogOptions['format'] });
  // compare = ensemble, then FedAvg, then the centralized ceiling; a strategy named twice runs once.
  const compare = (v.strategies as string[]).includes('compare');
  const strategies = [...new Set((v.strategies as string[]).flatMap((x) => (x === 'compare' ? ['ensemble', 'fedavg'] : [x])))] as StrategyName[];
  const lambdas = v.prevLambdas as number[];
  const scenario = (opts.scenario ?? settingByKey('scenario').default) as string;

  if ((v.dpEpsilons || v.attacks) && cmd.given.has('ceilingEpochs')) {
    throw new UsageError('--ceiling-epochs adds the centralized ceiling to a side-by-side comparison, not to the --dp-epsilons or --attack tables');
  }
  if (v.dpEpsilons) {
    if (v.attacks) throw new UsageError('--dp-epsilons and --attack each run a table of their own: give one');
    return privacyReport(opts, strategies, v);
  }
  if (v.attacks) return attackReport(opts, strategies, v);
  if (v.attackRows) throw new UsageError('--aggregators names the rows of an attack table: give --attack too');

  // The ceiling: with compare (unless --ceiling-epochs 0), or with any strategy when --ceiling-epochs is given.
  const ceilingEpochs = compare || cmd.given.has('ceilingEpochs') ? (v.ceilingEpochs as number) : 0;
  // compare's FedAvg is the textbook one (plain weighted mean, as `npm run demo:fedavg`) unless the aggregator is given.
  const fedavgAggregator: FedAvgAggregatorName | undefined = compare && !cmd.given.has('fedavgAggregator') ? 'mean' : undefined;

  const out = (v.out as string | undefined) ?? `results/simulate-${compare ? 'compare' : strategies.join('-')}${scenario !== 'none' ? `-${scenario}` : ''}.json`;
  mkdirSync(dirname(out), { recursive: true });
  const results: SimulationResult[] = [];
  let ceiling: CentralizedResult | undefined;
  const sideBySide = () => strategies.length * lambdas.length > 1 || ceilingEpochs > 0;
  // After every run, so a long comparison that is stopped midway keeps what it measured.
  const save = (extra: Record<string, unknown> = {}) =>
    writeFileSync(out, JSON.stringify(sideBySide() ? { runs: results, ...(ceiling ? { ceiling } : {}), ...extra } : results[0], null, 2));
  for (const s of strategies) {
    for (const prevStudentLambda of lambdas) {
      const r = await runSimulation({ ...opts, strategy: s, prevStudentLambda, ...(s === 'fedavg' && fedavgAggregator ? { fedavgAggregator } : {}) });
      printSummary(r, strategies.includes('fedavg'));
      results.push(r);
      save();
    }
  }
  if (ceilingEpochs > 0) {
    const { serverLog: _serverLog, ...centralOpts } = opts;
    ceiling = await runCentralized({ ...centralOpts, epochs: ceilingEpochs, log: (l) => console.log(l) });
    save();
  }
  if (sideBySide()) {
    const comparison = buildComparison(results, ceiling);
    console.log(`\n${renderComparison(comparison)}`);
    if (results.length > 1 && results.every((r) => r.continual)) printForgetting(results);
    save({ comparison });
  }
  console.log(`\nresults written to ${out}`);
}

/** --attack: every row clean and under every attack, one table (attack-table.ts); results saved after every run. */
async function attackReport(opts: SimulationInput, strategies: StrategyName[], v: Record<string, unknown>): Promise<void> {
  const lambdas = v.prevLambdas as number[];
  if (lambdas.length > 1) throw new UsageError('--attack compares attacks, not --prev-lambda values: give one --prev-lambda');
  const attacks = expandAttacks(v.attacks as string[]);
  const rows = attackRows(strategies, v.attackRows as string[] | undefined, { aggregator: v.aggregator as AggregatorName, fedavgAggregator: v.fedavgAggregator as FedAvgAggregatorName });
  const out = (v.out as string | undefined) ?? `results/simulate-attacks.json`;
  mkdirSync(dirname(out), { recursive: true });
  const runs: SimulationResult[] = [];
  console.log(
    `fedistill simulate --attack: ${rows.length} row(s) (${rows.map((r) => r.label).join(', ')}) × (clean + ${attacks.length} attack(s)) = ` +
      `${rows.length * (1 + attacks.length)} runs, one after the other, on the same split and seed`,
  );
  const { table: t } = await runAttackTable(
    { ...opts, prevStudentLambda: lambdas[0] },
    {
      attacks,
      rows,
      progress: (line) => console.log(line),
      onRun: (r) => {
        runs.push(r);
        writeFileSync(out, JSON.stringify({ runs }, null, 2)); // a long table stopped midway keeps what it measured
      },
    },
  );
  console.log(`\n${renderAttackTable(t)}`);
  console.log(`\n${attackSettingsLine(t.settings)}; ${(t.seconds / 60).toFixed(1)} min in all`);
  writeFileSync(out, JSON.stringify({ attackTable: t, runs }, null, 2));
  console.log(`results written to ${out}`);
}

/** --dp-epsilons: every strategy at every target ε, one table (privacy-table.ts); results saved after every run. */
async function privacyReport(opts: SimulationInput, strategies: StrategyName[], v: Record<string, unknown>): Promise<void> {
  // The settings table's relations are per flag; this one is between a simulate-only list and the server's setting.
  if (opts.privacy?.epsilon !== undefined || opts.privacy?.noiseMultiplier !== undefined) {
    throw new UsageError('--dp-epsilons runs one simulation per ε and calibrates each: give it without --dp-epsilon and --dp-noise-multiplier');
  }
  const lambdas = v.prevLambdas as number[];
  if (lambdas.length > 1) throw new UsageError('--dp-epsilons compares ε values, not --prev-lambda values: give one --prev-lambda');
  const targets = v.dpEpsilons as number[];
  const rows = privacyRows(strategies, {
    aggregator: v.aggregator as AggregatorName,
    fedavgAggregator: v.fedavgAggregator as FedAvgAggregatorName,
    secureAggregation: v['secureAggregation.enabled'] === true,
    noise: v['privacy.noise'] as 'local' | 'central',
  });
  const out = (v.out as string | undefined) ?? `results/simulate-privacy.json`;
  mkdirSync(dirname(out), { recursive: true });
  const runs: SimulationResult[] = [];
  console.log(
    `fedistill simulate --dp-epsilons: ${rows.length} row(s) (${rows.map((r) => r.label).join(', ')}) × ε ∈ {${targets.map(fmtEpsilon).join(', ')}} = ` +
      `${rows.length * targets.length} runs, one after the other, on the same split and seed`,
  );
  const { table: t } = await runPrivacyTable(
    { ...opts, prevStudentLambda: lambdas[0] },
    {
      rows,
      targets,
      progress: (line) => console.log(line),
      onRun: (r) => {
        runs.push(r);
        writeFileSync(out, JSON.stringify({ runs }, null, 2)); // a long table stopped midway keeps what it measured
      },
    },
  );
  console.log(`
${renderPrivacyTable(t)}`);
  console.log(`
${privacySettingsLine(t.settings)}; ${(t.seconds / 60).toFixed(1)} min in all`);
  writeFileSync(out, JSON.stringify({ privacyTable: t, runs }, null, 2));
  console.log(`results written to ${out}`);
}

/** The settings a table was measured with, as one line (README tables quote it). */
function attackSettingsLine(s: Record<string, unknown>): string {
  const keys = ['clients', 'models', 'student', 'rounds', 'localEpochs', 'distillEpochs', 'proxySize', 'proxySubset', 'codec', 'partition', 'alpha', 'attackFraction', 'seed'];
  return `settings: ${keys.filter((k) => s[k] !== undefined).map((k) => `${k} ${Array.isArray(s[k]) ? (s[k] as unknown[]).join(',') : s[k]}`).join(', ')}`;
}

function printSummary(r: SimulationResult, fedavgRuns = false): void {
  const s = r.summary;
  console.log(
    `\n${r.options.strategy}: final student accuracy ${pct(s.finalStudentAccuracy)} (best ${pct(s.bestStudentAccuracy)}) on ${r.data.test} test images` +
      `${r.data.isSubset ? ' (SUBSET)' : ''}; uplink ${kb(s.uplinkPerClientRound)} and downlink ${kb(s.downlinkPerClientRound)} per client-round; ${s.seconds.toFixed(0)} s`,
  );
  if (r.privacy) {
    const p = r.privacy.status;
    const declined = r.privacy.clients.reduce((n, c) => n + c.declined, 0);
    console.log(
      `privacy: ε = ${fmtEpsilon(p.epsilon)} spent at δ = ${p.delta} (the most any client did; ${fmtEpsilon(p.epsilonPerRound)} per upload), ${p.mode} noise, ` +
        `z = ${p.noiseMultiplier.toFixed(3)}, clip ${p.clip}; clients' own budget ε = ${fmtEpsilon(r.privacy.clientBudget ?? Infinity)}` +
        `${declined ? `, ${declined} round(s) declined on it` : ''}${p.exhaustedClients ? `, ${p.exhaustedClients} client(s) exhausted` : ''}`,
    );
  }
  if (r.secureAggregation) {
    const sa = r.secureAggregation;
    console.log(
      `secure aggregation: ${sa.rounds} round(s), at least ${sa.contributorsMin} contributors each; ${kb(sa.keyBytesPerRound)} and ${sa.secondsPerRound.toFixed(2)} s per round for the protocol`,
    );
  }
  if (s.timeToAccuracy.length) {
    console.log(`time to accuracy (s from all clients connected): ${s.timeToAccuracy.map((t) => `${pct(t.target)}: ${t.seconds === null ? 'not reached' : t.seconds.toFixed(0)}`).join(', ')}`);
  }
  if (r.staleness) {
    const st = r.staleness;
    console.log(
      `online: ${st.accepted} uploads taken in; staleness in student versions: mean ${st.staleness.mean.toFixed(2)}, median ${st.staleness.p50}, p90 ${st.staleness.p90}, max ${st.staleness.max}`,
    );
    console.log(`staleness histogram (versions behind: uploads): ${st.histogram.map((n, i) => `${i}: ${n}`).filter((_, i) => st.histogram[i] > 0).join(', ')}`);
  }
  if (r.continual) {
    const c = r.continual;
    console.log(`\n${c.scenario.kind}, ${c.scenario.tasks.length} tasks × ${c.scenario.roundsPerTask} rounds, previous-student λ = ${r.options.prevStudentLambda}:`);
    console.log(
      table(
        ['task', 'classes', 'acc at end of task', 'best acc', 'final acc', 'forgetting'],
        c.tasks.map((t) => [t.task, t.classes.join(','), pct(t.atEndOfTask), pct(t.best), pct(t.final), pct(t.forgetting)]),
      ),
    );
    console.log(`average final accuracy over tasks ${pct(c.averageAccuracy)}, average forgetting (tasks 1..${c.tasks.length - 1}) ${pct(c.averageForgetting)}`);
  }
  if (r.options.strategy !== 'fedavg' && !fedavgRuns) {
    const weights = r.studentParams * 4;
    console.log(
      `the student's weights are ${kb(weights)} (${r.studentParams} × 4 B): distillation uplink is ${((100 * s.uplinkPerClientRound) / weights).toFixed(1)}% of one FedAvg upload` +
        ` (measure FedAvg itself on the same split: npm run demo:fedavg, or --strategy compare)`,
    );
  }
  console.log();
}

/** Continual scenarios: how much of each task every run forgot (best minus final accuracy on the task's classes). */
function printForgetting(runs: SimulationResult[]): void {
  console.log('\nForgetting (best minus final accuracy per task):');
  console.log(
    table(
      ['run', ...runs[0].continual!.tasks.map((t) => `T${t.task} {${t.classes.join(',')}}`), 'avg forgetting', 'avg final acc'],
      runs.map((r) => [runLabel(r, runs), ...r.continual!.tasks.map((t) => pct(t.forgetting)), pct(r.continual!.averageForgetting), pct(r.continual!.averageAccuracy)]),
    ),
  );
}
