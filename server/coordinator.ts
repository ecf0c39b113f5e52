import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import type { Dataset } from '../shared/data/dataset.ts';
import { Rng } from '../shared/data/rng.ts';
import type { ClientMsg, ErrorMsg, HelloMsg, RoundMsg, ServerMsg, WelcomeMsg } from '../shared/protocol/messages.ts';
import { PROTOCOL_VERSION } from '../shared/protocol/messages.ts';
import { ProtocolError } from '../shared/protocol/validate.ts';
import type { ServerConfig } from './config.ts';
import type { CheckpointStore } from './state/checkpoint-store.ts';
import type { JournalRecord, UploadJournal } from './state/upload-journal.ts';
import type { AggregateReport, AnyStrategy, Participant, RoundContext, RoundTask, Strategy, Update } from './strategies/strategy.ts';

/** How the coordinator reaches a client; the socket.io gateway implements it. Returns the frame's byte size. */
export interface Transport {
  send(clientId: string, msg: ServerMsg): number;
}

export interface RoundSummary {
  round: number;
  status: 'completed' | 'no-quorum' | 'failed';
  strategy: string;
  selected: number;
  participants: number;
  /** Selected clients that disconnected or missed the deadline. */
  dropped: string[];
  uplinkBytes: number;
  downlinkBytes: number;
  studentVersion: number;
  studentAccuracy?: number;
  studentPerClassAccuracy?: number[];
  distillLoss?: number;
  aggregateSeconds: number;
  meanClientTrainSeconds: number;
  meanClientEvalAccuracy?: number;
  seconds: number;
  startedAt: number;
  /** Online: training steps since the previous version, and the staleness (in versions) of the uploads taken in. */
  trainSteps?: number;
  staleness?: { count: number; mean: number; p50: number; p90: number; max: number };
}

interface OpenRound {
  round: number;
  tasks: Map<string, RoundTask>;
  sent: Map<string, RoundMsg>;
  pending: Set<string>;
  updates: Map<string, Update>;
  deadline: number;
  downlinkBytes: number;
  done: () => void;
  timer: ReturnType<typeof setTimeout> | null;
}

export interface ClientRecord {
  participant: Participant;
  /** Issued at first registration; a hello for a connected id must carry it. */
  resumeToken: string;
  connected: boolean;
  registeredAt: number;
  lastSeen: number;
  /** The TensorFlow.js backend its hello named (for dashboards; not part of the Participant strategies see). */
  backend?: string;
  /** Its last accepted upload: when, for which round (online: the version being built), and (online) its staleness. */
  lastUploadAt?: number;
  lastUploadRound?: number;
  lastUploadStaleness?: number;
}

export interface CoordinatorState {
  round: number;
  clients: (Participant & { resumeToken: string })[];
  history: RoundSummary[];
  strategy: unknown;
  /** The last journal record this checkpoint covers: replay starts after it. */
  journalSeq?: number;
  /** What a subclass (the online coordinator) keeps besides. */
  extra?: unknown;
}

/** A round that was open when the server stopped, rebuilt from the journal: who was selected, what was accepted. */
interface ResumedRound {
  round: number;
  selected: string[];
  deadline: number;
  startedAt: number;
  updates: Map<string, Update>;
}

/** How long a round resumed after a restart waits for its selected clients to reconnect before it may close. */
export const RESUME_GRACE_MS = 15_000;

/** How long a round waits for a selected client that dropped to reconnect and upload, once nobody else is pending. */
export const RECONNECT_GRACE_MS = 10_000;

export interface CoordinatorOptions {
  config: ServerConfig;
  strategy: AnyStrategy;
  proxy: Dataset;
  proxyInfo: WelcomeMsg['proxy'];
  validation: Dataset | null;
  store: CheckpointStore;
  journal: UploadJournal;
  log: (msg: string) => void;
  serverVersion: string;
}

