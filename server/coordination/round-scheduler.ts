import type { OpenRoundStatus, RoundSummary } from '../../shared/dashboard-feed.ts';
import type { Rng } from '../../shared/data/rng.ts';
import type { ClientMsg, RoundMsg, SecAggMaskedMsg } from '../../shared/protocol/messages.ts';
import { ProtocolError, isSecAggMsg } from '../../shared/protocol/validate.ts';
import { fixedPointScale, MAX_PARTICIPANTS } from '../../shared/secagg/params.ts';
import { planPrivacy, privacyTask, PrivacyLedger, type DpPlan } from '../privacy/privacy-ledger.ts';
import { SecureRound } from './secure-round.ts';
import type { JournalRecord } from '../state/upload-journal.ts';
import type { AggregateReport, Participant, RoundTask, Strategy, Update } from '../strategies/strategy.ts';
import type { ClientRecord } from './client-registry.ts';
import type { Scheduler, SchedulerStatus } from './composed-coordinator.ts';
import type { Federation } from './federation.ts';

/** How many pending ids a "waiting for" log line names (the rest are counted). */
const WAITING_NAMES = 10;

/** How long a round resumed after a restart waits for its selected clients to reconnect before it may close. */
export const RESUME_GRACE_MS = 15_000;

/** How long a round waits for a selected client that dropped to reconnect and upload, once nobody else is pending. */
export const RECONNECT_GRACE_MS = 10_000;

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
  /** With --secure-aggregation: the round's key exchange and unmasking. */
  secure: SecureRound | null;
  /** Selected clients the key exchange went on without (no keys or shares in time): they count as dropped. */
  leftOut: Set<string>;
}

/** A round that was open when the server stopped, rebuilt from the journal: who was selected, what was accepted. */
interface ResumedRound {
  round: number;
  selected: string[];
  deadline: number;
  startedAt: number;
  updates: Map<string, Update>;
  /** The proxy rows the round asked for, as journaled (rounds opened before they were journaled: absent). */
  rows?: Uint32Array;
}

/**
 * Rounds for ensemble, mutual and fedavg (Flower's configure → fit → aggregate → evaluate): wait for minClients,
 * select (fraction, minClients) from the registry's eligible connected clients, open the round (journaled) and send
 * each selected client its task, take uploads (stateful checks), close when all answered, when the remaining ones
 * have dropped (after a reconnect grace) or at the deadline, then aggregate if a quorum answered, evaluate, checkpoint
 * and publish. A round open at a crash is rebuilt from the journal and resumed with the uploads it had accepted.
 */
export class RoundScheduler implements Scheduler {
  private open: OpenRound | null = null;
  private resumed: ResumedRound | null = null;
  /** A round completed but its checkpoint failed: no new round opens until one succeeds (replay resumes one round). */
  private checkpointOwed = false;
  /** The newest round opened by this process (a restored server also counts the checkpoint's completed rounds). */
  private lastOpened = 0;
  /** The closed round whose secure sum is being unmasked (it takes `sa-reveal`s). */
  private unmasking: SecureRound | null = null;
  /** Differential privacy: the calibrated noise, and each client's ε so far (null: DP off). */
  readonly ledger: PrivacyLedger | null;

  constructor(private readonly f: Federation) {
    const cfg = f.config;
    const plan: DpPlan | null = planPrivacy(cfg, f.strategy.name === 'fedavg' ? 'update' : 'probs', cfg.secureAggregation.enabled ? 'distributed' : cfg.privacy.noise);
    this.ledger = plan && new PrivacyLedger(plan);
    if (plan) {
      f.log.info(
        { privacy: { mode: plan.mode, noiseMultiplier: plan.noiseMultiplier, effectiveNoiseMultiplier: plan.effectiveNoiseMultiplier, clip: plan.clip, delta: plan.delta, epsilonPerRound: plan.epsilonPerRound, epsilonPlanned: plan.epsilonPlanned, plannedRounds: plan.plannedRounds, budget: plan.budget } },
        `differential privacy (${plan.mode} noise): z = ${plan.noiseMultiplier.toFixed(3)}, clip ${plan.clip}; ε = ${plan.epsilonPerRound.toFixed(3)} per upload, ` +
          `${plan.epsilonPlanned.toFixed(3)} after ${plan.plannedRounds} at δ = ${plan.delta}; budget ${plan.budget.toFixed(3)}`,
      );
    }
  }

