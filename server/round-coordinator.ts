import { EventEmitter } from 'node:events';
import type { RoundSummary } from '../shared/dashboard-feed.ts';
import type { ClientMsg, ErrorMsg, HelloMsg, WelcomeMsg } from '../shared/protocol/messages.ts';
import type { ServerConfig } from './config.ts';
import type { Coordinator, CoordinatorOptions, CoordinatorStatus, Transport } from './coordinator.ts';
import { Federation } from './coordination/federation.ts';
import { RoundScheduler } from './coordination/round-scheduler.ts';
import type { StudentShelf } from './state/student-shelf.ts';
import { isOnline, type AnyStrategy } from './strategies/strategy.ts';

/**
 * The coordinator of round-based strategies (ensemble, mutual, fedavg): the federation's shared parts (client
 * registry, recovery, events, student releases, lifecycle: coordination/federation.ts) driven by the round scheduler
 * (selection, deadline and quorum, aggregation, one checkpoint per round: coordination/round-scheduler.ts).
 */
export class RoundCoordinator extends EventEmitter implements Coordinator {
  private readonly f: Federation;
  private readonly rounds: RoundScheduler;

  constructor(o: CoordinatorOptions) {
    super();
    if (isOnline(o.strategy)) throw new Error(`strategy '${o.strategy.name}' has no rounds: use OnlineCoordinator (createCoordinator picks)`);
    this.f = new Federation(o, this, { many: 'rounds', one: 'round' });
    this.rounds = new RoundScheduler(this.f);
  }

  get round(): number {
    return this.f.round;
  }
  get history(): RoundSummary[] {
    return this.f.history;
  }
  get config(): ServerConfig {
    return this.f.config;
  }
  get strategy(): AnyStrategy {
    return this.f.strategy;
  }
  get shelf(): StudentShelf {
    return this.f.shelf;
  }

  attach(transport: Transport): void {
    this.f.attach(transport);
  }

  restore(): Promise<boolean> {
    return this.f.restore(this.rounds);
  }

  register(hello: HelloMsg): WelcomeMsg {
    return this.f.register(hello).welcome;
  }

  resumeIfSelected(clientId: string): void {
    if (!this.f.sendEndIfOver(clientId)) this.rounds.resume(clientId);
  }

  disconnected(clientId: string): void {
    if (this.f.disconnected(clientId)) this.rounds.disconnected(clientId);
  }

  submit(clientId: string, msg: ClientMsg, bytes: number): number {
    return this.rounds.submit(this.f.uploader(clientId, msg), msg, bytes);
  }

  start(): Promise<void> {
    return this.f.start(() => this.rounds.run());
  }

  stop(): Promise<void> {
    return this.f.stop(() => this.rounds.halt());
  }

  status(): CoordinatorStatus {
    return this.f.status(this.rounds.openRound());
  }

  errorFor(e: unknown, round?: number): ErrorMsg {
    return this.f.errorFor(e, round);
  }
}
