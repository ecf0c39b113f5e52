/**
 * `fedistill simulate --strategy compare`: the federated runs (distillation and FedAvg, same split, seed and
 * transport) side by side, and the centralized ceiling under them. Everything here is read off what the runs
 * measured — accuracy per round, the seconds each round ended at, the bytes each client-round moved — nothing is
 * re-estimated. The same object is printed (renderComparison) and written to the results JSON (`comparison`).
 */
import type { CentralizedResult } from './centralized.ts';
import { kb, pct, table } from './report.ts';
import type { SimulationResult } from './simulate.ts';

export interface ComparedRun {
  label: string;
  strategy: string;
  finalStudentAccuracy?: number;
  bestStudentAccuracy?: number;
  /** Completed rounds (student versions for online). */
  rounds: number;
  /** For each accuracy target: the first round the student reached it, and the seconds from all clients connected. */
  toTarget: { target: number; round: number | null; seconds: number | null }[];
  uplinkPerClientRound: number;
  downlinkPerClientRound: number;
  totalPerClientRound: number;
  /** Each per-client-round figure as % of the FedAvg run's (null: no FedAvg run, or it moved no bytes). */
  percentOfFedAvg: { uplink: number | null; downlink: number | null; total: number | null };
  /** Wall seconds of the whole run (start-up included). */
  seconds: number;
}

/** The ceiling's summary (the full run, epoch by epoch, is the JSON's `ceiling`). */
export interface ComparedCeiling {
  label: string;
  student: string;
  epochs: number;
  trainRows: number;
  finalAccuracy?: number;
  bestAccuracy?: number;
  perEpoch: { epoch: number; accuracy: number; elapsedSeconds: number }[];
  toTarget: { target: number; epoch: number | null; seconds: number | null }[];
  seconds: number;
}

/** Did a distillation run's student reach FedAvg's accuracy after as many rounds as both ran, and at what traffic. */
export interface ComparisonVerdict {
  label: string;
  /** The round both runs reached and were compared at; null for online (student versions are not rounds). */
  round: number | null;
  studentAccuracy?: number;
  fedavgAccuracy?: number;
  reached: boolean | null;
  uplinkPercent: number | null;
  totalPercent: number | null;
  line: string;
}

export interface Comparison {
  targets: number[];
  /** The label of the FedAvg run the percentages are of (null: none ran). */
  baseline: string | null;
  testImages: number;
  runs: ComparedRun[];
  /** One row per round any run reached: each run's student accuracy and elapsed seconds then (null: it had no such round). */
  perRound: { round: number; runs: ({ studentAccuracy?: number; elapsedSeconds: number } | null)[] }[];
  ceiling?: ComparedCeiling;
  verdicts: ComparisonVerdict[];
}

/** A run's name in the tables: its strategy, FedAvg's weight aggregator, and λ where the runs differ in it. */
export function runLabel(r: SimulationResult, all: SimulationResult[]): string {
  const lambda = all.some((x) => x.options.prevStudentLambda !== all[0].options.prevStudentLambda) ? ` λ=${r.options.prevStudentLambda}` : '';
  return (r.options.strategy === 'fedavg' ? `fedavg (${r.options.fedavgAggregator})` : r.options.strategy) + lambda;
}

const percentOf = (x: number, of: number | undefined): number | null => (of ? (100 * x) / of : null);

/** The student's accuracy after round `n`: that of the last round ≤ n that has one. */
function accuracyAfter(r: SimulationResult, n: number): number | undefined {
  let a: number | undefined;
  for (const row of r.rounds) if (row.round <= n && row.status === 'completed' && row.studentAccuracy !== undefined) a = row.studentAccuracy;
  return a;
}

const lastRound = (r: SimulationResult): number => Math.max(0, ...r.rounds.filter((x) => x.status === 'completed').map((x) => x.round));