  epsilonOf(clientId: string): number | undefined {
    return this.ledger?.epsilon(clientId);
  }

  /** The checkpoint's part of this scheduler: the privacy ledger. */
  exportExtra(): unknown {
    return this.ledger ? { privacy: this.ledger.toJSON() } : undefined;
  }

  importExtra(extra: unknown): void {
    const privacy = (extra as { privacy?: unknown } | undefined)?.privacy;
    if (!this.ledger || privacy === undefined) return;
    try {
      this.ledger.load(privacy);
    } catch (e) {
      // Never start from zero silently: a ledger that cannot be read would hand every client a fresh budget.
      throw new Error(`checkpoint: the privacy ledger cannot be read (${(e as Error).message}); refusing to restart with every client's ε reset`);
    }
  }

  private get strategy(): Strategy {
    return this.f.strategy as Strategy;
  }

  // ---------------- recovery ----------------

  /** Journal records past the checkpoint: the round open at the crash and the uploads it had accepted. */
  replay(r: JournalRecord): void {
    if (r.kind === 'open' && (r.round as number) === this.f.round + 1) {
      const o = r as unknown as { round: number; selected: string[]; deadline: number; startedAt: number; rows?: ArrayLike<number> };
      this.resumed = { round: o.round, selected: o.selected, deadline: o.deadline, startedAt: o.startedAt, updates: new Map(), rows: o.rows ? Uint32Array.from(o.rows) : undefined };
    } else if (r.kind === 'update' && this.resumed && r.round === this.resumed.round) {
      const u = r.update as Update;
      this.resumed.updates.set(u.clientId, u);
    }
    // Anything about rounds at or below the checkpoint's is already in it: skipped, never counted twice.
  }

  replayed(): void {
    if (!this.resumed) return;
    const { round, updates, selected } = this.resumed;
    this.f.log.info({ round, accepted: updates.size, selected: selected.length }, `journal: round ${round} was open at the crash; resuming it with ${updates.size} of ${selected.length} uploads already accepted`);
  }

  // ---------------- clients ----------------

  /** A client that reconnects into a round it was selected for (and hasn't answered) gets its task again. */
  resume(clientId: string): void {
    const open = this.open;
    if (open && open.pending.has(clientId)) {
      const msg = open.sent.get(clientId)!;
      open.downlinkBytes += this.f.send(clientId, msg);
      open.secure?.resend(clientId);
      this.closeAt(open, open.deadline); // back from a grace period to the round's own deadline
    }
    // A survivor of a secure round that is unmasking: it may have missed the request for its reveal.
    this.unmasking?.resend(clientId);
  }

  disconnected(clientId: string): void {
    const open = this.open;
    if (!open?.pending.has(clientId)) return;
    // Don't stall on it: once nobody connected is pending, the round closes after a short grace for a reconnect.
    if (this.connectedPending(open) === 0) {
      this.closeSoon(open);
      this.f.log.info({ round: open.round, pending: [...open.pending] }, `round ${open.round}: no selected client left connected; closing in ${Math.round((Math.min(open.deadline, Date.now() + RECONNECT_GRACE_MS) - Date.now()) / 1000)} s unless one comes back`);
    } else this.logWaiting(open);
  }