/**
 * Owns the round lifecycle: registration, participant selection, round start, deadline and quorum, accepting
 * uploads (stateful checks), handing them to the strategy, evaluation and an atomic checkpoint per round.
 * Emits 'round-start' (round, selected ids, deadline) and 'round' (RoundSummary, AggregateReport) after each round;
 * for dashboards also 'upload' ({clientId, round, bytes, at, staleness?}), 'client' (id, on register/disconnect) and
 * 'phase' ({round, phase: 'closed' | 'aggregate' | 'evaluate' | 'done', at}).
 */
export class Coordinator extends EventEmitter {
  round = 0;
  readonly history: RoundSummary[] = [];
  protected readonly clients = new Map<string, ClientRecord>();
  private open: OpenRound | null = null;
  protected transport: Transport | null = null;
  protected stopped = false;
  private wake: (() => void) | null = null;
  private running: Promise<void> | null = null;
  private resumed: ResumedRound | null = null;
  /** A round completed but its checkpoint failed: no new round opens until one succeeds (replay resumes one round). */
  private checkpointOwed = false;

  constructor(protected readonly o: CoordinatorOptions) {
    super();
  }

  get config(): ServerConfig {
    return this.o.config;
  }
  get strategy(): AnyStrategy {
    return this.o.strategy;
  }

  private get rounds(): Strategy {
    return this.o.strategy as Strategy;
  }

  attach(transport: Transport): void {
    this.transport = transport;
  }

  /**
   * Reload the newest valid checkpoint (student, optimizer, round, registry, history), then replay the journal after
   * it: registrations since, and the round that was open at the crash with the uploads it had already accepted.
   */
  async restore(): Promise<boolean> {
    const ck = await this.o.store.loadLatest();
    let after = 0;
    if (ck) {
      const s = ck.state as CoordinatorState;
      await this.o.strategy.importState(s.strategy);
      if (s.extra !== undefined) this.importExtra(s.extra);
      this.round = s.round;
      this.history.push(...s.history);
      for (const { resumeToken, ...p } of s.clients) this.clients.set(p.id, { participant: p, resumeToken, connected: false, registeredAt: Date.now(), lastSeen: 0 });
      after = s.journalSeq ?? 0;
      this.o.journal.advanceTo(after);
      this.o.log(`restored from ${ck.file}: round ${s.round} done, student v${this.o.strategy.version}, ${s.clients.length} known clients`);
    }
    const records = this.o.journal.replay(after);
    for (const r of records) this.replayRecord(r);
    if (this.resumed) {
      this.o.log(`journal: round ${this.resumed.round} was open at the crash; resuming it with ${this.resumed.updates.size} of ${this.resumed.selected.length} uploads already accepted`);
    }
    return ck !== null || records.length > 0;
  }

  /** Subclass state in checkpoints. */
  protected exportExtra(): unknown {
    return undefined;
  }
  protected importExtra(_extra: unknown): void {}

  protected replayRecord(r: JournalRecord): void {
    if (r.kind === 'client') {
      const { participant, resumeToken } = r as unknown as { participant: Participant; resumeToken: string };
      this.clients.set(participant.id, { participant, resumeToken, connected: false, registeredAt: Date.now(), lastSeen: 0 });
    } else if (r.kind === 'open' && (r.round as number) === this.round + 1) {
      const o = r as unknown as { round: number; selected: string[]; deadline: number; startedAt: number };
      this.resumed = { round: o.round, selected: o.selected, deadline: o.deadline, startedAt: o.startedAt, updates: new Map() };
    } else if (r.kind === 'update' && this.resumed && r.round === this.resumed.round) {
      const u = r.update as Update;
      this.resumed.updates.set(u.clientId, u);
    }
    // Anything about rounds at or below the checkpoint's is already in it: skipped, never counted twice.
  }

  // ---------------- registration ----------------

