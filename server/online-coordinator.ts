import type { ClientMsg, HelloMsg, RoundMsg, WelcomeMsg } from '../shared/protocol/messages.ts';
import { ProtocolError } from '../shared/protocol/validate.ts';
import { stalenessSummary } from '../shared/distill/staleness.ts';
import { Coordinator, type RoundSummary } from './coordinator.ts';
import type { JournalRecord } from './state/upload-journal.ts';
import type { OnlineStrategy, RoundContext, RoundTask, Update } from './strategies/strategy.ts';

/** A task handed to one client, open until its upload arrives or its deadline passes (a disconnect keeps it open). */
interface Ticket {
  ticket: number;
  clientId: string;
  task: RoundTask;
  msg: RoundMsg;
  deadline: number;
}

interface OnlineExtra {
  nextTicket: number;
  /** Tasks issued per client (a client's n-th task labels the n-th proxy window). */
  tasksIssued: [string, number][];
  accepted: number;
  /** Staleness histogram of every accepted upload (index = versions behind). */
  staleness: number[];
}

/** Since the last published version: what the version's summary row reports. */
interface Window {
  startedAt: number;
  issued: number;
  uploads: number;
  uplinkBytes: number;
  downlinkBytes: number;
  steps: number;
  lossSum: number;
  trainMs: number;
  clientTrainSeconds: number;
  evals: number[];
  staleness: number[];
  resyncs: string[];
}

const breathe = () => new Promise<void>((r) => setImmediate(r));

/**
 * Online distillation's scheduling: no rounds and no barrier. Every connected client always has one task (a ticket);
 * an accepted upload goes into the strategy's teacher at once and the client gets its next task; between socket events
 * the student trains step by step (stepsPerUpload steps owed per accepted upload, so it neither idles with data
 * waiting nor overfits a trickle) and is published every K steps or S seconds (`publishEverySteps`, `publishEverySeconds`). Each publish is a checkpoint; uploads and tasks in between are journaled, so a SIGKILL loses
 * nothing acked. `round` is the published student version; `rounds` in the config is how many versions to publish.
 */
export class OnlineCoordinator extends Coordinator {
  private readonly tickets = new Map<string, Ticket>();
  private readonly tasksIssued = new Map<string, number>();
  /** The student version each client last received (not persisted: after a restart everyone gets the student again). */
  private readonly heldVersion = new Map<string, number>();
  private nextTicket = 1;
  private accepted = 0;
  private stalenessHist: number[] = [];
  private win: Window = emptyWindow();
  private issuing = new Set<string>();
  /** Training steps owed: each accepted upload adds stepsPerUpload, so the student learns as fast as data arrives. */
  private budget = 0;
  private started = false;
  /** One context (and random stream) per student version: steps within a version draw different rows. */
  private stepCtx: RoundContext | null = null;

  private get online(): OnlineStrategy {
    return this.o.strategy as OnlineStrategy;
  }

  /** Total accepted uploads, and their staleness distribution (for /status and reports). */
  onlineStats() {
    return { accepted: this.accepted, staleness: stalenessSummary(this.stalenessHist), histogram: [...this.stalenessHist], openTickets: this.tickets.size };
  }

  override status() {
    return { ...super.status(), online: this.onlineStats() };
  }

  protected override exportExtra(): OnlineExtra {
    return { nextTicket: this.nextTicket, tasksIssued: [...this.tasksIssued], accepted: this.accepted, staleness: this.stalenessHist };
  }

  protected override importExtra(extra: unknown): void {
    const e = extra as OnlineExtra;
    this.nextTicket = e.nextTicket;
    for (const [id, n] of e.tasksIssued) this.tasksIssued.set(id, n);
    this.accepted = e.accepted;
    this.stalenessHist = e.staleness;
  }

  protected override replayRecord(r: JournalRecord): void {
    if (r.kind === 'task') {
      const t = r as unknown as { ticket: number; clientId: string; n: number };
      this.nextTicket = Math.max(this.nextTicket, t.ticket + 1);
      this.tasksIssued.set(t.clientId, Math.max(this.tasksIssued.get(t.clientId) ?? 0, t.n));
    } else if (r.kind === 'contribution') {
      const c = r as unknown as { update: Update; indices: Uint32Array; studentVersion: number; staleness: number };
      this.online.ingest(c.update, { indices: c.indices, studentVersion: c.studentVersion });
      this.count(c.staleness);
    } else super.replayRecord(r);
  }

