import type { EventEmitter } from 'node:events';
import type { Phase, RoundSummary } from '../../shared/dashboard-feed.ts';
import { Rng } from '../../shared/data/rng.ts';
import { modelToWire } from '../../shared/models/wire.ts';
import type { ClientMsg, EndMsg, ErrorMsg, HelloMsg, ServerMsg, WelcomeMsg } from '../../shared/protocol/messages.ts';
import { PROTOCOL_VERSION } from '../../shared/protocol/messages.ts';
import { ProtocolError } from '../../shared/protocol/validate.ts';
import type { ServerConfig } from '../config.ts';
import type { CoordinatorOptions, CoordinatorStatus, Transport } from '../coordinator.ts';
import { silentLogger, type Logger } from '../logger.ts';
import { releaseStudent } from '../state/student-release.ts';
import { StudentShelf } from '../state/student-shelf.ts';
import type { JournalRecord } from '../state/upload-journal.ts';
import type { AnyStrategy, RoundContext } from '../strategies/strategy.ts';
import { ClientRegistry, type ClientRecord, type Registration } from './client-registry.ts';
import { Recovery, type StudentMeta } from './recovery.ts';
import { roundForClient } from './round-rows.ts';

/** Path of the newest student's model.json on the server's HTTP port (server/routes/student.ts). */
export const STUDENT_PATH = '/student/model.json';

/** On shutdown, how long the server waits for clients to read `end` and hang up before it closes their sockets. */
export const SHUTDOWN_DRAIN_MS = 1_000;

/** The registry is scanned for clients past their retention at most this often (or half the retention, if shorter). */
const PRUNE_EVERY_MS = 5_000;

/** After the end, how long (at most) the server waits for offline registered clients to come back for it. */
export const END_DELIVERY_MAX_MS = 60_000;

/**
 * The coordinator's 'all-told' event, once per federation after the end: who was sent the final `end`, and who never
 * was. 'all': every registered client got it; 'timeout': the wait (min(roundTimeoutS, 60 s)) ran out first;
 * 'shutdown': stop() came first.
 */
export interface EndDelivery {
  reason: 'all' | 'timeout' | 'shutdown';
  told: string[];
  missing: string[];
}

/** What `rounds` in the config counts, for log lines: 'rounds', or online's 'student versions'. */
export interface Units {
  many: string;
  one: string;
}

/** What a scheduler takes back on restore: its checkpointed state, and the journal records that are its own. */
export interface SchedulerRecovery {
  importExtra?(extra: unknown): void;
  replay(record: JournalRecord): void;
  /** After the last record: e.g. say what is resumed. */
  replayed?(): void;
}

/**
 * What both coordinators are made of besides their scheduling: the client registry, recovery (checkpoints + journal),
 * the transport, the progress so far (round, history), observer events, the student's releases, the end of the
 * federation (`end` to every client, also to late ones) and the run/stop lifecycle. A coordinator holds one and adds a
 * scheduler (round-scheduler.ts or online-task-loop.ts); nothing here knows rounds from tasks.
 */
export class Federation {
  /** Completed rounds (online: the published student version). */
  round = 0;
  readonly history: RoundSummary[] = [];
  readonly registry: ClientRegistry;
  readonly recovery: Recovery;
  readonly shelf: StudentShelf;
  readonly log: Logger;
  /** Set once stop() began: schedulers open nothing new. */
  stopped = false;
  /** Set once the configured rounds are done: sent to every client then, and to any that connects later. */
  ended: EndMsg | null = null;
  private transport: Transport | null = null;
  private wake: (() => void) | null = null;
  private running: Promise<void> | null = null;
  private shutdownSent = false;
  /** Each end message's variant without the student's weights (endFor()). */
  private readonly lightEnds = new WeakMap<EndMsg, EndMsg>();
  /** Ids sent the `completed` end (at finish(), or after a welcome since): stop() sends them no second end. */
  private readonly toldEnd = new Set<string>();
  private endDeliveryTimer: ReturnType<typeof setTimeout> | null = null;
  private endDelivered = false;
  private prunedAt = 0;

  constructor(
    readonly o: CoordinatorOptions,
    /** The coordinator: observers (dashboard, metrics, tests) listen on it. */
    private readonly events: EventEmitter,
    private readonly units: Units,
  ) {
    this.log = o.log ?? silentLogger;
    this.shelf = o.shelf ?? new StudentShelf(null, this.log);
    const c = o.config;
    this.registry = new ClientRegistry({
      numClasses: o.proxy.numClasses, journal: o.journal, log: this.log,
      maxClients: c.maxClients, idleAfterRounds: c.idleAfterRounds, retentionMs: c.clientRetentionS * 1000, idleBackoffMs: Math.max(60, c.roundTimeoutS) * 1000,
    });
    this.recovery = new Recovery({ store: o.store, journal: o.journal, strategy: o.strategy, registry: this.registry, log: this.log });
  }

