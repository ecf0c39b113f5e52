import { subset, type Dataset } from '../../shared/data/dataset.ts';
import { DISTILL_AUGMENT } from '../../shared/data/augment.ts';
import { aggregate, softmaxRows } from '../../shared/distill/aggregators.ts';
import { predictLogits } from '../../shared/models/training.ts';
import { TemperatureSchedule } from '../../shared/distill/temperature.ts';
import { Reputation, type ReputationEntry } from '../../shared/distill/reputation.ts';
import type { ClientMsg } from '../../shared/protocol/messages.ts';
import { encodeMatrix } from '../../shared/tensor/logit-codec.ts';
import type { ServerConfig } from '../config.ts';
import { acceptLogits, logitsTask } from './logits-task.ts';
import { HasStudent, Student, type StudentCheckpoint } from './student.ts';
import { ParallelDistiller, resolveDistillThreads } from './parallel-distill.ts';
import { selectRows } from '../../shared/distill/row-selection.ts';
import { projectRowsToSimplex } from '../../shared/privacy/mechanisms.ts';
import { combineNoisyProbs, retemper } from '../../shared/privacy/noisy-teacher.ts';
import type { AggregateReport, Participant, RoundContext, RoundTask, SecureSum, Strategy, Update } from './strategy.ts';

interface EnsembleState extends StudentCheckpoint {
  consensus: { indices: Uint32Array; probs: Float32Array } | null;
  /** Latest teacher probabilities per proxy row, and the round that labelled each (0 = never). */
  bank: { probs: Float32Array; labelledAt: Uint32Array };
  /** Clients' reputation scores; absent in checkpoints written before reputation existed (everyone starts at 1). */
  reputation?: ReputationEntry[];
}

/**
 * Federated ensemble distillation (FedMD / FedDF style): clients send logits on a proxy subset, the server combines
 * them with the configured aggregator into teacher probabilities and distills its student on those proxy rows.
 * Clients of the student's architecture start each round from the student's weights; the others digest the previous
 * round's consensus soft labels first.
 *
 * The student distills on a bank of the latest teacher labels of every proxy row seen so far, not only this round's
 * subset: uplink stays `subset × classes` per client while the student learns from the whole proxy set (FedDF distills
 * on all of its unlabelled data), and rows from earlier rounds keep it from drifting to this round's clients alone.
 *
 * No client is believed blindly: each round every client's divergence from the median teacher updates its reputation
 * (shared/distill/reputation.ts), which multiplies its weight in the aggregator, and the aggregator caps any client's
 * share of a row's teacher and clamps claimed sample counts (shared/distill/robust.ts).
 */
export class EnsembleStrategy extends HasStudent implements Strategy {
  readonly name: string = 'ensemble';
  protected readonly student: Student;
  private consensus: EnsembleState['consensus'] = null;
  private bank: EnsembleState['bank'];
  /** --temperature, --temperature-decay: round r distills at step t = r − 1. */
  protected readonly temperature: TemperatureSchedule;
  /** Clients' reputation (--reputation-decay; 0 = off), kept in checkpoints. */
  protected readonly reputation: Reputation;
  /** --distill-threads: the student distills data-parallel on worker threads (parallel-distill.ts); made on first use. */
  private distiller?: ParallelDistiller;

  constructor(
    protected readonly cfg: ServerConfig,
    protected readonly proxy: Dataset,
    proxyHash: string,
  ) {
    super();
    this.student = new Student(cfg, proxy, proxyHash);
    this.bank = { probs: new Float32Array(proxy.count * proxy.numClasses), labelledAt: new Uint32Array(proxy.count) };
    this.temperature = new TemperatureSchedule(cfg.temperature, cfg.temperatureDecay);
    this.reputation = new Reputation(cfg.reputationDecay);
  }

  /** Every client's reputation (score in [0, 1] multiplying its teacher weight), lowest first: for dashboards. */
  reputationScores(): ReputationEntry[] {
    return this.reputation.list();
  }

  /** The distillation temperature of round r: T_max·exp(−k·(r − 1)), floored at 1 (shared/distill/temperature.ts). */
  temperatureAt(round: number): number {
    return this.temperature.at(round - 1);
  }