  /** Stateful checks then the strategy's; throws ProtocolError to refuse. Returns the accepted frame size. */
  submit(rec: ClientRecord, msg: ClientMsg, bytes: number): number {
    if (msg.type === 'hello') throw new ProtocolError('bad-message', 'hello is not an upload');
    const clientId = rec.participant.id;
    // Reveals come after the round closed to uploads, while it unmasks.
    if (msg.type === 'sa-reveal' && this.unmasking?.round === msg.round) {
      this.unmasking.handle(clientId, msg, bytes);
      return bytes;
    }
    const open = this.open;
    if (!open || msg.round !== open.round) throw this.notOpen(msg.round);
    const task = open.tasks.get(clientId);
    if (!task) throw new ProtocolError('not-selected', `client ${clientId} was not selected for round ${open.round}`);
    if (msg.type === 'decline') {
      this.declined(open, clientId, msg.reason);
      return bytes;
    }
    if (isSecAggMsg(msg) && msg.type !== 'sa-masked') {
      if (!open.secure) throw new ProtocolError('bad-message', `round ${open.round} does not use secure aggregation`);
      open.secure.handle(clientId, msg, bytes);
      return bytes;
    }
    if (open.updates.has(clientId)) throw new ProtocolError('duplicate', `round ${open.round} already has an upload from ${clientId}`);
    if (Date.now() > open.deadline) throw new ProtocolError('late', `round ${open.round}'s deadline has passed`);
    let update: Update;
    if (open.secure) {
      if (msg.type !== 'sa-masked') throw new ProtocolError('bad-message', `round ${open.round} uses secure aggregation: upload with 'sa-masked', not '${msg.type}'`);
      this.acceptMasked(open, clientId, msg);
      // Only the fact and size of the upload are kept: its vector went into the masked sum (and nowhere to disk).
      update = { clientId, numSamples: 0, payload: null, bytes, stats: msg.stats };
    } else {
      if (msg.type === 'sa-masked') throw new ProtocolError('bad-message', `round ${open.round} does not use secure aggregation`);
      const payload = this.strategy.acceptUpdate(this.f.ctx(open.round), rec.participant, msg, task);
      update = { clientId, numSamples: rec.participant.numSamples, classCounts: rec.participant.classCounts, payload, bytes, stats: msg.stats };
      // On disk before the ack goes out: a crash from here on cannot lose it.
      this.f.o.journal.append('update', { round: open.round, update });
      // Local noise: the upload was released to the server the moment it arrived.
      this.ledger?.charge([clientId]);
    }
    open.updates.set(clientId, update);
    open.pending.delete(clientId);
    this.f.uploaded(rec, open.round, bytes);
    if (open.pending.size === 0) open.done();
    else {
      this.logWaiting(open);
      if (this.connectedPending(open) === 0) this.closeSoon(open);
    }
    return bytes;
  }

  /**
   * A selected client will not answer (its DP budget, or a round without the noise it requires): the round stops
   * waiting for it. Out of budget, it is not selected again (the ledger keeps that); a client that requires DP from a
   * server without it counts a miss, so it turns idle and is left alone.
   */
  private declined(open: OpenRound, clientId: string, reason: 'privacy-budget' | 'no-privacy'): void {
    if (open.updates.has(clientId)) throw new ProtocolError('duplicate', `round ${open.round} already has an upload from ${clientId}`);
    if (!open.pending.delete(clientId)) return; // said twice: nothing more to do
    open.leftOut.add(clientId);
    if (reason === 'privacy-budget') this.ledger?.markExhausted(clientId);
    this.f.log.info({ round: open.round, clientId, reason }, `round ${open.round}: ${clientId} declined (${reason === 'privacy-budget' ? 'its privacy budget is spent' : 'it requires DP noise'})`);
    if (open.pending.size === 0) open.done();
    else if (this.connectedPending(open) === 0) this.closeSoon(open);
  }

  /** A masked vector: the proxy set it was computed on, then the secure round's own checks. */
  private acceptMasked(open: OpenRound, clientId: string, msg: SecAggMaskedMsg): void {
    const hash = (this.strategy as { proxyHash?: string }).proxyHash;
    if (hash !== undefined && msg.proxyHash !== hash) throw new ProtocolError('wrong-proxy', `values were computed on proxy set ${msg.proxyHash}; this server's is ${hash}`);
    open.secure!.masked(clientId, msg);
  }

