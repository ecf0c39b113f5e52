/**
 * `fedistill simulate --dp-epsilons 1,4,8,inf`: accuracy against ε. Each row (a strategy: distillation with its
 * teacher aggregator, or DP-FedAvg) runs once per target ε on the same split, seed and settings; `inf` is the run
 * without DP. The report sets the student's final accuracy side by side with the ε actually spent, the noise
 * multiplier the server calibrated to each target, and what the run sent.
 */
import type { StrategyName } from '../server/config.ts';
import { SECURE_AGGREGATORS } from '../server/privacy/check.ts';
import type { AggregatorName } from '../shared/distill/aggregators.ts';
import type { FedAvgAggregatorName } from '../shared/distill/weight-averaging.ts';
import { kb, pct, table } from './report.ts';
import { fmtEpsilon, runSimulation, type SimulationInput, type SimulationResult } from './simulate.ts';

/** One row: a strategy, its aggregator, and whether its teachers were summed under secure aggregation. */
export interface PrivacyRow {
  label: string;
  strategy: StrategyName;
  secureAggregation: boolean;
}

/** What one run (one row, one target ε) measured. JSON has no Infinity: `target` null is the run without DP. */
export interface PrivacyCell {
  target: number | null;
  studentAccuracy?: number;
  bestStudentAccuracy?: number;
  teacherAccuracy?: number;
  /** The federation's ε at the end (the most any one client spent), at `delta`; absent without DP. */
  epsilon?: number;
  epsilonPerRound?: number;
  /** z as sent to the clients (noise std over the clip-based norm), and over the sensitivity the accountant uses. */
  noiseMultiplier?: number;
  effectiveNoiseMultiplier?: number;
  mode?: 'local' | 'central' | 'distributed';
  /** Rounds some client declined (its own budget), summed over clients. */
  declined: number;
  uplinkBytes: number;
  /** With secure aggregation: the protocol's mean extra seconds and bytes per round. */
  secureAggregation?: SimulationResult['secureAggregation'];
  perRound: { round: number; studentAccuracy?: number; epsilon?: number }[];
  seconds: number;
}

export interface PrivacyTableRow extends PrivacyRow {
  cells: PrivacyCell[];
}

export interface PrivacyTable {
  /** The columns, in order (null = no DP). */
  targets: (number | null)[];
  delta: number;
  clip: number;
  /** The settings every run shared (rows set the strategy; columns ε). */
  settings: Record<string, unknown>;
  rows: PrivacyTableRow[];
  seconds: number;
}

/**
 * The rows for `strategies` (compare already expanded): fedavg is DP-FedAvg (clipped, noised weight updates) and never
 * runs under secure aggregation, which sums teachers' probabilities only; online has no rounds to account per upload.
 */
export function privacyRows(strategies: StrategyName[], o: { aggregator: AggregatorName; fedavgAggregator: FedAvgAggregatorName; secureAggregation: boolean; noise?: 'local' | 'central' }): PrivacyRow[] {
  const noise = `${o.noise ?? 'local'} noise`;
  return [...new Set(strategies)].map((strategy) => {
    if (strategy === 'online') throw new RangeError('--dp-epsilons: the online strategy takes uploads one at a time, without rounds to account; use ensemble, mutual or fedavg');
    if (strategy === 'fedavg') return { label: `DP-FedAvg (${o.fedavgAggregator}, ${noise})`, strategy, secureAggregation: false };
    return { label: `${strategy} (${o.aggregator}, ${o.secureAggregation ? 'secure aggregation' : noise})`, strategy, secureAggregation: o.secureAggregation };
  });
}

/**
 * What cannot run, said before the first run rather than after minutes of others: without DP (the `inf` column) a
 * secure sum only gives the aggregators computed from a sum (with DP the teacher is the noisy mean either way).
 */
export function checkPrivacyTable(rows: PrivacyRow[], targets: number[], aggregator: AggregatorName): void {
  if (!targets.length) throw new RangeError('--dp-epsilons: no ε to run');
  const sa = rows.some((r) => r.secureAggregation);
  if (sa && targets.includes(Infinity) && !(SECURE_AGGREGATORS as readonly string[]).includes(aggregator)) {
    throw new RangeError(
      `--dp-epsilons with inf and --secure-aggregation: without DP a secure sum only gives --aggregator ${SECURE_AGGREGATORS.join(' or ')} (got ${aggregator}); drop inf or pick one of those`,
    );
  }
}

export interface PrivacyTableOptions {
  rows: PrivacyRow[];
  /** Target ε per column; Infinity = no DP. */
  targets: number[];
  progress?: (line: string) => void;
  /** Every finished run, e.g. to save results as they come. */
  onRun?: (r: SimulationResult, row: PrivacyRow, target: number) => void;
}