  register(hello: HelloMsg): WelcomeMsg {
    if (hello.protocol !== PROTOCOL_VERSION) {
      throw new ProtocolError('protocol-version', `server speaks protocol ${PROTOCOL_VERSION}, client ${hello.protocol}: upgrade the older side`);
    }
    const c = this.o.proxy.numClasses;
    if (hello.classCounts && hello.classCounts.length !== c) {
      throw new ProtocolError('bad-shape', `classCounts must have one count per class (${c}), got ${hello.classCounts.length}`);
    }
    const p: Participant = { id: hello.clientId, model: hello.model, numSamples: hello.numSamples, classCounts: hello.classCounts, codec: hello.codec };
    const prev = this.clients.get(p.id);
    // Someone else may hold the shared token: replacing a live connection of an id needs that id's resume token.
    if (prev?.connected && hello.resumeToken !== prev.resumeToken) {
      throw new ProtocolError('unauthorized', `client id '${p.id}' is connected; a reconnect must present the resumeToken its welcome gave`);
    }
    const resumeToken = prev && hello.resumeToken === prev.resumeToken ? prev.resumeToken : randomBytes(18).toString('base64url');
    if (!prev || prev.resumeToken !== resumeToken || JSON.stringify(prev.participant) !== JSON.stringify(p)) this.o.journal.append('client', { participant: p, resumeToken });
    const { lastUploadAt, lastUploadRound, lastUploadStaleness } = prev ?? {};
    this.clients.set(p.id, { participant: p, resumeToken, connected: true, registeredAt: prev?.registeredAt ?? Date.now(), lastSeen: Date.now(), backend: hello.backend, lastUploadAt, lastUploadRound, lastUploadStaleness });
    this.o.log(`client ${p.id} ${prev ? 're' : ''}registered (${p.model}, ${p.numSamples} samples, ${p.codec})`);
    this.poke();
    this.tell('client', p.id);
    return {
      type: 'welcome',
      protocol: PROTOCOL_VERSION,
      clientId: p.id,
      resumeToken,
      serverVersion: this.o.serverVersion,
      strategy: this.o.strategy.name,
      proxy: this.o.proxyInfo,
      student: { kind: this.o.strategy.modelKind, numClasses: this.o.proxy.numClasses, inputShape: this.o.proxy.shape },
    };
  }

  /** After `welcome` went out: a client that reconnects into a round it was selected for gets its task again. */
  resumeIfSelected(clientId: string): void {
    const open = this.open;
    if (open && open.pending.has(clientId)) {
      const msg = open.sent.get(clientId)!;
      open.downlinkBytes += this.transport?.send(clientId, msg) ?? 0;
      this.closeAt(open, open.deadline); // back from a grace period to the round's own deadline
    }
  }

  disconnected(clientId: string): void {
    const rec = this.clients.get(clientId);
    if (!rec) return;
    rec.connected = false;
    this.o.log(`client ${clientId} disconnected`);
    this.tell('client', clientId);
    // Don't stall on it: once nobody connected is pending, the round closes after a short grace for a reconnect.
    if (this.open?.pending.has(clientId) && this.connectedPending(this.open) === 0) this.closeSoon(this.open);
  }

  private closeAt(open: OpenRound, at: number): void {
    if (open.timer) clearTimeout(open.timer);
    open.timer = setTimeout(open.done, Math.max(0, at - Date.now()));
  }

  private closeSoon(open: OpenRound): void {
    this.closeAt(open, Math.min(open.deadline, Date.now() + RECONNECT_GRACE_MS));
  }

  private connectedPending(open: OpenRound): number {
    let n = 0;
    for (const id of open.pending) if (this.clients.get(id)?.connected) n++;
    return n;
  }

  // ---------------- uploads ----------------

