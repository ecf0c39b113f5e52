import type { CoordinatorOptions, OnlineStats } from './coordinator.ts';
import { ComposedCoordinator } from './coordination/composed-coordinator.ts';
import { OnlineTaskLoop } from './coordination/online-task-loop.ts';
import { isOnline } from './strategies/strategy.ts';

/**
 * The coordinator of the online strategy: the federation's shared parts (client registry, recovery, events, student
 * releases, lifecycle: coordination/federation.ts) driven by the online task loop (no rounds: per-client tasks,
 * background training, a checkpoint per published version: coordination/online-task-loop.ts). Its status has an
 * `online` section (uploads taken in, their staleness, open tasks).
 */
export class OnlineCoordinator extends ComposedCoordinator<OnlineTaskLoop> {
  constructor(o: CoordinatorOptions) {
    if (!isOnline(o.strategy)) {
      throw new Error(`strategy '${o.strategy.name}' runs in rounds: use RoundCoordinator (createCoordinator picks)`);
    }
    super(o, { many: 'student versions', one: 'student version' }, (f) => new OnlineTaskLoop(f));
  }

  /** Total accepted uploads, and their staleness distribution (also in status().online). */
  onlineStats(): OnlineStats {
    return this.scheduler.stats();
  }
}