  get config(): ServerConfig {
    return this.o.config;
  }
  get strategy(): AnyStrategy {
    return this.o.strategy;
  }

  attach(transport: Transport): void {
    this.transport = transport;
  }

  /**
   * Send to one client; returns the frame's byte size (0: not connected here, or no transport yet). A round's proxy
   * rows go as the client's hello allows (round-rows.ts): every round message passes here, resends included.
   */
  send(clientId: string, msg: ServerMsg): number {
    if (msg.type === 'round') msg = roundForClient(msg, this.registry.get(clientId)?.participant, this.o.proxy.count);
    return this.transport?.send(clientId, msg) ?? 0;
  }

  /** Send to every connected client (an `end` as endFor() shapes it per client); returns how many. */
  broadcast(msg: ServerMsg): number {
    const ids = this.registry.connectedIds();
    for (const id of ids) this.send(id, msg.type === 'end' ? this.endFor(id, msg) : msg);
    return ids.length;
  }

  ctx(round: number): RoundContext {
    const o = this.o;
    return { round, config: o.config, proxy: o.proxy, validation: o.validation, rng: new Rng(`round/${o.config.seed}/${round}`), log: this.log };
  }

  // ---------------- events ----------------

  /** Events for observers (dashboards, tests, reports): a listener that throws is logged, and never fails an upload or a round. */
  tell(event: string, ...args: unknown[]): void {
    try {
      this.events.emit(event, ...args);
    } catch (e) {
      this.log.error({ event, err: e }, `'${event}' listener failed`);
    }
  }

  phase(round: number, phase: Phase): void {
    this.tell('phase', { round, phase, at: Date.now() });
  }

  /** Wake the scheduler's loop (a client came or went, an upload arrived). */
  poke(): void {
    this.wake?.();
  }