  override async restore(): Promise<boolean> {
    const had = await super.restore();
    if (had) this.o.log(`online: student v${this.online.version}, ${this.accepted} uploads taken in so far, next ticket ${this.nextTicket}; open tasks are reissued`);
    return had;
  }

  private count(staleness: number): void {
    this.accepted++;
    this.budget += this.o.config.stepsPerUpload;
    while (this.stalenessHist.length <= staleness) this.stalenessHist.push(0);
    this.stalenessHist[staleness]++;
  }

  override register(hello: HelloMsg): WelcomeMsg {
    const welcome = super.register(hello);
    // A new resume token means a new client process (no model in memory): its next task must bring the student.
    if (welcome.resumeToken !== hello.resumeToken) this.heldVersion.delete(hello.clientId);
    return welcome;
  }

  override resumeIfSelected(clientId: string): void {
    const t = this.tickets.get(clientId);
    if (t) this.transport?.send(clientId, t.msg); // the client re-sends its upload or keeps working on it
    this.poke();
  }

  override submit(clientId: string, msg: ClientMsg, bytes: number): number {
    if (msg.type === 'hello') throw new ProtocolError('bad-message', 'hello is not an upload');
    const rec = this.clients.get(clientId);
    if (!rec) throw new ProtocolError('not-registered', 'send hello before uploading');
    rec.lastSeen = Date.now();
    const t = this.tickets.get(clientId);
    if (!t || msg.round !== t.ticket) {
      if (msg.round >= this.nextTicket) throw new ProtocolError('unknown-round', `task ${msg.round} was never issued`);
      throw new ProtocolError('stale-round', `task ${msg.round} is closed${t ? `; your open task is ${t.ticket}` : ''}`);
    }
    if (Date.now() > t.deadline) throw new ProtocolError('late', `task ${t.ticket}'s deadline has passed`);
    const payload = this.online.acceptUpdate(this.ctx(this.round), rec.participant, msg, t.task);
    const studentVersion = t.task.studentVersion ?? 0;
    const staleness = this.online.version - studentVersion;
    this.tickets.delete(clientId);
    this.poke(); // its next task goes out from the loop
    if (staleness > this.o.config.maxStaleness) {
      this.win.resyncs.push(clientId);
      this.heldVersion.delete(clientId);
      throw new ProtocolError('resync', `task ${t.ticket} was computed against student v${studentVersion}, ${staleness} versions behind v${this.online.version} (max ${this.o.config.maxStaleness}); your next task brings the latest student`);
    }
    const update: Update = { clientId, numSamples: rec.participant.numSamples, classCounts: rec.participant.classCounts, payload, bytes, stats: msg.stats };
    // On disk before the ack goes out.
    this.o.journal.append('contribution', { ticket: t.ticket, update, indices: t.task.indices, studentVersion, staleness });
    this.online.ingest(update, t.task);
    this.count(staleness);
    this.uploaded(rec, this.round + 1, bytes, staleness); // goes into the version being built
    const w = this.win;
    w.uploads++;
    w.uplinkBytes += bytes;
    w.clientTrainSeconds += msg.stats.trainSeconds;
    if (msg.stats.evalAccuracy !== undefined) w.evals.push(msg.stats.evalAccuracy);
    while (w.staleness.length <= staleness) w.staleness.push(0);
    w.staleness[staleness]++;
    return bytes;
  }

  /** Give every connected, idle, eligible client its next task (and drop tasks past their deadline). */
  private async dispatch(): Promise<void> {
    const now = Date.now();
    for (const [id, t] of this.tickets) {
      if (now > t.deadline) {
        this.tickets.delete(id);
        this.heldVersion.delete(id); // it may never have taken that task's student: send it again
      }
    }
    for (const p of this.eligibleConnected()) {
      if (this.tickets.has(p.id) || this.issuing.has(p.id)) continue;
      this.issuing.add(p.id);
      try {
        const n = (this.tasksIssued.get(p.id) ?? 0) + 1;
        const task = await this.online.configureTask(this.ctx(this.round), p, n, this.heldVersion.get(p.id) ?? -1);
        if (!this.clients.get(p.id)?.connected) continue;
        const ticket = this.nextTicket++;
        this.tasksIssued.set(p.id, n);
        const deadline = Date.now() + this.o.config.roundTimeoutS * 1000;
        const msg: RoundMsg = { type: 'round', round: ticket, strategy: this.online.name, deadline, ...task };
        this.o.journal.append('task', { ticket, clientId: p.id, n });
        this.tickets.set(p.id, { ticket, clientId: p.id, task, msg, deadline });
        if (task.model) this.heldVersion.set(p.id, task.model.version);
        this.win.issued++;
        this.win.downlinkBytes += this.transport?.send(p.id, msg) ?? 0;
      } finally {
        this.issuing.delete(p.id);
      }
    }
  }

