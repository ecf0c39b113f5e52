import type { RoundSummary } from '../../shared/dashboard-feed.ts';
import { stalenessSummary } from '../../shared/distill/staleness.ts';
import type { ClientMsg, HelloMsg, RoundMsg, WelcomeMsg } from '../../shared/protocol/messages.ts';
import { ProtocolError, isSecAggMsg } from '../../shared/protocol/validate.ts';
import type { OnlineStats } from '../coordinator.ts';
import type { JournalRecord } from '../state/upload-journal.ts';
import type { OnlineStrategy, RoundContext, RoundTask, Update } from '../strategies/strategy.ts';
import type { ClientRecord } from './client-registry.ts';
import type { Scheduler, SchedulerStatus } from './composed-coordinator.ts';
import type { Federation } from './federation.ts';

/** A task handed to one client, open until its upload arrives or its deadline passes (a disconnect keeps it open). */
interface Ticket {
  ticket: number;
  clientId: string;
  task: RoundTask;
  msg: RoundMsg;
  deadline: number;
}

/** What checkpoints keep of the loop (CoordinatorState.extra). */
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
 * waiting nor overfits a trickle) and is published every K steps or S seconds (`publishEverySteps`,
 * `publishEverySeconds`). Each publish is a checkpoint; uploads and tasks in between are journaled, so a SIGKILL loses
 * nothing acked. The federation's `round` is the published student version; `rounds` in the config is how many
 * versions to publish.
 */
export class OnlineTaskLoop implements Scheduler {
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

  constructor(private readonly f: Federation) {}

  private get strategy(): OnlineStrategy {
    return this.f.strategy as OnlineStrategy;
  }

  /** Total accepted uploads, and their staleness distribution (for /status and reports). */
  stats(): OnlineStats {
    return { accepted: this.accepted, staleness: stalenessSummary(this.stalenessHist), histogram: [...this.stalenessHist], openTickets: this.tickets.size };
  }

  /** For /status: the online section (no round is ever open). */
  status(): SchedulerStatus {
    return { online: this.stats() };
  }

  // ---------------- recovery ----------------

  exportExtra(): OnlineExtra {
    return { nextTicket: this.nextTicket, tasksIssued: [...this.tasksIssued], accepted: this.accepted, staleness: this.stalenessHist };
  }

  importExtra(extra: unknown): void {
    const e = extra as OnlineExtra;
    this.nextTicket = e.nextTicket;
    for (const [id, n] of e.tasksIssued) this.tasksIssued.set(id, n);
    this.accepted = e.accepted;
    this.stalenessHist = e.staleness;
  }

  /** Journal records past the checkpoint: tasks issued (numbering goes on) and contributions (back into the teacher). */
  replay(r: JournalRecord): void {
    if (r.kind === 'task') {
      const t = r as unknown as { ticket: number; clientId: string; n: number };
      this.nextTicket = Math.max(this.nextTicket, t.ticket + 1);
      this.tasksIssued.set(t.clientId, Math.max(this.tasksIssued.get(t.clientId) ?? 0, t.n));
    } else if (r.kind === 'contribution') {
      const c = r as unknown as { update: Update; indices: Uint32Array; studentVersion: number; staleness: number };
      this.strategy.ingest(c.update, { indices: c.indices, studentVersion: c.studentVersion });
      this.count(c.staleness);
    }
  }

  /** After a restore that found something: where the loop goes on from. */
  restored(): void {
    this.f.log.info(
      { studentVersion: this.strategy.version, accepted: this.accepted, nextTicket: this.nextTicket },
      `online: student v${this.strategy.version}, ${this.accepted} uploads taken in so far, next ticket ${this.nextTicket}; open tasks are reissued`,
    );
  }

  private count(staleness: number): void {
    this.accepted++;
    this.budget += this.f.config.stepsPerUpload;
    while (this.stalenessHist.length <= staleness) this.stalenessHist.push(0);
    this.stalenessHist[staleness]++;
  }

  // ---------------- clients ----------------

  registered(hello: HelloMsg, welcome: WelcomeMsg): void {
    // A new resume token means a new client process (no model in memory): its next task must bring the student.
    if (welcome.resumeToken !== hello.resumeToken) this.heldVersion.delete(hello.clientId);
  }

  /** A client that reconnects gets its open task again (it re-sends its upload or keeps working on it). */
  resume(clientId: string): void {
    const t = this.tickets.get(clientId);
    if (t) this.f.send(clientId, t.msg);
    this.f.poke();
  }