  /**
   * An upload for a round that is not open: one that was opened (≤ the last opened, also after the end) is closed,
   * `stale-round`; one never opened is `unknown-round`. The same answer whether or not the next round is open yet.
   */
  private notOpen(round: number): ProtocolError {
    const last = Math.max(this.lastOpened, this.f.round);
    const now = this.open ? `the open round is ${this.open.round}` : this.f.ended ? 'the federation is over' : 'no round is open now';
    if (round >= 1 && round <= last) return new ProtocolError('stale-round', `round ${round} is closed; ${now}`);
    return new ProtocolError('unknown-round', `round ${round} has not been opened (last opened: ${last || 'none'}); ${now}`);
  }

  /** For /status: the round in progress, or null between rounds. */
  status(): SchedulerStatus {
    const open = this.open;
    const openRound: OpenRoundStatus | null =
      open && { round: open.round, selected: open.tasks.size, received: open.updates.size, deadline: new Date(open.deadline).toISOString() };
    return { openRound, privacy: this.ledger?.status(), secureAggregation: this.f.config.secureAggregation.enabled || undefined };
  }

  /** On shutdown: the open round closes now with what it has. */
  halt(): void {
    this.open?.done();
  }

  // ---------------- the round loop ----------------

  async run(): Promise<void> {
    const { f } = this;
    const cfg = f.config;
    const resumed = this.resumed;
    this.resumed = null;
    if (resumed && !f.stopped) await this.runRound(resumed.round, [], resumed);
    let waitingWith = -1;
    while (!f.stopped && (cfg.rounds === 0 || f.round < cfg.rounds)) {
      f.pruneRegistry();
      if (this.checkpointOwed) {
        try {
          await f.checkpoint(() => this.exportExtra());
          this.checkpointOwed = false;
          f.log.info({ round: f.round }, `round ${f.round}: checkpoint written on retry`);
        } catch (e) {
          f.log.error({ round: f.round, err: (e as Error).message }, `round ${f.round}: checkpoint still failing, retrying in 5 s`);
          await f.waitForChange(5000);
          continue;
        }
      }
      // A client one more upload would take past the privacy budget is not selected again.
      const ready = f.registry.eligibleConnected((p) => this.strategy.eligible(p) && !this.ledger?.exhausted(p.id));
      if (ready.length < cfg.minClients) {
        if (ready.length !== waitingWith) f.registry.logWaiting(ready.length, cfg.minClients, `round ${f.round + 1}`, this.strategy.name);
        waitingWith = ready.length;
        await f.waitForChange(1000);
        continue;
      }
      waitingWith = -1;
      await this.runRound(f.round + 1, ready);
    }
    if (!f.stopped) f.finish();
  }

  /** Flower's sampling: k = min(ready, max(minClients, ⌈fraction·ready⌉)) clients, a seeded shuffle per round. */
  private select(ready: Participant[], rng: Rng): Participant[] {
    const cfg = this.f.config;
    const k = Math.min(ready.length, Math.max(cfg.minClients, Math.ceil(cfg.fraction * ready.length)), cfg.secureAggregation.enabled ? MAX_PARTICIPANTS : Infinity);
    return rng.shuffle([...ready].sort((a, b) => (a.id < b.id ? -1 : 1))).slice(0, k);
  }