/** Run every row at every target ε (rows × targets simulations, one after the other, same split and seed). */
export async function runPrivacyTable(base: SimulationInput, o: PrivacyTableOptions): Promise<{ table: PrivacyTable; runs: SimulationResult[] }> {
  if (!o.rows.length) throw new RangeError('runPrivacyTable: no rows');
  checkPrivacyTable(o.rows, o.targets, base.aggregator ?? 'mean-probs');
  if ((base.privacy?.epsilon ?? 0) > 0 || (base.privacy?.noiseMultiplier ?? 0) > 0) {
    throw new RangeError('--dp-epsilons sets each run\'s ε: give it without --dp-epsilon and --dp-noise-multiplier');
  }
  const progress = o.progress ?? (() => {});
  const total = o.rows.length * o.targets.length;
  const t0 = performance.now();
  const runs: SimulationResult[] = [];
  const rows: PrivacyTableRow[] = [];
  for (const row of o.rows) {
    const cells: PrivacyCell[] = [];
    for (const target of o.targets) {
      const n = runs.length + 1;
      const name = `${row.label} × ε = ${fmtEpsilon(target)}`;
      const elapsed = (performance.now() - t0) / 1000;
      const left = runs.length ? ` (${fmtSeconds(elapsed)} so far, about ${fmtSeconds((elapsed / runs.length) * (total - runs.length))} left)` : '';
      progress(`\n[${n}/${total}] ${name}${left}`);
      const r = await runSimulation({
        ...base,
        strategy: row.strategy,
        privacy: { ...base.privacy, epsilon: Number.isFinite(target) ? target : 0, noiseMultiplier: 0 },
        secureAggregation: { ...base.secureAggregation, enabled: row.secureAggregation },
      });
      runs.push(r);
      o.onRun?.(r, row, target);
      const cell = cellOf(r, target);
      cells.push(cell);
      const spent = cell.epsilon === undefined ? 'no DP' : `ε spent ${fmtEpsilon(cell.epsilon)}, z = ${cell.noiseMultiplier!.toFixed(3)}`;
      progress(`[${n}/${total}] ${name}: student ${pct(cell.studentAccuracy)}, ${spent}, uplink ${kb(cell.uplinkBytes)}, ${cell.seconds.toFixed(0)} s`);
    }
    rows.push({ ...row, cells });
  }
  const settings: Record<string, unknown> = { ...runs[0].options };
  delete settings.strategy;
  return {
    table: {
      targets: o.targets.map((t) => (Number.isFinite(t) ? t : null)),
      delta: runs[0].options.privacy.delta,
      clip: runs[0].options.privacy.clip,
      settings,
      rows,
      seconds: (performance.now() - t0) / 1000,
    },
    runs,
  };
}

function cellOf(r: SimulationResult, target: number): PrivacyCell {
  const p = r.privacy?.status;
  return {
    target: Number.isFinite(target) ? target : null,
    studentAccuracy: r.summary.finalStudentAccuracy,
    bestStudentAccuracy: r.summary.bestStudentAccuracy,
    teacherAccuracy: r.summary.finalTeacherAccuracy,
    epsilon: p?.epsilon,
    epsilonPerRound: p?.epsilonPerRound,
    noiseMultiplier: p?.noiseMultiplier,
    effectiveNoiseMultiplier: p?.effectiveNoiseMultiplier,
    mode: p?.mode,
    declined: r.privacy?.clients.reduce((n, c) => n + c.declined, 0) ?? 0,
    uplinkBytes: r.summary.uplinkBytes,
    secureAggregation: r.secureAggregation,
    perRound: r.rounds.map((x) => ({ round: x.round, studentAccuracy: x.studentAccuracy, epsilon: x.privacy?.epsilon })),
    seconds: r.summary.seconds,
  };
}

/** The report: accuracy per row and ε (with the ε spent), then the noise multipliers, then the bytes sent. */
export function renderPrivacyTable(t: PrivacyTable): string {
  const headers = ['strategy', ...t.targets.map((e) => (e === null ? 'ε = ∞ (no DP)' : `ε = ${e}`))];
  const rows = (f: (c: PrivacyCell) => string) => t.rows.map((r) => [r.label, ...r.cells.map(f)]);
  const out: string[] = [];
  out.push(`Final student accuracy (test set) by target ε at δ = ${t.delta}, clip ${t.clip}; in parentheses the ε the federation spent (the most any client did):`);
  out.push(table(headers, rows((c) => (c.epsilon === undefined ? pct(c.studentAccuracy) : `${pct(c.studentAccuracy)} (${fmtEpsilon(c.epsilon)})`)), 1));
  out.push('', 'Noise multiplier z the server calibrated to each target (as sent to clients; the accountant\'s effective z in parentheses):');
  out.push(table(headers, rows((c) => (c.noiseMultiplier === undefined ? '-' : `${c.noiseMultiplier.toFixed(3)} (${c.effectiveNoiseMultiplier!.toFixed(3)})`)), 1));
  out.push('', 'Uplink, all clients and rounds (secure aggregation: its key-exchange and unmasking bytes per round, and seconds per round):');
  out.push(
    table(
      headers,
      rows((c) => kb(c.uplinkBytes) + (c.secureAggregation ? ` (+${kb(c.secureAggregation.keyBytesPerRound)}, ${c.secureAggregation.secondsPerRound.toFixed(2)} s)/round` : '')),
      1,
    ),
  );
  const declined = t.rows.flatMap((r) => r.cells.filter((c) => c.declined > 0).map((c) => `${r.label} at ε = ${fmtEpsilon(c.target ?? Infinity)}: ${c.declined}`));
  if (declined.length) out.push('', `Rounds clients declined on their own budget: ${declined.join('; ')}`);
  return out.join('\n');
}

/** The settings a table was measured with, as one line (README tables quote it). */
export function privacySettingsLine(s: Record<string, unknown>): string {
  const keys = ['clients', 'models', 'student', 'rounds', 'localEpochs', 'distillEpochs', 'proxySize', 'proxySubset', 'codec', 'aggregator', 'fedavgAggregator', 'partition', 'alpha', 'seed'];
  const p = s.privacy as Record<string, unknown>;
  const dp = ['clip', 'temperature', 'rounds', 'budget'].filter((k) => p[k]).map((k) => `dp-${k} ${p[k]}`);
  return `settings: ${[...keys.filter((k) => s[k] !== undefined).map((k) => `${k} ${Array.isArray(s[k]) ? (s[k] as unknown[]).join(',') : s[k]}`), ...dp].join(', ')}`;
}

function fmtSeconds(s: number): string {
  return s >= 120 ? `${(s / 60).toFixed(1)} min` : `${s.toFixed(0)} s`;
}