  /** The ticket's checks, staleness (too stale: resync), then into the teacher at once. Returns the frame size. */
  submit(rec: ClientRecord, msg: ClientMsg, bytes: number): number {
    if (msg.type === 'hello') throw new ProtocolError('bad-message', 'hello is not an upload');
    if (isSecAggMsg(msg)) throw new ProtocolError('bad-message', `'${msg.type}': secure aggregation runs with round strategies only, not online`);
    if (msg.type === 'decline') throw new ProtocolError('bad-message', "'decline' answers a round; the online strategy has no DP to decline (disconnect to stop taking tasks)");
    const { f } = this;
    const clientId = rec.participant.id;
    const cfg = f.config;
    // A task never issued is unknown (also after the end); one issued and not this client's open task is closed.
    if (msg.round < 1 || msg.round >= this.nextTicket) throw new ProtocolError('unknown-round', `task ${msg.round} was never issued`);
    if (f.ended) throw new ProtocolError('stale-round', `the federation is over: all ${cfg.rounds} student versions are published`);
    const t = this.tickets.get(clientId);
    if (!t || msg.round !== t.ticket) {
      throw new ProtocolError('stale-round', `task ${msg.round} is closed${t ? `; your open task is ${t.ticket}` : ''}`);
    }
    if (Date.now() > t.deadline) throw new ProtocolError('late', `task ${t.ticket}'s deadline has passed`);
    const s = this.strategy;
    const payload = s.acceptUpdate(f.ctx(f.round), rec.participant, msg, t.task);
    const studentVersion = t.task.studentVersion ?? 0;
    const staleness = s.version - studentVersion;
    this.tickets.delete(clientId);
    f.poke(); // its next task goes out from the loop
    if (staleness > cfg.maxStaleness) {
      this.win.resyncs.push(clientId);
      this.heldVersion.delete(clientId);
      throw new ProtocolError('resync', `task ${t.ticket} was computed against student v${studentVersion}, ${staleness} versions behind v${s.version} (max ${cfg.maxStaleness}); your next task brings the latest student`);
    }
    const update: Update = { clientId, numSamples: rec.participant.numSamples, classCounts: rec.participant.classCounts, payload, bytes, stats: msg.stats };
    // On disk before the ack goes out.
    f.o.journal.append('contribution', { ticket: t.ticket, update, indices: t.task.indices, studentVersion, staleness });
    s.ingest(update, t.task);
    this.count(staleness);
    f.uploaded(rec, f.round + 1, bytes, staleness); // goes into the version being built
    const w = this.win;
    w.uploads++;
    w.uplinkBytes += bytes;
    w.clientTrainSeconds += msg.stats.trainSeconds ?? 0;
    if (msg.stats.evalAccuracy !== undefined) w.evals.push(msg.stats.evalAccuracy);
    while (w.staleness.length <= staleness) w.staleness.push(0);
    w.staleness[staleness]++;
    return bytes;
  }

  /** On shutdown: nothing to close (open tickets just lapse). */
  halt(): void {}

  // ---------------- the loop ----------------

  /** Give every connected, idle, eligible client its next task (and drop tasks past their deadline). */
  private async dispatch(): Promise<void> {
    const { f } = this;
    const s = this.strategy;
    const now = Date.now();
    for (const [id, t] of this.tickets) {
      if (now > t.deadline) {
        this.tickets.delete(id);
        this.heldVersion.delete(id); // it may never have taken that task's student: send it again
        f.registry.missed(id, 'tasks'); // enough in a row and it is idle: no more tasks (nor students) until a sign of life
      }
    }
    // Clients past their retention leave the registry; their per-client task state goes with them (bounded memory).
    for (const id of f.pruneRegistry()) {
      this.tasksIssued.delete(id);
      this.heldVersion.delete(id);
      this.tickets.delete(id);
    }
    for (const p of f.registry.eligibleConnected((x) => s.eligible(x))) {
      if (this.tickets.has(p.id) || this.issuing.has(p.id)) continue;
      this.issuing.add(p.id);
      try {
        const n = (this.tasksIssued.get(p.id) ?? 0) + 1;
        const task = await s.configureTask(f.ctx(f.round), p, n, this.heldVersion.get(p.id) ?? -1);
        if (!f.registry.isConnected(p.id)) continue;
        const ticket = this.nextTicket++;
        this.tasksIssued.set(p.id, n);
        const deadline = Date.now() + f.config.roundTimeoutS * 1000;
        const msg: RoundMsg = { type: 'round', round: ticket, strategy: s.name, deadline, ...task };
        f.o.journal.append('task', { ticket, clientId: p.id, n });
        this.tickets.set(p.id, { ticket, clientId: p.id, task, msg, deadline });
        if (task.model) this.heldVersion.set(p.id, task.model.version);
        this.win.issued++;
        this.win.downlinkBytes += f.send(p.id, msg);
      } finally {
        this.issuing.delete(p.id);
      }
    }
  }