export function buildComparison(results: SimulationResult[], ceiling?: CentralizedResult): Comparison {
  if (!results.length) throw new Error('nothing to compare: no federated run');
  const targets = results[0].options.accuracyTargets;
  const fedavg = results.find((r) => r.options.strategy === 'fedavg');
  const base = fedavg?.summary;
  const total = (s: SimulationResult['summary']) => s.uplinkPerClientRound + s.downlinkPerClientRound;
  const runs: ComparedRun[] = results.map((r) => {
    const s = r.summary;
    return {
      label: runLabel(r, results),
      strategy: r.options.strategy,
      finalStudentAccuracy: s.finalStudentAccuracy,
      bestStudentAccuracy: s.bestStudentAccuracy,
      rounds: r.rounds.filter((x) => x.status === 'completed').length,
      // As summary.timeToAccuracy: the first round (of any) whose student accuracy is at least the target.
      toTarget: targets.map((target) => {
        const hit = r.rounds.find((x) => (x.studentAccuracy ?? 0) >= target);
        return { target, round: hit?.round ?? null, seconds: hit?.elapsedSeconds ?? null };
      }),
      uplinkPerClientRound: s.uplinkPerClientRound,
      downlinkPerClientRound: s.downlinkPerClientRound,
      totalPerClientRound: total(s),
      percentOfFedAvg: {
        uplink: percentOf(s.uplinkPerClientRound, base?.uplinkPerClientRound),
        downlink: percentOf(s.downlinkPerClientRound, base?.downlinkPerClientRound),
        total: percentOf(total(s), base ? total(base) : undefined),
      },
      seconds: s.seconds,
    };
  });

  const roundNumbers = [...new Set(results.flatMap((r) => r.rounds.map((x) => x.round)))].sort((a, b) => a - b);
  const perRound = roundNumbers.map((round) => ({
    round,
    runs: results.map((r) => {
      const row = r.rounds.find((x) => x.round === round);
      return row ? { studentAccuracy: row.studentAccuracy, elapsedSeconds: row.elapsedSeconds } : null;
    }),
  }));

  const verdicts: ComparisonVerdict[] = [];
  if (fedavg) {
    const fedavgLabel = runLabel(fedavg, results);
    results.forEach((r, i) => {
      if (r.options.strategy === 'fedavg') return;
      const online = r.options.strategy === 'online';
      const n = online ? null : Math.min(lastRound(r), lastRound(fedavg));
      const studentAccuracy = n === null ? r.summary.finalStudentAccuracy : accuracyAfter(r, n);
      const fedavgAccuracy = n === null ? fedavg.summary.finalStudentAccuracy : accuracyAfter(fedavg, n);
      const reached = studentAccuracy === undefined || fedavgAccuracy === undefined ? null : studentAccuracy >= fedavgAccuracy;
      const { uplink, total: totalPct } = runs[i].percentOfFedAvg;
      const when = n === null ? 'at the end (online: student versions, not rounds)' : `after ${n} round${n === 1 ? '' : 's'}`;
      const gap = reached === null ? '' : ` (${studentAccuracy! >= fedavgAccuracy! ? '+' : '−'}${(100 * Math.abs(studentAccuracy! - fedavgAccuracy!)).toFixed(2)} points)`;
      const verdict = reached === null ? 'cannot be compared (no accuracy)' : reached ? 'REACHED' : 'did NOT reach';
      const traffic = `uplink ${fmtPercent(uplink)} and total (up + down) ${fmtPercent(totalPct)} of FedAvg's bytes per client-round`;
      verdicts.push({
        label: runs[i].label,
        round: n,
        studentAccuracy,
        fedavgAccuracy,
        reached,
        uplinkPercent: uplink,
        totalPercent: totalPct,
        line: `${runs[i].label} ${verdict} FedAvg's accuracy ${when}: student ${pct(studentAccuracy)} vs ${fedavgLabel} ${pct(fedavgAccuracy)}${gap}; ${traffic}`,
      });
    });
  }

  return {
    targets,
    baseline: fedavg ? runLabel(fedavg, results) : null,
    testImages: results[0].data.test,
    runs,
    perRound,
    ceiling: ceiling && {
      label: 'centralized ceiling',
      student: ceiling.options.student,
      epochs: ceiling.epochs.length,
      trainRows: ceiling.data.train,
      finalAccuracy: ceiling.finalAccuracy,
      bestAccuracy: ceiling.bestAccuracy,
      perEpoch: ceiling.epochs.map((e) => ({ epoch: e.epoch, accuracy: e.accuracy, elapsedSeconds: e.elapsedSeconds })),
      toTarget: ceiling.timeToAccuracy,
      seconds: ceiling.seconds,
    },
    verdicts,
  };
}