  private async runRound(round: number, ready: Participant[], resumed?: ResumedRound): Promise<void> {
    const { f } = this;
    const cfg = f.config;
    const name = this.strategy.name;
    const startedAt = resumed?.startedAt ?? Date.now();
    const ctx = f.ctx(round);
    const selected = resumed
      ? resumed.selected.map((id) => f.registry.get(id)?.participant).filter((p): p is Participant => p !== undefined)
      : this.select(ready, ctx.rng);
    // Deterministic given the strategy's state and the round (a resumed round's rows are pinned to the journaled ones below).
    const tasks = await this.strategy.configureRound(ctx, selected);
    if (f.stopped) return;
    // The rows may depend on the student's predictions (--uncertain-rows), which another backend or build could round
    // differently: a resumed round asks for the rows it asked for before, so the uploads it accepted still fit them.
    if (resumed?.rows) {
      const rows = resumed.rows;
      let moved = false;
      for (const t of tasks.values()) {
        if (!t.indices || sameRows(t.indices, rows)) continue;
        t.indices = rows;
        moved = true;
      }
      if (moved) f.log.warn({ round }, `round ${round}: the rows recomputed on resuming differ from the journaled ones; the journaled rows are used`);
    }
    if (resumed && cfg.secureAggregation.enabled) {
      // Its masked inputs and every client's keys were never stored: the round cannot be resumed, only done again.
      f.log.warn({ round }, `round ${round} was open at the crash under secure aggregation; nothing of it was stored, so it is abandoned and the next round opens`);
      f.round = round;
      f.history.push({ round, status: 'failed', strategy: name, selected: resumed.selected.length, participants: 0, dropped: resumed.selected, uplinkBytes: 0, downlinkBytes: 0, studentVersion: this.strategy.version, aggregateSeconds: 0, meanClientTrainSeconds: 0, seconds: (Date.now() - startedAt) / 1000, startedAt });
      await f.checkpoint(() => this.exportExtra()).catch((e) => f.log.error({ round, err: (e as Error).message }, `round ${round}: checkpoint failed`));
      return;
    }
    const secure = cfg.secureAggregation.enabled ? this.secureRound(round, tasks) : null;
    // The uploads a crash interrupted were charged in memory only: the checkpoint the ledger came back from is older.
    if (resumed && this.ledger) this.ledger.charge(resumed.updates.keys());
    if (this.ledger) {
      // The noise is split over the fewest contributions a round can be learned from: t, or the quorum.
      const shares = secure ? secure.params.threshold : this.ledger.plan.mode === 'central' ? Math.max(1, Math.ceil(cfg.quorum * tasks.size)) : 1;
      for (const t of tasks.values()) t.privacy = privacyTask(this.ledger.plan, shares);
    }
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
      secure,
      leftOut: new Set(),
    };
    this.open = open;
    if (secure) {
      // Clients left out of the key exchange can no longer upload: stop waiting for them.
      secure.onLeftOut = (ids) => {
        for (const id of ids) if (open.pending.delete(id)) open.leftOut.add(id);
        if (open.pending.size === 0) open.done();
      };
      secure.onFailed = () => open.done();
    }
    this.lastOpened = Math.max(this.lastOpened, round);
    if (!resumed) {
      const rows = [...tasks.values()].find((t) => t.indices)?.indices;
      f.o.journal.append('open', { round, selected: [...tasks.keys()], deadline: open.deadline, startedAt, ...(rows ? { rows } : {}) });
    }
    for (const [id, task] of tasks) {
      const msg: RoundMsg = { type: 'round', round, strategy: name, deadline: open.deadline, ...task };
      open.sent.set(id, msg);
      if (f.registry.isConnected(id)) open.downlinkBytes += f.send(id, msg);
    }
    f.log.info(
      { round, selected: [...tasks.keys()], ready: ready.length, strategy: name, deadlineInS: Math.round((open.deadline - Date.now()) / 1000), resumed: resumed !== undefined },
      resumed
        ? `round ${round} resumed: waiting for ${[...open.pending].sort().join(', ') || 'nobody'} (deadline in ${Math.round((open.deadline - Date.now()) / 1000)} s)`
        : `round ${round}: ${selected.length} selected of ${ready.length} (${name}): ${[...tasks.keys()].sort().join(', ')}; deadline in ${cfg.roundTimeoutS} s`,
    );
    f.tell('round-start', round, [...tasks.keys()], open.deadline);
    this.closeAt(open, open.deadline);
    if (open.pending.size === 0) open.done();
    else if (this.connectedPending(open) === 0 && !resumed) this.closeSoon(open); // everyone selected dropped while we configured
    await finished;
    if (open.timer) clearTimeout(open.timer);
    // Close the round before the slow part, so late uploads are refused as stale rather than raced.
    this.open = null;
    if (f.stopped && open.updates.size < tasks.size) return;
    f.phase(round, 'closed');