  protected override async loop(): Promise<void> {
    const cfg = this.o.config;
    this.win = emptyWindow();
    let lastPublish = Date.now();
    while (!this.stopped && (cfg.rounds === 0 || this.round < cfg.rounds)) {
      // Start once minClients are here (so a study starts everyone together); after that nobody waits for anybody.
      if (!this.started) {
        if (this.eligibleConnected().length < cfg.minClients) {
          await this.waitForChange(500);
          continue;
        }
        this.started = true;
        this.win = emptyWindow();
        lastPublish = Date.now();
        this.o.log(`online: ${this.eligibleConnected().length} clients connected, starting (publish every ${cfg.publishEverySteps} steps or ${cfg.publishEverySeconds} s)`);
      }
      await this.dispatch();
      if (this.budget <= 0) {
        // Nothing owed: publish what was trained once the interval is up (clients may have gone quiet), then wait.
        if (this.win.steps > 0 && Date.now() - lastPublish >= cfg.publishEverySeconds * 1000) {
          await this.publish();
          lastPublish = Date.now();
          continue;
        }
        await this.waitForChange(500); // an upload (or a connect) wakes us
        continue;
      }
      const t0 = performance.now();
      this.stepCtx ??= this.ctx(this.round);
      const loss = await this.online.trainStep(this.stepCtx);
      if (loss === null) {
        await this.waitForChange(200);
        continue;
      }
      this.budget--;
      this.win.trainMs += performance.now() - t0;
      this.win.steps++;
      this.win.lossSum += loss;
      if (this.win.steps >= cfg.publishEverySteps || Date.now() - lastPublish >= cfg.publishEverySeconds * 1000) {
        await this.publish();
        lastPublish = Date.now();
      }
      await breathe(); // let socket.io deliver uploads between steps
    }
    this.emit('finished', this.history);
  }

  private async publish(): Promise<void> {
    const w = this.win;
    this.win = emptyWindow();
    this.online.publish();
    this.round = this.online.version;
    this.stepCtx = null;
    this.phase(this.round, 'evaluate');
    const { accuracy, perClassAccuracy } = await this.online.evaluate(this.ctx(this.round));
    this.phase(this.round, 'done');
    const summary: RoundSummary = {
      round: this.round,
      status: 'completed',
      strategy: this.online.name,
      selected: w.issued,
      participants: w.uploads,
      dropped: w.resyncs,
      uplinkBytes: w.uplinkBytes,
      downlinkBytes: w.downlinkBytes,
      studentVersion: this.online.version,
      studentAccuracy: accuracy,
      studentPerClassAccuracy: perClassAccuracy,
      distillLoss: w.steps ? w.lossSum / w.steps : undefined,
      aggregateSeconds: w.trainMs / 1000,
      meanClientTrainSeconds: w.uploads ? w.clientTrainSeconds / w.uploads : 0,
      meanClientEvalAccuracy: w.evals.length ? w.evals.reduce((a, b) => a + b, 0) / w.evals.length : undefined,
      seconds: (Date.now() - w.startedAt) / 1000,
      startedAt: w.startedAt,
      trainSteps: w.steps,
      staleness: stalenessSummary(w.staleness),
    };
    this.history.push(summary);
    try {
      await this.checkpoint();
    } catch (e) {
      this.o.log(`v${this.round}: checkpoint failed (state kept in memory, the next version will retry): ${(e as Error).message}`);
    }
    this.o.log(
      `student v${this.round}: ${w.steps} steps, ${w.uploads} uploads (staleness mean ${summary.staleness!.mean.toFixed(2)}, max ${summary.staleness!.max})` +
        (accuracy !== undefined ? `, student acc ${(accuracy * 100).toFixed(2)}%` : ''),
    );
    this.tell('round', summary, { seconds: summary.aggregateSeconds });
  }
}

function emptyWindow(): Window {
  return { startedAt: Date.now(), issued: 0, uploads: 0, uplinkBytes: 0, downlinkBytes: 0, steps: 0, lossSum: 0, trainMs: 0, clientTrainSeconds: 0, evals: [], staleness: [], resyncs: [] };
}