  /** The r-th window of the proxy set's fixed shuffle: round r's rows when --uncertain-rows does not pick them (roundRows). */
  proxyIndicesFor(round: number): Uint32Array {
    return this.student.window(round);
  }

  /**
   * The rows round r asks for: once the student has learned anything, --uncertain-rows of them where its margin is
   * smallest and the rest those whose label is oldest (shared/distill/row-selection.ts); before that, or with
   * --uncertain-rows 0, the r-th window of the fixed shuffle.
   */
  async roundRows(round: number): Promise<Uint32Array> {
    const share = this.cfg.uncertainRows;
    const n = Math.min(this.cfg.proxySubset, this.proxy.count);
    if (!(share > 0) || this.version === 0 || n >= this.proxy.count) return this.proxyIndicesFor(round);
    const c = this.proxy.numClasses;
    const probs = softmaxRows(await predictLogits(this.model, this.proxy), this.proxy.count, c, 1);
    return selectRows({ probs, labelledAt: this.bank.labelledAt, numClasses: c, n, uncertainShare: share, order: this.student.shuffle });
  }

  async configureRound(ctx: RoundContext, participants: Participant[]): Promise<Map<string, RoundTask>> {
    this.distillerNow().warm((m) => ctx.log.warn(m)); // its threads start while the clients train
    const indices = await this.roundRows(ctx.round);
    const student = this.student.downlink();
    const c = this.proxy.numClasses;
    const consensus = this.consensus && {
      indices: this.consensus.indices,
      probs: encodeMatrix(this.consensus.probs, this.consensus.indices.length, c, this.cfg.consensusCodec),
      temperature: this.temperatureAt(ctx.round - 1),
      epochs: this.cfg.consensusEpochs,
    };
    const tasks = new Map<string, RoundTask>();
    for (const p of participants) {
      const same = p.model === this.modelKind;
      tasks.set(p.id, {
        ...logitsTask(this.cfg, indices),
        ntdBeta: same ? this.cfg.ntdBeta : undefined,
        model: same ? student(p) : undefined,
        consensus: !same && consensus ? consensus : undefined,
      });
    }
    return tasks;
  }

  acceptUpdate(_ctx: RoundContext, _p: Participant, msg: ClientMsg, task: RoundTask): Float32Array {
    return acceptLogits(this.name, msg, task, this.student.proxyHash, this.proxy.numClasses);
  }

  async aggregate(ctx: RoundContext, updates: Update[], tasks: Map<string, RoundTask>): Promise<AggregateReport> {
    const t0 = performance.now();
    const task = tasks.values().next().value!;
    const indices = task.indices!;
    const n = indices.length;
    const c = this.proxy.numClasses;
    const T = this.temperatureAt(ctx.round);
    if (task.privacy) {
      // Noisy probabilities (local DP): whatever the server does with them is post-processing. Their noise would drown
      // any agreement score, so reputation is not consulted; the teacher is their coordinate-wise mean (or the robust
      // median / trimmed mean when configured), projected back onto the simplex.
      const noisy = updates.map((u) => u.payload as Float32Array);
      // Central noise is split over the uploads: only their plain sum carries all of it, so the mean it is. Local
      // noise makes every upload private on its own, and any robust rule over them is post-processing.
      const rule = task.privacy.mode === 'local' || task.privacy.mode === undefined ? this.cfg.aggregator : 'mean-probs';
      const probs = retemper(combineNoisyProbs(rule, noisy, n, c, this.cfg.trimFraction), n, c, task.privacy.temperature, T);
      return { ...(await this.learn(ctx, indices, probs, T)), seconds: (performance.now() - t0) / 1000 };
    }
    const logits = updates.map((u) => u.payload as Float32Array);
    // This round's weight multipliers: agreement with the median teacher, with memory (1 for all when off).
    const trust = this.reputation.enabled
      ? this.reputation.observeRound(ctx.round, updates.map((u) => u.clientId), logits.map((z) => softmaxRows(z, n, c, T)), n, c)
      : new Float64Array(updates.length).fill(1);
    const distrusted = updates.map((u, k) => ({ clientId: u.clientId, trust: trust[k] })).filter((x) => x.trust < 0.5);
    if (distrusted.length) ctx.log.warn({ round: ctx.round, clients: distrusted }, `round ${ctx.round}: ${distrusted.length} client(s) down-weighted for disagreeing with the median teacher`);
    const teachers = updates.map((u, k) => ({ logits: logits[k], weight: u.numSamples, classCounts: u.classCounts, trust: trust[k] }));
    const probs = aggregate(this.cfg.aggregator, teachers, n, c, {
      temperature: T,
      trimFraction: this.cfg.trimFraction,
      maxShare: this.cfg.maxShare,
      claimFactor: this.cfg.claimFactor,
    });
    const report = await this.learn(ctx, indices, probs, T);
    return {
      ...report,
      seconds: (performance.now() - t0) / 1000,
      trust: updates.map((u, k) => ({ clientId: u.clientId, trust: trust[k], score: this.reputation.score(u.clientId) })),
    };
  }