  /** Stateful checks then the strategy's; throws ProtocolError to refuse. Returns the accepted frame size. */
  submit(clientId: string, msg: ClientMsg, bytes: number): number {
    if (msg.type === 'hello') throw new ProtocolError('bad-message', 'hello is not an upload');
    const rec = this.clients.get(clientId);
    if (!rec) throw new ProtocolError('not-registered', 'send hello before uploading');
    rec.lastSeen = Date.now();
    const open = this.open;
    if (!open || msg.round > open.round) throw new ProtocolError('unknown-round', `round ${msg.round} is not open (current round: ${open?.round ?? 'none'})`);
    if (msg.round < open.round) throw new ProtocolError('stale-round', `round ${msg.round} is closed; the open round is ${open.round}`);
    const task = open.tasks.get(clientId);
    if (!task) throw new ProtocolError('not-selected', `client ${clientId} was not selected for round ${open.round}`);
    if (open.updates.has(clientId)) throw new ProtocolError('duplicate', `round ${open.round} already has an upload from ${clientId}`);
    if (Date.now() > open.deadline) throw new ProtocolError('late', `round ${open.round}'s deadline has passed`);
    const payload = this.o.strategy.acceptUpdate(this.ctx(open.round), rec.participant, msg, task);
    const update: Update = { clientId, numSamples: rec.participant.numSamples, classCounts: rec.participant.classCounts, payload, bytes, stats: msg.stats };
    // On disk before the ack goes out: a crash from here on cannot lose it.
    this.o.journal.append('update', { round: open.round, update });
    open.updates.set(clientId, update);
    open.pending.delete(clientId);
    this.uploaded(rec, open.round, bytes);
    if (open.pending.size === 0) open.done();
    else if (this.connectedPending(open) === 0) this.closeSoon(open);
    return bytes;
  }

  /** Bookkeeping for dashboards once an upload is accepted. */
  protected uploaded(rec: ClientRecord, round: number, bytes: number, staleness?: number): void {
    rec.lastUploadAt = Date.now();
    rec.lastUploadRound = round;
    rec.lastUploadStaleness = staleness;
    this.tell('upload', { clientId: rec.participant.id, round, bytes, at: rec.lastUploadAt, staleness });
  }

  protected phase(round: number, phase: 'closed' | 'aggregate' | 'evaluate' | 'done'): void {
    this.tell('phase', { round, phase, at: Date.now() });
  }

  /** Events for observers (dashboards, tests, reports): a listener that throws is logged, and never fails an upload or a round. */
  protected tell(event: string, ...args: unknown[]): void {
    try {
      this.emit(event, ...args);
    } catch (e) {
      this.o.log(`'${event}' listener failed: ${(e as Error).stack}`);
    }
  }

  // ---------------- the round loop ----------------

  start(): Promise<void> {
    this.running ??= this.loop().catch((e) => {
      // Not re-thrown: an 'error' event without listener would take the whole server down.
      this.o.log(`coordinator stopped on error: ${(e as Error).stack}`);
      if (this.listenerCount('error') > 0) this.emit('error', e);
    });
    return this.running;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.open?.done();
    this.poke();
    await this.running;
  }

  protected poke(): void {
    this.wake?.();
  }

