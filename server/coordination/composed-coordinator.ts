import { EventEmitter } from 'node:events';
import type { RoundSummary } from '../../shared/dashboard-feed.ts';
import type { ClientMsg, ErrorMsg, HelloMsg, WelcomeMsg } from '../../shared/protocol/messages.ts';
import type { ServerConfig } from '../config.ts';
import type { Coordinator, CoordinatorOptions, CoordinatorStatus, Transport } from '../coordinator.ts';
import type { StudentShelf } from '../state/student-shelf.ts';
import type { AnyStrategy } from '../strategies/strategy.ts';
import type { ClientRecord } from './client-registry.ts';
import { Federation, type SchedulerRecovery, type Units } from './federation.ts';

/** A scheduler's own part of /status: the round in progress (round scheduler) or the online section (task loop). */
export type SchedulerStatus = Partial<Pick<CoordinatorStatus, 'openRound' | 'online' | 'privacy' | 'secureAggregation'>>;

/**
 * What decides who trains on what and when (round-scheduler.ts, online-task-loop.ts): the only part in which the two
 * coordinators differ. The Federation has already done the shared step (registry, events) before each hook runs.
 */
export interface Scheduler extends SchedulerRecovery {
  /** After a restore that brought something back: e.g. say where the loop goes on from. */
  restored?(): void;
  /** A hello's client was registered and is about to get `welcome`. */
  registered?(hello: HelloMsg, welcome: WelcomeMsg): void;
  /** After the welcome went out (and the federation is not over): hand the client its open task again, if any. */
  resume(clientId: string): void;
  /** A known client hung up. Optional: without it an open task simply stays open until its deadline. */
  disconnected?(clientId: string): void;
  /** An upload from a registered client: throws ProtocolError to refuse; returns the accepted frame size. */
  submit(rec: ClientRecord, msg: ClientMsg, bytes: number): number;
  /** The loop: until the configured rounds are done or halt(). */
  run(): Promise<void>;
  /** On shutdown: open nothing new and let run() return soon. */
  halt(): void;
  status(): SchedulerStatus;
  /** With differential privacy: the ε a client has spent so far. */
  epsilonOf?(clientId: string): number | undefined;
}

/**
 * A Coordinator made of the federation's shared parts (client registry, recovery, events, student releases,
 * lifecycle: federation.ts) and one scheduler. Everything here is plumbing between the two; the scheduling itself is
 * the scheduler's, so the round and online coordinators only choose theirs (round-coordinator.ts,
 * online-coordinator.ts) and never inherit each other's behaviour.
 */
export class ComposedCoordinator<S extends Scheduler> extends EventEmitter implements Coordinator {
  protected readonly f: Federation;
  protected readonly scheduler: S;

  /** `units`: what `rounds` in the config counts, for log lines. */
  constructor(o: CoordinatorOptions, units: Units, makeScheduler: (f: Federation) => S) {
    super();
    this.f = new Federation(o, this, units);
    this.scheduler = makeScheduler(this.f);
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

  async restore(): Promise<boolean> {
    const had = await this.f.restore(this.scheduler);
    if (had) this.scheduler.restored?.();
    return had;
  }

  register(hello: HelloMsg, o?: { vouched?: boolean }): WelcomeMsg {
    const { welcome } = this.f.register(hello, o);
    this.scheduler.registered?.(hello, welcome);
    return welcome;
  }

  resumeIfSelected(clientId: string): void {
    if (!this.f.sendEndIfOver(clientId)) this.scheduler.resume(clientId);
  }

  disconnected(clientId: string): void {
    if (this.f.disconnected(clientId)) this.scheduler.disconnected?.(clientId);
  }

  submit(clientId: string, msg: ClientMsg, bytes: number): number {
    return this.scheduler.submit(this.f.uploader(clientId, msg), msg, bytes);
  }

  start(): Promise<void> {
    return this.f.start(() => this.scheduler.run());
  }

  stop(): Promise<void> {
    return this.f.stop(() => this.scheduler.halt());
  }

  status(): CoordinatorStatus {
    const own = this.scheduler.status();
    const base = this.f.status(own.openRound ?? null);
    if (own.privacy && this.scheduler.epsilonOf) {
      const eps = this.scheduler.epsilonOf.bind(this.scheduler);
      base.clients = base.clients.map((c) => ({ ...c, epsilon: eps(c.id) }));
    }
    return { ...base, ...own };
  }

  errorFor(e: unknown, round?: number): ErrorMsg {
    return this.f.errorFor(e, round);
  }
}
