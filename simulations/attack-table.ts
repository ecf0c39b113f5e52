/**
 * `fedistill simulate --attack`: each row (an aggregator, or a strategy) runs once attack-free and once under each
 * attack, on the same split, seed and settings (the same honest clients: attacks.ts picks the attackers from the
 * seed), and the report sets the student's accuracy side by side with the points each attack cost.
 */
import type { StrategyName } from '../server/config.ts';
import { AGGREGATORS, type AggregatorName } from '../shared/distill/aggregators.ts';
import { FEDAVG_AGGREGATORS, type FedAvgAggregatorName } from '../shared/distill/weight-averaging.ts';
import { ATTACK_KINDS, type AttackKind } from './attacks.ts';
import { pct, table } from './report.ts';
import { runSimulation, type SimulationInput, type SimulationResult } from './simulate.ts';

/** One row of the table: a strategy, and the aggregator its teacher uses (distillation) or its weights' (fedavg). */
export interface AttackRow {
  label: string;
  strategy: StrategyName;
  aggregator?: AggregatorName;
  fedavgAggregator?: FedAvgAggregatorName;
}

/** What one run measured: final-round accuracies, and the points lost against the row's attack-free run. */
export interface AttackCell {
  studentAccuracy?: number;
  teacherAccuracy?: number;
  /** Percentage points: clean minus attacked student accuracy (positive = the attack hurt). */
  studentDrop?: number;
  teacherDrop?: number;
  /** Per round (by index), the student's accuracy. */
  perRound: (number | undefined)[];
  seconds: number;
}

export interface AttackTableRow extends AttackRow {
  clean: AttackCell;
  attacks: Partial<Record<AttackKind, AttackCell>>;
}

export interface AttackTable {
  attacks: AttackKind[];
  fraction: number;
  /** The attackers of each run (the same ids in every row: they depend on the seed and client count alone). */
  attackers: string[];
  /** The settings every run shared (the rows set strategy and aggregator). */
  settings: Record<string, unknown>;
  rows: AttackTableRow[];
  seconds: number;
}

/**
 * The rows `--aggregators` names (`all`: every teacher aggregator, then fedavg with each of its aggregators), or
 * without it one row per strategy with the configured aggregators. Teacher-aggregator rows run the first
 * distillation strategy of `strategies` (ensemble if none); `fedavg` runs the configured --fedavg-aggregator,
 * `fedavg:<name>` that one.
 */
export function attackRows(strategies: StrategyName[], names: string[] | undefined, configured: { aggregator: AggregatorName; fedavgAggregator: FedAvgAggregatorName }): AttackRow[] {
  const distill = strategies.find((s) => s !== 'fedavg') ?? 'ensemble';
  const teacherRow = (s: StrategyName, a: AggregatorName): AttackRow => ({ label: s === 'ensemble' ? a : `${s} ${a}`, strategy: s, aggregator: a });
  const fedavgRow = (a: FedAvgAggregatorName): AttackRow => ({ label: `fedavg ${a}`, strategy: 'fedavg', fedavgAggregator: a });
  if (!names) return strategies.map((s) => (s === 'fedavg' ? fedavgRow(configured.fedavgAggregator) : teacherRow(s, configured.aggregator)));
  const all = [...AGGREGATORS, ...FEDAVG_AGGREGATORS.map((a) => `fedavg:${a}`)];
  const expanded = [...new Set(names.flatMap((n) => (n === 'all' ? all : n === 'fedavg' ? [`fedavg:${configured.fedavgAggregator}`] : [n])))];
  return expanded.map((n) => {
    const f = /^fedavg:(.+)$/.exec(n);
    if (f && (FEDAVG_AGGREGATORS as readonly string[]).includes(f[1])) return fedavgRow(f[1] as FedAvgAggregatorName);
    if ((AGGREGATORS as readonly string[]).includes(n)) return teacherRow(distill, n as AggregatorName);
    throw new Error(`--aggregators: '${n}' is not one of ${[...AGGREGATORS, 'fedavg', ...FEDAVG_AGGREGATORS.map((a) => `fedavg:${a}`), 'all'].join(', ')}`);
  });
}

/** 'all' → every attack, in ATTACK_KINDS order; duplicates dropped. */
export function expandAttacks(names: string[]): AttackKind[] {
  const set = new Set(names.flatMap((n) => (n === 'all' ? [...ATTACK_KINDS] : [n])));
  for (const n of set) if (!(ATTACK_KINDS as readonly string[]).includes(n)) throw new Error(`--attack: '${n}' is not one of ${ATTACK_KINDS.join(', ')}, all`);
  return ATTACK_KINDS.filter((k) => set.has(k));
}

export interface AttackTableOptions {
  attacks: AttackKind[];
  rows: AttackRow[];
  /** One line per run as it starts and ends (progress, with an estimate of the time left). */
  progress?: (line: string) => void;
  /** Every finished run, e.g. to save results as they come. */
  onRun?: (r: SimulationResult, row: AttackRow, attack: AttackKind | null) => void;
}