function fmtPercent(x: number | null): string {
  return x === null ? '-' : `${x.toFixed(1)}%`;
}

const seconds = (s: number | null | undefined) => (s === null || s === undefined ? '-' : s.toFixed(0));

/** The per-round table, the summary table (ceiling row last), the ceiling's epochs and the verdict lines. */
export function renderComparison(c: Comparison): string {
  const out: string[] = [];
  out.push(`Student accuracy per round (on ${c.testImages} test images; s = seconds since all clients connected):`);
  out.push(
    table(
      ['round', ...c.runs.flatMap((r) => [`${r.label} acc`, `${r.label} s`])],
      c.perRound.map((row) => [row.round, ...row.runs.flatMap((x) => (x ? [pct(x.studentAccuracy), x.elapsedSeconds.toFixed(0)] : ['-', '-']))]),
    ),
  );
  const vs = c.baseline ? '% FedAvg' : '%';
  const rows: (string | number)[][] = c.runs.map((r) => [
    r.label,
    pct(r.finalStudentAccuracy),
    pct(r.bestStudentAccuracy),
    r.rounds,
    ...r.toTarget.map((t) => (t.round === null ? 'not reached' : `r${t.round}, ${seconds(t.seconds)} s`)),
    kb(r.uplinkPerClientRound),
    fmtPercent(r.percentOfFedAvg.uplink),
    kb(r.downlinkPerClientRound),
    fmtPercent(r.percentOfFedAvg.downlink),
    kb(r.totalPerClientRound),
    fmtPercent(r.percentOfFedAvg.total),
    seconds(r.seconds),
  ]);
  if (c.ceiling) {
    const k = c.ceiling;
    rows.push([
      k.label,
      pct(k.finalAccuracy),
      pct(k.bestAccuracy),
      `${k.epochs} ep`,
      ...k.toTarget.map((t) => (t.epoch === null ? 'not reached' : `ep${t.epoch}, ${seconds(t.seconds)} s`)),
      '-', '-', '-', '-', '-', '-',
      seconds(k.seconds),
    ]);
  }
  out.push('');
  out.push('Summary (bytes per client-round; time to accuracy as round, seconds since all clients connected):');
  out.push(
    table(
      ['run', 'final acc', 'best acc', 'rounds', ...c.targets.map((t) => `to ${pct(t)}`), 'uplink', vs, 'downlink', vs, 'total', vs, 'wall s'],
      rows,
      1,
    ),
  );
  if (c.ceiling) {
    const k = c.ceiling;
    out.push('');
    out.push(
      `centralized ceiling: the ${k.student} student trained on the pooled data of all clients (${k.trainRows} images, the clients' optimizer, ` +
        `learning rate and batch size): best ${pct(k.bestAccuracy)}, final ${pct(k.finalAccuracy)} after ${k.epochs} epoch(s); ` +
        `per epoch ${k.perEpoch.map((e) => `${e.epoch}: ${pct(e.accuracy)} (${seconds(e.elapsedSeconds)} s)`).join(', ')}`,
    );
  }
  if (c.verdicts.length) {
    out.push('');
    for (const v of c.verdicts) out.push(v.line);
  } else if (!c.baseline) {
    out.push('');
    out.push('no FedAvg run to compare with (--strategy compare runs one)');
  }
  return out.join('\n');
}