  async run(): Promise<void> {
    const { f } = this;
    const cfg = f.config;
    this.win = emptyWindow();
    let lastPublish = Date.now();
    let waitingWith = -1;
    while (!f.stopped && (cfg.rounds === 0 || f.round < cfg.rounds)) {
      // Start once minClients are here (so a study starts everyone together); after that nobody waits for anybody.
      if (!this.started) {
        const have = f.registry.eligibleConnected((p) => this.strategy.eligible(p)).length;
        if (have < cfg.minClients) {
          if (have !== waitingWith) f.registry.logWaiting(have, cfg.minClients, 'starting', this.strategy.name);
          waitingWith = have;
          await f.waitForChange(500);
          continue;
        }
        this.started = true;
        this.win = emptyWindow();
        lastPublish = Date.now();
        f.log.info(
          { clients: have, publishEverySteps: cfg.publishEverySteps, publishEverySeconds: cfg.publishEverySeconds },
          `online: ${have} clients connected, starting (publish every ${cfg.publishEverySteps} steps or ${cfg.publishEverySeconds} s)`,
        );
      }
      await this.dispatch();
      if (this.budget <= 0) {
        // Nothing owed: publish what was trained once the interval is up (clients may have gone quiet), then wait.
        if (this.win.steps > 0 && Date.now() - lastPublish >= cfg.publishEverySeconds * 1000) {
          await this.publish();
          lastPublish = Date.now();
          continue;
        }
        await f.waitForChange(500); // an upload (or a connect) wakes us
        continue;
      }
      const t0 = performance.now();
      this.stepCtx ??= f.ctx(f.round);
      const loss = await this.strategy.trainStep(this.stepCtx);
      if (loss === null) {
        await f.waitForChange(200);
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
    if (!f.stopped) {
      this.tickets.clear(); // nothing more is taken in: the end goes out instead of further tasks
      f.finish();
    }
  }

  private async publish(): Promise<void> {
    const { f } = this;
    const s = this.strategy;
    const w = this.win;
    this.win = emptyWindow();
    s.publish();
    f.round = s.version;
    this.stepCtx = null;
    f.phase(f.round, 'evaluate');
    const { accuracy, perClassAccuracy } = await s.evaluate(f.ctx(f.round));
    f.phase(f.round, 'done');
    const summary: RoundSummary = {
      round: f.round,
      status: 'completed',
      strategy: s.name,
      selected: w.issued,
      participants: w.uploads,
      dropped: w.resyncs,
      uplinkBytes: w.uplinkBytes,
      downlinkBytes: w.downlinkBytes,
      studentVersion: s.version,
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
    f.history.push(summary);
    try {
      await f.checkpoint(() => this.exportExtra());
    } catch (e) {
      f.log.error({ studentVersion: f.round, err: (e as Error).message }, `v${f.round}: checkpoint failed (state kept in memory, the next version will retry)`);
    }
    await f.releaseStudent(summary);
    const cfg = f.config;
    f.log.info(
      { studentVersion: f.round, steps: w.steps, uploads: w.uploads, staleness: summary.staleness, studentAccuracy: accuracy },
      `student v${f.round}${cfg.rounds ? `/${cfg.rounds}` : ''}: ${w.steps} steps, ${w.uploads} uploads (staleness mean ${summary.staleness!.mean.toFixed(2)}, max ${summary.staleness!.max})` +
        (accuracy !== undefined ? `, student acc ${(accuracy * 100).toFixed(2)}%` : ''),
    );
    f.tell('round', summary, { seconds: summary.aggregateSeconds });
  }
}

function emptyWindow(): Window {
  return { startedAt: Date.now(), issued: 0, uploads: 0, uplinkBytes: 0, downlinkBytes: 0, steps: 0, lossSum: 0, trainMs: 0, clientTrainSeconds: 0, evals: [], staleness: [], resyncs: [] };
}
