import { EventEmitter } from 'node:events';
import type { RoundSummary } from '../shared/dashboard-feed.ts';
import type { ClientMsg, ErrorMsg, HelloMsg, WelcomeMsg } from '../shared/protocol/messages.ts';
import type { ServerConfig } from './config.ts';
import type { Coordinator, CoordinatorOptions, CoordinatorStatus, OnlineStats, Transport } from './coordinator.ts';
import { Federation } from './coordination/federation.ts';
import { OnlineTaskLoop } from './coordination/online-task-loop.ts';
import type { StudentShelf } from './state/student-shelf.ts';
import { isOnline, type AnyStrategy } from './strategies/strategy.ts';

/**
 * The coordinator of the online strategy: the federation's shared parts (client registry, recovery, events, student
 * releases, lifecycle: coordination/federation.ts) driven by the online task loop (no rounds: per-client tasks,
 * background training, a checkpoint per published version: coordination/online-task-loop.ts). Its status has an
 * `online` section (uploads taken in, their staleness, open tasks).
 */
export class OnlineCoordinator extends EventEmitter implements Coordinator {
  private readonly f: Federation;
  private readonly tasks: OnlineTaskLoop;

  constructor(o: CoordinatorOptions) {
    super();
    if (!isOnline(o.strategy)) throw new Error(`strategy '${o.strategy.name}' runs in rounds: use RoundCoordinator (createCoordinator picks)`);
    this.f = new Federation(o, this, { many: 'student versions', one: 'student version' });
    this.tasks = new OnlineTaskLoop(this.f);
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

  /** Total accepted uploads, and their staleness distribution (also in status().online). */
  onlineStats(): OnlineStats {
    return this.tasks.stats();
  }

  attach(transport: Transport): void {
    this.f.attach(transport);
  }

  async restore(): Promise<boolean> {
    const had = await this.f.restore(this.tasks);
    if (had) this.tasks.logRestored();
    return had;
  }

  register(hello: HelloMsg): WelcomeMsg {
    const { welcome } = this.f.register(hello);
    this.tasks.registered(hello, welcome);
    return welcome;
  }

  resumeIfSelected(clientId: string): void {
    if (!this.f.sendEndIfOver(clientId)) this.tasks.resume(clientId);
  }

  /** Its open task stays open (until its deadline): a reconnect gets it again. */
  disconnected(clientId: string): void {
    this.f.disconnected(clientId);
  }

  submit(clientId: string, msg: ClientMsg, bytes: number): number {
    return this.tasks.submit(this.f.uploader(clientId, msg), msg, bytes);
  }

  start(): Promise<void> {
    return this.f.start(() => this.tasks.run());
  }

  stop(): Promise<void> {
    return this.f.stop(() => this.tasks.halt());
  }

  status(): CoordinatorStatus {
    return { ...this.f.status(null), online: this.tasks.stats() };
  }

  errorFor(e: unknown, round?: number): ErrorMsg {
    return this.f.errorFor(e, round);
  }
}