  /**
   * Secure aggregation: the server holds only Σ over the contributors. `probs`: Σ p_k, so the teacher is the mean
   * (projected onto the simplex when the p_k carry DP noise); `confidence`: per row Σ w_k·p_k and Σ w_k, so the
   * teacher is the confidence-weighted mean, with no cap and no reputation (neither can be computed from a sum).
   */
  async aggregateSecure(ctx: RoundContext, s: SecureSum, tasks: Map<string, RoundTask>): Promise<AggregateReport> {
    const t0 = performance.now();
    const task = tasks.values().next().value!;
    const sa = task.secagg!;
    const indices = task.indices!;
    const n = indices.length;
    const c = this.proxy.numClasses;
    const T = this.temperatureAt(ctx.round);
    // With DP each contributor's share of the noise is z·C·√rows/√shares per entry: the sum's is that times √count.
    const p = task.privacy;
    checkSecureSum(s, n, c, sa.values, p ? { noiseStd: ((p.noiseMultiplier * p.clip * Math.sqrt(n)) / Math.sqrt(p.noiseShares)) * Math.sqrt(s.count), clip: p.clip } : undefined);
    let probs: Float32Array;
    if (sa.values === 'confidence') {
      probs = new Float32Array(n * c);
      for (let i = 0; i < n; i++) {
        const base = i * (c + 1);
        const w = s.sum[base + c];
        let total = 0;
        for (let j = 0; j < c; j++) total += Math.max(0, s.sum[base + j]);
        // Σw p / Σw; the row is renormalised because fixed-point rounding leaves it a hair off 1.
        for (let j = 0; j < c; j++) probs[i * c + j] = w > 0 && total > 0 ? Math.max(0, s.sum[base + j]) / total : 1 / c;
      }
    } else {
      const mean = Float64Array.from(s.sum, (v) => v / s.count);
      probs = projectRowsToSimplex(mean, n, c);
    }
    probs = retemper(probs, n, c, sa.temperature, T);
    return { ...(await this.learn(ctx, indices, probs, T)), seconds: (performance.now() - t0) / 1000 };
  }

  /** The round's teacher on its rows goes into the bank; the student distills on the bank (FedDF on all rows seen). */
  private async learn(ctx: RoundContext, indices: Uint32Array, probs: Float32Array, T: number): Promise<AggregateReport> {
    const c = this.proxy.numClasses;
    indices.forEach((row, i) => {
      this.bank.probs.set(probs.subarray(i * c, (i + 1) * c), row * c);
      this.bank.labelledAt[row] = ctx.round;
    });
    const rows = Uint32Array.from(Array.from(this.bank.labelledAt.keys()).filter((row) => this.bank.labelledAt[row] > 0));
    const decay = this.cfg.bankDecay;
    const rowWeights = decay < 1 ? Float32Array.from(rows, (row) => decay ** (ctx.round - this.bank.labelledAt[row])) : undefined;
    const targets = new Float32Array(rows.length * c);
    rows.forEach((row, i) => {
      const p = this.bank.probs.subarray(row * c, (row + 1) * c);
      // A row labelled in an earlier round is at that round's temperature: moved to this round's.
      const moved = this.temperature.retemperRow(p, this.bank.labelledAt[row] - 1, ctx.round - 1, targets.subarray(i * c, (i + 1) * c));
      if (!moved) targets.set(p, i * c);
    });
    const rowsData = subset(this.proxy, rows);
    // Continual rounds: the student as it was before this round, on the same rows, anchors what it already knew.
    const lambda = this.cfg.prevStudentLambda;
    const previous = lambda > 0 && this.version > 0 ? { probs: softmaxRows(await predictLogits(this.model, rowsData), rows.length, c, T), lambda } : undefined;
    const res = await this.distillerNow().train(this.model, this.student.optimizer, rowsData, targets, {
      epochs: distillEpochsFor(this.cfg.distillEpochs, this.cfg.distillFill, this.proxy.count, rows.length),
      batchSize: this.cfg.distillBatchSize,
      temperature: T,
      random: () => ctx.rng.next(),
      numClasses: c,
      rowWeights,
      previous,
      augment: this.cfg.distillAugment ? DISTILL_AUGMENT : undefined,
      warn: (m) => ctx.log.warn(m),
    });
    this.student.version++;
    this.consensus = { indices, probs };
    return { seconds: 0, distillLoss: res.loss, teacher: { indices, probs } };
  }