/** Run every row clean and under every attack (rows × (1 + attacks) simulations, one after the other). */
export async function runAttackTable(base: SimulationInput, o: AttackTableOptions): Promise<{ table: AttackTable; runs: SimulationResult[] }> {
  if (!o.attacks.length) throw new Error('runAttackTable: no attacks');
  if (!o.rows.length) throw new Error('runAttackTable: no rows');
  const progress = o.progress ?? (() => {});
  const total = o.rows.length * (1 + o.attacks.length);
  const t0 = performance.now();
  const runs: SimulationResult[] = [];
  const rows: AttackTableRow[] = [];
  let attackers: string[] = [];
  for (const row of o.rows) {
    let clean: AttackCell | null = null;
    const attacks: AttackTableRow['attacks'] = {};
    for (const attack of [null, ...o.attacks]) {
      const n = runs.length + 1;
      const name = `${row.label} × ${attack ?? 'clean'}`;
      const elapsed = (performance.now() - t0) / 1000;
      const left = runs.length ? ` (${fmtSeconds(elapsed)} so far, about ${fmtSeconds((elapsed / runs.length) * (total - runs.length))} left)` : '';
      progress(`[${n}/${total}] ${name}${left}`);
      const r = await runSimulation({
        ...base,
        strategy: row.strategy,
        ...(row.aggregator ? { aggregator: row.aggregator } : {}),
        ...(row.fedavgAggregator ? { fedavgAggregator: row.fedavgAggregator } : {}),
        attack: attack ?? undefined,
        // The first run shows its setup and rounds (where the data came from, the backend); the rest, one line each.
        ...(runs.length === 0 ? {} : { log: () => {} }),
      });
      runs.push(r);
      o.onRun?.(r, row, attack);
      const cell = cellOf(r, clean);
      if (attack) {
        attacks[attack] = cell;
        attackers = r.attack!.attackers;
      } else clean = cell;
      const vs = clean && attack ? ` (clean ${pct(clean.studentAccuracy)}, ${signedPoints(cell.studentDrop)})` : '';
      progress(`[${n}/${total}] ${name}: student ${pct(cell.studentAccuracy)}${vs}, teacher ${pct(cell.teacherAccuracy)}, ${cell.seconds.toFixed(0)} s`);
    }
    rows.push({ ...row, clean: clean!, attacks });
  }
  const settings: Record<string, unknown> = { ...runs[0].options };
  delete settings.strategy;
  delete settings.aggregator;
  delete settings.fedavgAggregator;
  delete settings.attack;
  return {
    table: { attacks: o.attacks, fraction: runs[0].options.attackFraction, attackers, settings, rows, seconds: (performance.now() - t0) / 1000 },
    runs,
  };
}

function cellOf(r: SimulationResult, clean: AttackCell | null): AttackCell {
  const student = r.summary.finalStudentAccuracy;
  const teacher = r.summary.finalTeacherAccuracy;
  const points = (a?: number, b?: number) => (a === undefined || b === undefined ? undefined : 100 * (a - b));
  return {
    studentAccuracy: student,
    teacherAccuracy: teacher,
    studentDrop: clean ? points(clean.studentAccuracy, student) : undefined,
    teacherDrop: clean ? points(clean.teacherAccuracy, teacher) : undefined,
    perRound: r.rounds.map((x) => x.studentAccuracy),
    seconds: r.summary.seconds,
  };
}

/** The report: final student accuracy per row and attack with the points lost, then the teacher's; one row: per round. */
export function renderAttackTable(t: AttackTable): string {
  const out: string[] = [];
  const cell = (c: AttackCell | undefined, which: 'student' | 'teacher') => {
    if (!c) return '-';
    const acc = which === 'student' ? c.studentAccuracy : c.teacherAccuracy;
    const drop = which === 'student' ? c.studentDrop : c.teacherDrop;
    return drop === undefined ? pct(acc) : `${pct(acc)} (${signedPoints(drop)})`;
  };
  const headers = ['aggregator', 'clean', ...t.attacks];
  out.push(`Final student accuracy (test set) with ${t.attackers.length} attacker(s) of ${t.settings.clients} (${t.attackers.join(', ')}); in parentheses the change vs clean, in points` +
    (t.attacks.includes('absent') ? "; 'absent': those clients do not take part (the honest ones alone):" : ':'));
  out.push(table(headers, t.rows.map((r) => [r.label, cell(r.clean, 'student'), ...t.attacks.map((a) => cell(r.attacks[a], 'student'))]), 1));
  const taught = t.rows.filter((r) => r.clean.teacherAccuracy !== undefined);
  if (taught.length) {
    out.push('', "Final teacher accuracy (the aggregated soft labels on the last round's proxy rows; change vs clean, in points):");
    out.push(table(headers, taught.map((r) => [r.label, cell(r.clean, 'teacher'), ...t.attacks.map((a) => cell(r.attacks[a], 'teacher'))]), 1));
  }
  if (t.rows.length === 1) {
    const r = t.rows[0];
    const n = Math.max(r.clean.perRound.length, ...t.attacks.map((a) => r.attacks[a]?.perRound.length ?? 0));
    out.push('', `${r.label}: student accuracy per round, clean and under each attack (change vs clean, points):`);
    out.push(
      table(
        ['round', 'clean', ...t.attacks],
        Array.from({ length: n }, (_, i) => {
          const c = r.clean.perRound[i];
          return [i + 1, pct(c), ...t.attacks.map((a) => {
            const x = r.attacks[a]?.perRound[i];
            return x === undefined ? '-' : `${pct(x)} (${signedPoints(c === undefined ? undefined : 100 * (c - x))})`;
          })];
        }),
      ),
    );
  }
  return out.join('\n');
}

/** −3.41 for a drop of 3.41 points (the change, as a reader of the table expects the sign). */
function signedPoints(drop: number | undefined): string {
  if (drop === undefined) return '-';
  const change = -drop;
  return `${change > 0 ? '+' : change < 0 ? '−' : '±'}${Math.abs(change).toFixed(2)}`;
}

function fmtSeconds(s: number): string {
  return s >= 120 ? `${(s / 60).toFixed(1)} min` : `${s.toFixed(0)} s`;
}
