/**
 * Continual-learning scenarios: the clients' private data changes over time while rounds go on.
 *
 * - class-incremental: the classes arrive in tasks of `classesPerTask` (Fashion-MNIST: 5 tasks of 2 classes); during
 *   task k a client holds only its rows of task k's classes (Split-MNIST style, the usual class-incremental benchmark).
 * - drift: label-distribution drift. All classes stay possible, but during task k a client holds all its rows of task
 *   k's classes and only a `floor` fraction of its other rows: what a device sees shifts from some classes to others.
 *
 * Each task's accuracy is the student's accuracy on the test rows of that task's classes, read after every round;
 * forgetting of a task is its best accuracy seen minus its accuracy at the end (Chaudhry et al. 2018).
 */
import { Rng } from '../shared/data/rng.ts';
import { taskAccuracy } from '../shared/metrics.ts';

export { taskAccuracy };

export type ScenarioKind = 'none' | 'class-incremental' | 'drift';
export const SCENARIOS: readonly ScenarioKind[] = ['none', 'class-incremental', 'drift'];

export interface Scenario {
  kind: Exclude<ScenarioKind, 'none'>;
  /** Classes of each task, in arrival order. */
  tasks: number[][];
  roundsPerTask: number;
}

export function makeScenario(kind: Exclude<ScenarioKind, 'none'>, numClasses: number, classesPerTask: number, roundsPerTask: number): Scenario {
  if (!(classesPerTask >= 1 && numClasses % classesPerTask === 0)) throw new Error(`--classes-per-task must divide ${numClasses}, got ${classesPerTask}`);
  const tasks = Array.from({ length: numClasses / classesPerTask }, (_, k) => Array.from({ length: classesPerTask }, (_, j) => k * classesPerTask + j));
  return { kind, tasks, roundsPerTask };
}

/** Task (0-based) that round r (1-based) belongs to; rounds past the last task stay in it. */
export function taskOfRound(s: Scenario, round: number): number {
  return Math.min(s.tasks.length - 1, Math.floor((Math.max(1, round) - 1) / s.roundsPerTask));
}

/** A client's private rows during each task, from the pool of rows it owns. */
export function rowsPerTask(s: Scenario, pool: ArrayLike<number>, labels: ArrayLike<number>, seed: string, floor = 0.1): number[][] {
  return s.tasks.map((classes, k) => {
    const rng = new Rng(`${seed}/task-${k}`);
    const inTask = new Set(classes);
    const rows: number[] = [];
    for (let i = 0; i < pool.length; i++) {
      const r = pool[i];
      if (inTask.has(labels[r]) || (s.kind === 'drift' && rng.next() < floor)) rows.push(r);
    }
    return rows;
  });
}

export interface TaskReport {
  task: number;
  classes: number[];
  /** Accuracy on the task right after its own last round. */
  atEndOfTask: number;
  best: number;
  final: number;
  forgetting: number;
}

export interface ContinualReport {
  scenario: Scenario;
  tasks: TaskReport[];
  /** Mean final accuracy over all tasks, and mean forgetting over all but the last (which can't have been forgotten yet). */
  averageAccuracy: number;
  averageForgetting: number;
}

/** Per-task report from the student's per-class accuracy after each round (index = round − 1; [] = round not completed). */
export function continualReport(s: Scenario, perRound: number[][], rowsPerClass: number[]): ContinualReport {
  const tasks = s.tasks.map((classes, k) => {
    const accs = perRound.map((pc) => taskAccuracy(pc, classes, rowsPerClass));
    const from = k * s.roundsPerTask; // a task can only be forgotten once it has been learned
    const seen = accs.slice(from).filter((a) => !Number.isNaN(a));
    const endIdx = Math.min(accs.length - 1, (k + 1) * s.roundsPerTask - 1);
    const final = accs.filter((a) => !Number.isNaN(a)).at(-1) ?? NaN;
    const best = seen.length ? Math.max(...seen) : NaN;
    return { task: k + 1, classes, atEndOfTask: accs[endIdx] ?? NaN, best, final, forgetting: best - final };
  });
  const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
  return { scenario: s, tasks, averageAccuracy: mean(tasks.map((t) => t.final)), averageForgetting: mean(tasks.slice(0, -1).map((t) => t.forgetting)) };
}