  protected distillerNow(): ParallelDistiller {
    return (this.distiller ??= new ParallelDistiller(resolveDistillThreads(this.cfg.distillThreads, this.cfg.distillBatchSize), { kind: this.modelKind, inputShape: this.proxy.shape, numClasses: this.proxy.numClasses }));
  }

  /** Stops the distillation worker threads (the aggregator's close). */
  async close(): Promise<void> {
    await this.distiller?.close();
  }

  async exportState(): Promise<EnsembleState> {
    return { ...(await this.student.exportState()), consensus: this.consensus, bank: this.bank, reputation: this.reputation.exportState() };
  }

  async importState(raw: unknown): Promise<void> {
    const s = raw as EnsembleState;
    await this.student.importState(s);
    this.consensus = s.consensus;
    this.bank = s.bank;
    this.reputation.importState(s.reputation);
  }
}

/**
 * Epochs the student takes over a bank of `bankRows` labelled rows: --distill-epochs, or, while the bank holds fewer
 * rows than the proxy set, enough for `fill` × the samples a full bank gets (--distill-fill), so the student learns as
 * much from round 1's rows as it will from a full bank later.
 */
export function distillEpochsFor(epochs: number, fill: number, proxyRows: number, bankRows: number): number {
  if (bankRows <= 0) return epochs;
  return Math.max(epochs, Math.ceil((fill * epochs * proxyRows) / bankRows));
}

/**
 * A secure sum must look like one: without noise every row of Σ p_k sums to the contributor count and every entry
 * lies in [0, count] (for `confidence`, Σ_j Σ_k w_k·p_k(j) = Σ_k w_k per row); with DP noise of standard deviation σ
 * per entry of the sum, the same within 8σ (8√c·σ for a row's total; clipped rows sum to at most 1). A client that
 * masked garbage or revealed a wrong share cannot be named (the server never sees single vectors), but the sum it
 * spoiled is not learned from.
 */
export function checkSecureSum(s: SecureSum, n: number, c: number, values: 'probs' | 'confidence', dp?: { noiseStd: number; clip: number }): void {
  const width = values === 'confidence' ? c + 1 : c;
  const tol = 1e-3 * s.count + 1e-6;
  const entrySlack = tol + (dp ? 8 * dp.noiseStd : 0);
  const rowSlack = tol + (dp ? 8 * Math.sqrt(c) * dp.noiseStd : 0);
  const top = s.count * (dp ? Math.min(1, dp.clip) : 1);
  const why = 'a contributor masked values out of range or revealed a wrong share';
  for (let i = 0; i < n; i++) {
    let total = 0;
    for (let j = 0; j < c; j++) {
      const v = s.sum[i * width + j];
      if (!(v >= -entrySlack && v <= top + entrySlack)) throw new Error(`secure sum: row ${i} holds ${v} outside [0, ${top}]${dp ? ' beyond the noise' : ''}: ${why}`);
      total += v;
    }
    if (dp) {
      if (!(total >= -rowSlack && total <= s.count + rowSlack)) throw new Error(`secure sum: row ${i} sums to ${total}, beyond [0, ${s.count}] and the noise: ${why}`);
      continue;
    }
    const expected = values === 'confidence' ? s.sum[i * width + c] : s.count;
    if (Math.abs(total - expected) > rowSlack) throw new Error(`secure sum: row ${i} sums to ${total}, not ${expected}: ${why}`);
  }
}