  protected waitForChange(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(t);
        this.wake = null;
        resolve();
      };
    });
  }

  protected eligibleConnected(): Participant[] {
    return [...this.clients.values()].filter((c) => c.connected && this.o.strategy.eligible(c.participant)).map((c) => c.participant);
  }

  protected ctx(round: number): RoundContext {
    return { round, config: this.o.config, proxy: this.o.proxy, validation: this.o.validation, rng: new Rng(`round/${this.o.config.seed}/${round}`), log: this.o.log };
  }

  protected async loop(): Promise<void> {
    const cfg = this.o.config;
    const resumed = this.resumed;
    this.resumed = null;
    if (resumed && !this.stopped) await this.runRound(resumed.round, [], resumed);
    while (!this.stopped && (cfg.rounds === 0 || this.round < cfg.rounds)) {
      if (this.checkpointOwed) {
        try {
          await this.checkpoint();
          this.checkpointOwed = false;
          this.o.log(`round ${this.round}: checkpoint written on retry`);
        } catch (e) {
          this.o.log(`round ${this.round}: checkpoint still failing, retrying in 5 s: ${(e as Error).message}`);
          await this.waitForChange(5000);
          continue;
        }
      }
      const ready = this.eligibleConnected();
      if (ready.length < cfg.minClients) {
        await this.waitForChange(1000);
        continue;
      }
      await this.runRound(this.round + 1, ready);
    }
    this.emit('finished', this.history);
  }

  private async runRound(round: number, ready: Participant[], resumed?: ResumedRound): Promise<void> {
    const cfg = this.o.config;
    const startedAt = resumed?.startedAt ?? Date.now();
    const ctx = this.ctx(round);
    const k = Math.min(ready.length, Math.max(cfg.minClients, Math.ceil(cfg.fraction * ready.length)));
    const selected = resumed
      ? resumed.selected.map((id) => this.clients.get(id)?.participant).filter((p): p is Participant => p !== undefined)
      : ctx.rng.shuffle([...ready].sort((a, b) => (a.id < b.id ? -1 : 1))).slice(0, k);
    // Deterministic given the strategy's state and the round: a resumed round hands out the same tasks as before.
    const tasks = await this.rounds.configureRound(ctx, selected);
    if (this.stopped) return;
    let done!: () => void;
    const finished = new Promise<void>((r) => (done = r));
    const open: OpenRound = {
      round,
      tasks,
      sent: new Map(),
      pending: new Set([...tasks.keys()].filter((id) => !resumed?.updates.has(id))),
      updates: new Map(resumed?.updates ?? []),
      deadline: resumed ? Math.max(resumed.deadline, Date.now() + RESUME_GRACE_MS) : Date.now() + cfg.roundTimeoutS * 1000,
      downlinkBytes: 0,
      done,
      timer: null,
    };
    this.open = open;
    if (!resumed) this.o.journal.append('open', { round, selected: [...tasks.keys()], deadline: open.deadline, startedAt });
    for (const [id, task] of tasks) {
      const msg: RoundMsg = { type: 'round', round, strategy: this.o.strategy.name, deadline: open.deadline, ...task };
      open.sent.set(id, msg);
      if (this.clients.get(id)?.connected) open.downlinkBytes += this.transport?.send(id, msg) ?? 0;
    }
    this.o.log(`round ${round}: ${selected.length} selected of ${ready.length} (${this.o.strategy.name})`);
    this.tell('round-start', round, [...tasks.keys()], open.deadline);
    this.closeAt(open, open.deadline);
    if (open.pending.size === 0) open.done();
    else if (this.connectedPending(open) === 0 && !resumed) this.closeSoon(open); // everyone selected dropped while we configured
    await finished;
    if (open.timer) clearTimeout(open.timer);
    // Close the round before the slow part, so late uploads are refused as stale rather than raced.
    this.open = null;
    if (this.stopped && open.updates.size < tasks.size) return;
    this.phase(round, 'closed');

    const updates = [...open.updates.values()].sort((a, b) => (a.clientId < b.clientId ? -1 : 1));
    const needed = Math.max(1, Math.ceil(cfg.quorum * tasks.size));
    const dropped = [...open.pending];
    let report: AggregateReport = { seconds: 0 };
    let accuracy: number | undefined;
    let perClass: number[] | undefined;
    let status: RoundSummary['status'] = 'completed';
    if (updates.length >= needed) {
      try {
        this.phase(round, 'aggregate');
        report = await this.rounds.aggregate(ctx, updates, new Map(updates.map((u) => [u.clientId, tasks.get(u.clientId)!])));
        this.phase(round, 'evaluate');
        ({ accuracy, perClassAccuracy: perClass } = await this.o.strategy.evaluate(ctx));
        this.phase(round, 'done');
      } catch (e) {
        // A failure here is ours, not a peer's: record it and go on with the next round rather than die.
        status = 'failed';
        this.o.log(`round ${round}: aggregation failed: ${(e as Error).stack}`);
      }
    } else {
      status = 'no-quorum';
      this.o.log(`round ${round}: only ${updates.length} of ${tasks.size} uploads (quorum ${needed}); student unchanged`);
    }
    const evals = updates.map((u) => u.stats.evalAccuracy).filter((a): a is number => a !== undefined);
    const summary: RoundSummary = {
      round,
      status,
      strategy: this.o.strategy.name,
      selected: tasks.size,
      participants: updates.length,
      dropped,
      uplinkBytes: updates.reduce((n, u) => n + u.bytes, 0),
      downlinkBytes: open.downlinkBytes,
      studentVersion: this.o.strategy.version,
      studentAccuracy: accuracy,
      studentPerClassAccuracy: perClass,
      distillLoss: report.distillLoss,
      aggregateSeconds: report.seconds,
      meanClientTrainSeconds: updates.reduce((n, u) => n + u.stats.trainSeconds, 0) / Math.max(1, updates.length),
      meanClientEvalAccuracy: evals.length ? evals.reduce((a, b) => a + b, 0) / evals.length : undefined,
      seconds: (Date.now() - startedAt) / 1000,
      startedAt,
    };
    this.round = round;
    this.history.push(summary);
    try {
      await this.checkpoint();
    } catch (e) {
      this.checkpointOwed = true;
      this.o.log(`round ${round}: checkpoint failed (state kept in memory; retried before the next round opens): ${(e as Error).message}`);
    }
    this.o.log(
      `round ${round} ${status}: ${updates.length}/${tasks.size} uploads, up ${summary.uplinkBytes} B, down ${summary.downlinkBytes} B` +
        (accuracy !== undefined ? `, student acc ${(accuracy * 100).toFixed(2)}%` : '') +
        `, ${summary.seconds.toFixed(1)} s`,
    );
    for (const id of this.clients.keys()) {
      if (this.clients.get(id)!.connected) this.transport?.send(id, { type: 'round-result', round, participants: updates.length, studentAccuracy: accuracy });
    }
    this.tell('round', summary, report);
  }

  protected async checkpoint(): Promise<void> {
    const strategy = await this.o.strategy.exportState();
    // Everything else is read in one synchronous step with the journal position it corresponds to.
    const state: CoordinatorState = {
      round: this.round,
      clients: [...this.clients.values()].map((c) => ({ ...c.participant, resumeToken: c.resumeToken })),
      history: this.history,
      strategy,
      journalSeq: this.o.journal.seq,
      extra: this.exportExtra(),
    };
    await this.o.store.save(this.round, state);
    // What the checkpoint covers leaves the journal (a crash before this is harmless: replay skips it); records
    // appended while it was being written stay.
    this.o.journal.compact(state.journalSeq!);
  }

  /** For /status. */
  status() {
    return {
      round: this.round,
      openRound: this.open && { round: this.open.round, selected: this.open.tasks.size, received: this.open.updates.size, deadline: new Date(this.open.deadline).toISOString() },
      clients: [...this.clients.values()].map((c) => ({
        id: c.participant.id,
        model: c.participant.model,
        backend: c.backend,
        numSamples: c.participant.numSamples,
        connected: c.connected,
        lastSeen: c.lastSeen ? new Date(c.lastSeen).toISOString() : null,
        lastUploadAt: c.lastUploadAt ? new Date(c.lastUploadAt).toISOString() : null,
        lastUploadRound: c.lastUploadRound ?? null,
        lastUploadStaleness: c.lastUploadStaleness ?? null,
      })),
      studentVersion: this.o.strategy.version,
      lastRound: this.history.at(-1) ?? null,
    };
  }

  errorFor(e: unknown, round?: number): ErrorMsg {
    if (e instanceof ProtocolError) return { type: 'error', code: e.code, message: e.message, round };
    return { type: 'error', code: 'internal', message: 'internal server error', round };
  }
}