    const updates = [...open.updates.values()].sort((a, b) => (a.clientId < b.clientId ? -1 : 1));
    const needed = Math.max(1, Math.ceil(cfg.quorum * tasks.size));
    const dropped = [...open.pending, ...open.leftOut];
    // Selected and silent until the round's end: a miss (enough in a row and the client is idle, not selected again).
    for (const id of dropped) f.registry.missed(id, 'rounds');
    let report: AggregateReport = { seconds: 0 };
    let accuracy: number | undefined;
    let perClass: number[] | undefined;
    let status: RoundSummary['status'] = 'completed';
    let secureSum: { sum: Float64Array; count: number } | null = null;
    let secureReport: RoundSummary['secureAggregation'];
    if (open.secure) {
      const s = open.secure;
      this.unmasking = s;
      try {
        secureSum = updates.length >= needed ? await s.finish() : (s.dispose(), null);
      } finally {
        this.unmasking = null;
      }
      secureReport = { contributors: secureSum?.count ?? 0, seconds: s.seconds(), keyBytes: s.keyBytes };
      if (secureSum) this.ledger?.charge(s.contributors());
    }
    if (open.secure && !secureSum && updates.length >= needed) {
      status = 'failed';
      f.log.warn({ round, why: open.secure.failure }, `round ${round}: no sum to learn from (${open.secure.failure}); student unchanged`);
    } else if (updates.length >= needed) {
      try {
        f.phase(round, 'aggregate');
        const answered = new Map(updates.map((u) => [u.clientId, tasks.get(u.clientId)!]));
        if (secureSum) {
          if (!this.strategy.aggregateSecure) throw new Error(`strategy '${name}' cannot learn from a secure sum`);
          report = await this.strategy.aggregateSecure(ctx, { ...secureSum, params: open.secure!.params }, answered);
        } else report = await this.strategy.aggregate(ctx, updates, answered);
        f.phase(round, 'evaluate');
        ({ accuracy, perClassAccuracy: perClass } = await this.strategy.evaluate(ctx));
        f.phase(round, 'done');
      } catch (e) {
        // A failure here is ours, not a peer's: record it and go on with the next round rather than die.
        status = 'failed';
        f.log.error({ round, err: e }, `round ${round}: aggregation failed`);
      }
    } else {
      status = 'no-quorum';
      f.log.warn({ round, uploads: updates.length, selected: tasks.size, quorum: needed }, `round ${round}: only ${updates.length} of ${tasks.size} uploads (quorum ${needed}); student unchanged`);
    }
    const evals = updates.map((u) => u.stats.evalAccuracy).filter((a): a is number => a !== undefined);
    const summary: RoundSummary = {
      round,
      status,
      strategy: name,
      selected: tasks.size,
      participants: updates.length,
      dropped,
      uplinkBytes: updates.reduce((n, u) => n + u.bytes, 0),
      downlinkBytes: open.downlinkBytes,
      studentVersion: this.strategy.version,
      studentAccuracy: accuracy,
      studentPerClassAccuracy: perClass,
      distillLoss: report.distillLoss,
      aggregateSeconds: report.seconds,
      meanClientTrainSeconds: mean(updates.map((u) => u.stats.trainSeconds).filter((s): s is number => s !== undefined)),
      meanClientEvalAccuracy: evals.length ? evals.reduce((a, b) => a + b, 0) / evals.length : undefined,
      seconds: (Date.now() - startedAt) / 1000,
      startedAt,
      privacy: this.ledger ? { epsilonRound: this.ledger.plan.epsilonPerRound, epsilon: this.ledger.maxEpsilon() } : undefined,
      secureAggregation: secureReport,
    };
    f.round = round;
    f.history.push(summary);
    try {
      await f.checkpoint(() => this.exportExtra());
    } catch (e) {
      this.checkpointOwed = true;
      f.log.error({ round, err: (e as Error).message }, `round ${round}: checkpoint failed (state kept in memory; retried before the next round opens)`);
    }
    if (status === 'completed') await f.releaseStudent(summary);
    f.log.info(
      { round, status, uploads: updates.length, selected: tasks.size, dropped, uplinkBytes: summary.uplinkBytes, downlinkBytes: summary.downlinkBytes, studentVersion: summary.studentVersion, studentAccuracy: accuracy, meanClientEvalAccuracy: summary.meanClientEvalAccuracy, seconds: summary.seconds },
      `round ${round}${cfg.rounds ? `/${cfg.rounds}` : ''} ${status}: ${updates.length}/${tasks.size} uploads, up ${summary.uplinkBytes} B, down ${summary.downlinkBytes} B` +
        (accuracy !== undefined ? `, student acc ${(accuracy * 100).toFixed(2)}%` : '') +
        `, ${summary.seconds.toFixed(1)} s`,
    );
    f.broadcast({ type: 'round-result', round, participants: updates.length, studentAccuracy: accuracy });
    f.tell('round', summary, report);
  }

  /**
   * The round's secure aggregation session, stamped on every task: values are probabilities (with DP, the noisy ones)
   * or, for the `confidence` aggregator, w·p and w per row; the fixed-point scale leaves room for every contributor's
   * largest value (with DP noise, 8 standard deviations: clipping there changes nothing measurable, and is
   * post-processing) without the signed sum wrapping around.
   */
  private secureRound(round: number, tasks: Map<string, RoundTask>): SecureRound {
    const cfg = this.f.config;
    const ids = [...tasks.keys()];
    const task = tasks.values().next().value!;
    const rows = task.indices?.length ?? 0;
    const c = this.f.o.proxy.numClasses;
    const threshold = Math.max(2, Math.floor(cfg.secureAggregation.threshold * ids.length) + 1);
    const plan = this.ledger?.plan;
    const values = plan ? 'probs' : cfg.aggregator === 'confidence' ? 'confidence' : 'probs';
    const noiseStd = plan ? (plan.noiseMultiplier * plan.clip * Math.sqrt(rows)) / Math.sqrt(threshold) : 0;
    const bound = plan ? plan.clip + 8 * noiseStd : 1;
    const temperature = plan ? plan.temperature : ((this.strategy as { temperatureAt?: (r: number) => number }).temperatureAt?.(round) ?? 1);
    const params = {
      session: `${crypto.randomUUID()}:${round}`,
      threshold: Math.min(threshold, ids.length),
      scale: fixedPointScale({ contributors: ids.length, bound }),
      bound,
      length: rows * (values === 'confidence' ? c + 1 : c),
    };
    const secure = new SecureRound({ send: (id, m) => this.f.send(id, m), log: this.f.log }, round, params, ids, cfg.secureAggregation.phaseTimeoutS * 1000);
    for (const t of tasks.values()) t.secagg = { ...params, values, temperature };
    return secure;
  }

  // ---------------- waiting and closing ----------------

  /**
   * "round 4: waiting for bob, carol (deadline in 240 s)": who the open round still waits for. Called per upload, so it
   * names at most WAITING_NAMES ids: listing (and sorting) every pending id per upload is quadratic in the clients.
   */
  private logWaiting(open: OpenRound): void {
    const n = open.pending.size;
    const named: string[] = [];
    for (const id of open.pending) {
      if (named.length === WAITING_NAMES) break;
      named.push(id);
    }
    const who = named.sort().join(', ') + (n > named.length ? ` and ${n - named.length} more` : '');
    const s = Math.max(0, Math.round((open.deadline - Date.now()) / 1000));
    this.f.log.info({ round: open.round, pending: named, pendingCount: n, received: open.updates.size, selected: open.tasks.size, deadlineInS: s }, `round ${open.round}: ${open.updates.size}/${open.tasks.size} uploads; waiting for ${who} (deadline in ${s} s)`);
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
    for (const id of open.pending) if (this.f.registry.isConnected(id)) n++;
    return n;
  }
}

/** The mean of some numbers; 0 for none (e.g. every client kept its training time to itself). */
function mean(xs: number[]): number {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0;
}

function sameRows(a: Uint32Array, b: Uint32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
