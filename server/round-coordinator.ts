import type { CoordinatorOptions } from './coordinator.ts';
import { ComposedCoordinator } from './coordination/composed-coordinator.ts';
import { RoundScheduler } from './coordination/round-scheduler.ts';
import { isOnline } from './strategies/strategy.ts';

/**
 * The coordinator of round-based strategies (ensemble, mutual, fedavg): the federation's shared parts (client
 * registry, recovery, events, student releases, lifecycle: coordination/federation.ts) driven by the round scheduler
 * (selection, deadline and quorum, aggregation, one checkpoint per round: coordination/round-scheduler.ts).
 */
export class RoundCoordinator extends ComposedCoordinator<RoundScheduler> {
  constructor(o: CoordinatorOptions) {
    if (isOnline(o.strategy)) {
      throw new Error(`strategy '${o.strategy.name}' has no rounds: use OnlineCoordinator (createCoordinator picks)`);
    }
    super(o, { many: 'rounds', one: 'round' }, (f) => new RoundScheduler(f));
  }
}