  /** Sleep until poke() or `ms` passed. */
  waitForChange(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(t);
        this.wake = null;
        resolve();
      };
    });
  }

  // ---------------- clients ----------------

  /** Register a hello's client (the registry's checks), wake the scheduler and tell observers; returns the welcome. */
  register(hello: HelloMsg, vouch?: { vouched?: boolean }): { welcome: WelcomeMsg; registration: Registration } {
    const registration = this.registry.register(hello, vouch);
    const id = registration.participant.id;
    this.poke();
    this.tell('client', id);
    const { o } = this;
    const welcome: WelcomeMsg = {
      type: 'welcome',
      protocol: PROTOCOL_VERSION,
      clientId: id,
      resumeToken: registration.resumeToken,
      serverVersion: o.serverVersion,
      strategy: o.strategy.name,
      proxy: o.proxyInfo,
      student: { kind: o.strategy.modelKind, numClasses: o.proxy.numClasses, inputShape: o.proxy.shape },
    };
    return { welcome, registration };
  }

  /** After `welcome`: once the federation is over the client gets `end` (it would otherwise wait forever). True if so. */
  sendEndIfOver(clientId: string): boolean {
    if (!this.ended) return false;
    this.sendEnd(clientId);
    this.checkEndDelivered();
    return true;
  }

  /**
   * The stored `completed` end to one client; remembered if it went out (the transport had its socket). An idle
   * client gets it without the student's weights (it can fetch them at `studentPath`): idle ids cost no downlink.
   */
  private sendEnd(clientId: string): boolean {
    if (!this.ended) return false;
    if (this.send(clientId, this.endFor(clientId, this.ended)) === 0) return false;
    this.toldEnd.add(clientId);
    return true;
  }

  /**
   * The end as one client gets it: the student's weights only to an active client of the student's architecture (the
   * one that can adopt them, see studentFrom()); the rest (other architectures, idle ids) get it without `model` and may
   * fetch `studentPath`. So the end costs no downlink per fake or foreign client. The two variants are cached objects,
   * which the transport encodes once each (see the gateway's frame cache).
   */
  private endFor(clientId: string, end: EndMsg): EndMsg {
    if (!end.model) return end;
    const rec = this.registry.get(clientId);
    if (rec && !rec.idle && rec.participant.model === end.model.kind) return end;
    let light = this.lightEnds.get(end);
    if (!light) this.lightEnds.set(end, (light = { ...end, model: undefined }));
    return light;
  }

  /** 'all-told' once every client the registry knows (offline ones too) was sent the end. */
  private checkEndDelivered(): void {
    if (this.endDelivered) return;
    if (this.registry.ids().every((id) => this.toldEnd.has(id))) this.settleEndDelivery('all');
  }

  private settleEndDelivery(reason: EndDelivery['reason']): void {
    if (this.endDelivered || !this.ended) return;
    this.endDelivered = true;
    if (this.endDeliveryTimer) clearTimeout(this.endDeliveryTimer);
    this.endDeliveryTimer = null;
    const known = this.registry.ids();
    const told = known.filter((id) => this.toldEnd.has(id));
    const missing = known.filter((id) => !this.toldEnd.has(id));
    if (missing.length > 0) {
      const why = reason === 'timeout' ? `offline for the ${this.endDeliveryMs() / 1000} s waited` : 'offline at shutdown';
      const n = `${missing.length} registered client${missing.length === 1 ? '' : 's'}`;
      this.log.warn({ missing, told: told.length, reason }, `${n} never got the final student (${why}): ${missing.join(', ')}`);
    } else this.log.info({ told: told.length }, `all ${told.length} registered clients were sent the final student`);
    this.tell('all-told', { reason, told, missing } satisfies EndDelivery);
  }

  /** How long the end waits for offline clients: a round's deadline is how long a client may be away, at most 60 s. */
  private endDeliveryMs(): number {
    return Math.min(this.config.roundTimeoutS * 1000, END_DELIVERY_MAX_MS);
  }

  /** False if the id is unknown. */
  disconnected(clientId: string): boolean {
    if (!this.registry.disconnect(clientId)) return false;
    this.tell('client', clientId);
    return true;
  }

  /** The stateless part of taking an upload: not a hello, from a registered client. Returns its record. */
  uploader(clientId: string, msg: ClientMsg): ClientRecord {
    if (msg.type === 'hello') throw new ProtocolError('bad-message', 'hello is not an upload');
    const rec = this.registry.sender(clientId);
    // Any well-formed upload is a sign of life, even one refused next as stale or late: an idle client is selectable again.
    this.registry.revive(rec);
    return rec;
  }

  /** Forget clients offline past --client-retention-s (at most every few seconds; the schedulers call it in their loops). */
  pruneRegistry(): string[] {
    const now = Date.now();
    if (now - this.prunedAt < Math.min(PRUNE_EVERY_MS, this.config.clientRetentionS * 500)) return [];
    this.prunedAt = now;
    const gone = this.registry.prune(now);
    for (const id of gone) this.toldEnd.delete(id);
    return gone;
  }

  /** Bookkeeping for dashboards once an upload is accepted. */
  uploaded(rec: ClientRecord, round: number, bytes: number, staleness?: number): void {
    const at = this.registry.uploaded(rec, round, staleness);
    this.tell('upload', { clientId: rec.participant.id, round, bytes, at, staleness });
  }

  errorFor(e: unknown, round?: number): ErrorMsg {
    if (e instanceof ProtocolError) return { type: 'error', code: e.code, message: e.message, round };
    return { type: 'error', code: 'internal', message: 'internal server error', round };
  }

  // ---------------- state ----------------

  /**
   * Reload the newest valid checkpoint (student, optimizer, round, registry, history, the scheduler's `extra`), replay
   * the journal after it (the scheduler takes what isn't a registration), then serve the student it brought back.
   */
  async restore(scheduler: SchedulerRecovery): Promise<boolean> {
    const had = await this.recovery.restore({
      adopt: (s) => {
        if (s.extra !== undefined) scheduler.importExtra?.(s.extra);
        this.round = s.round;
        this.history.push(...s.history);
      },
      replay: (r) => scheduler.replay(r),
    });
    scheduler.replayed?.();
    await this.shelf.load();
    // The student a checkpoint brought back is served at once (and written out if this state dir lacks it).
    if (this.round > 0 && this.shelf.latest()?.version !== this.o.strategy.version) await this.releaseStudent();
    return had;
  }

  /** An atomic checkpoint of everything; `extra` (the scheduler's own state) is read in the same step as the rest. */
  checkpoint(extra?: () => unknown): Promise<void> {
    return this.recovery.save(() => ({ round: this.round, history: this.history, extra: extra?.(), student: this.studentMeta() }));
  }

  /** The current student as a tfjs LayersModel with its model card, served at /student and written under the state dir. */
  async releaseStudent(summary?: RoundSummary): Promise<void> {
    const s = this.o.strategy;
    const acc = summary?.studentAccuracy ?? [...this.history].reverse().find((h) => h.studentVersion === s.version)?.studentAccuracy;
    try {
      const release = await releaseStudent(s.model, { kind: s.modelKind, version: s.version, round: this.round, studentAccuracy: acc, ...this.studentMeta() });
      await this.shelf.put(release);
    } catch (e) {
      this.log.error({ err: e, studentVersion: s.version }, `student v${s.version}: export failed`);
    }
  }

  private studentMeta(): StudentMeta {
    const p = this.o.proxy;
    return {
      strategy: this.o.strategy.name,
      inputShape: p.shape.slice(),
      classNames: this.o.classNames ?? Array.from({ length: p.numClasses }, (_, i) => String(i)),
      validationSize: this.o.validation?.count ?? 0,
      serverVersion: this.o.serverVersion,
    };
  }

  // ---------------- lifecycle ----------------

  /** Run the scheduler's loop once (later calls return the same run); an error in it is logged, never thrown. */
  start(loop: () => Promise<void>): Promise<void> {
    this.running ??= loop().catch((e) => {
      // Not re-thrown: an 'error' event without listener would take the whole server down.
      this.log.error({ err: e }, 'coordinator stopped on error');
      if (this.events.listenerCount('error') > 0) this.events.emit('error', e);
    });
    return this.running;
  }

  /** The configured rounds are done: every connected client gets the final student; later ones get it after welcome. */
  finish(): void {
    this.ended = this.endMessage('completed');
    const told = this.registry.connectedIds().filter((id) => this.sendEnd(id)).length;
    const acc = this.ended.studentAccuracy;
    const v = this.o.strategy.version;
    this.log.info(
      { rounds: this.config.rounds, studentVersion: v, studentAccuracy: acc, told },
      `all ${this.config.rounds} ${this.units.many} done: student v${v}` +
        (acc !== undefined ? `, accuracy ${(acc * 100).toFixed(2)}%` : '') +
        `; ${told} connected clients sent the final student; still serving /status and ${STUDENT_PATH}`,
    );
    this.tell('end', this.ended);
    this.events.emit('finished', this.history);
    // Clients offline right now (reconnecting) get the end after their welcome: 'all-told' waits for them, bounded.
    this.endDeliveryTimer = setTimeout(() => this.settleEndDelivery('timeout'), this.endDeliveryMs());
    this.endDeliveryTimer.unref?.();
    this.checkEndDelivered();
  }

  /**
   * Shutdown: the scheduler stops (`halt` closes an open round with what it has), and every connected client is told
   * with `end` before the caller closes the sockets: reason 'shutdown' (the student as it stands) before the end of
   * the federation; after it, `end` is sent once, so only a connected client never sent the completed end gets it.
   */
  async stop(halt: () => void): Promise<void> {
    this.stopped = true;
    halt();
    this.poke();
    await this.running;
    if (this.shutdownSent) return;
    this.shutdownSent = true;
    const total = this.config.rounds;
    if (this.ended) {
      const told = this.registry.connectedIds().filter((id) => !this.toldEnd.has(id) && this.sendEnd(id)).length;
      this.log.info({ round: this.round, told }, `shutting down (all ${total} ${this.units.many} were done); ${told} connected clients newly told`);
      this.settleEndDelivery('shutdown');
    } else {
      const end = this.endMessage('shutdown');
      const told = this.broadcast(end);
      this.log.info({ round: this.round, rounds: total, told }, `shutting down after ${this.units.one} ${this.round}${total ? ` of ${total}` : ''}, before the end; ${told} connected clients told`);
      this.tell('end', end);
    }
    await this.drain(SHUTDOWN_DRAIN_MS);
  }

  /**
   * Wait (at most `ms`) for the clients told to hang up: socket.io's close discards frames not yet written, and the
   * SDK disconnects as soon as it reads `end`, so this is what gets the end message through before the sockets close.
   */
  private async drain(ms: number): Promise<void> {
    const until = Date.now() + ms;
    while (Date.now() < until && this.registry.anyConnected()) await new Promise((r) => setTimeout(r, 20));
  }

  /** The end of the federation as clients are told it: the last round, the student as it is now and where to get it. */
  private endMessage(reason: EndMsg['reason']): EndMsg {
    const s = this.o.strategy;
    const v = s.version;
    // The current student's accuracy: the latest summary of a round that produced this version.
    const acc = [...this.history].reverse().find((h) => h.studentVersion === v && h.studentAccuracy !== undefined)?.studentAccuracy;
    return {
      type: 'end',
      reason,
      round: this.round,
      model: v > 0 ? modelToWire(s.model, s.modelKind, v) : undefined,
      studentAccuracy: acc,
      studentPath: this.shelf.latest() ? STUDENT_PATH : undefined,
    };
  }

  /** /status without the scheduler's parts (`openRound` is the round scheduler's; `online` the task loop's). */
  status(openRound: CoordinatorStatus['openRound']): CoordinatorStatus {
    return {
      round: this.round,
      openRound,
      clients: this.registry.status(this.config.statusClients),
      clientCounts: this.registry.counts(),
      studentVersion: this.o.strategy.version,
      lastRound: this.history.at(-1) ?? null,
      /** Set once the configured rounds are done (clients were sent the final student). */
      ended: this.ended && { reason: this.ended.reason, round: this.ended.round, studentAccuracy: this.ended.studentAccuracy ?? null },
      student: { latest: this.shelf.latest()?.version ?? null, kept: this.shelf.versions(), path: this.shelf.latest() ? STUDENT_PATH : null },
    };
  }
}
