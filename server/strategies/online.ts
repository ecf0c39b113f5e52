import type { Dataset } from '../../shared/data/dataset.ts';
import { softmaxRows } from '../../shared/distill/aggregators.ts';
import { staleTeacherRow, type Contribution } from '../../shared/distill/staleness.ts';
import { TemperatureSchedule } from '../../shared/distill/temperature.ts';
import { Reputation, medianConsensus, type ReputationEntry } from '../../shared/distill/reputation.ts';
import { totalVariation } from '../../shared/distill/robust.ts';
import { distillStep } from '../../shared/models/training.ts';
import type { ClientMsg } from '../../shared/protocol/messages.ts';
import type { ServerConfig } from '../config.ts';
import { acceptLogits, logitsTask } from './logits-task.ts';
import { HasStudent, Student, type StudentCheckpoint } from './student.ts';
import type { OnlineStrategy as OnlineStrategyApi, Participant, RoundContext, RoundTask, Update } from './strategy.ts';

/**
 * One client's latest say on each proxy row: probabilities, and the student version it trained from (−1: none); the
 * probabilities are at that version's temperature on the schedule.
 */
interface ClientTeacher {
  probs: Float32Array;
  version: Int32Array;
}

interface OnlineState extends StudentCheckpoint {
  teachers: { clientId: string; probs: Float32Array; version: Int32Array }[];
  /** Absent in checkpoints written before reputation existed. */
  reputation?: ReputationEntry[];
}

/**
 * Online (asynchronous, codistillation-style) distillation. There is no round barrier: each client gets its own
 * stream of tasks (its n-th task labels the n-th window of a fixed shuffle of the proxy set, so all clients walk the
 * same rows, fast ones ahead), and every upload is taken into a per-row teacher as soon as it is accepted. The teacher
 * of a row is the staleness-weighted mean of each client's latest contribution to it; the student trains on it in a
 * background loop, step by step, and is published as a new version every K steps or S seconds. A client trained from
 * a student more than `maxStaleness` versions old is told to resync (the coordinator refuses its upload).
 *
 * The temperature follows the schedule of every strategy (shared/distill/temperature.ts) with t = the student version:
 * a task for version v carries T(v), its logits become probabilities at T(v), and training towards version V+1 uses
 * T(V), re-tempering older contributions to it.
 *
 * Robustness as in the round strategies: every upload's divergence from the median of the other clients' latest
 * contributions on its rows updates the client's reputation, which multiplies its weight, and no contribution weighs
 * more than maxShare/K of a row's teacher.
 */
export class OnlineStrategy extends HasStudent implements OnlineStrategyApi {
  readonly name = 'online';
  readonly mode = 'online' as const;
  protected readonly student: Student;
  private teachers = new Map<string, ClientTeacher>();
  /** Proxy rows with at least one contribution, and a membership flag. */
  private labelled: number[] = [];
  private isLabelled: Uint8Array;
  private readonly temperature: TemperatureSchedule;
  private readonly reputation: Reputation;

  constructor(
    private readonly cfg: ServerConfig,
    private readonly proxy: Dataset,
    proxyHash: string,
  ) {
    super();
    this.student = new Student(cfg, proxy, proxyHash);
    this.isLabelled = new Uint8Array(proxy.count);
    this.temperature = new TemperatureSchedule(cfg.temperature, cfg.temperatureDecay);
    this.reputation = new Reputation(cfg.reputationDecay);
  }

  /** Every client's reputation (score in [0, 1] multiplying its teacher weight), lowest first: for dashboards. */
  reputationScores(): ReputationEntry[] {
    return this.reputation.list();
  }

  /**
   * The upload's mean total variation from the median of the other clients' latest contributions on the same rows
   * (rows fewer than two others labelled are skipped); null when no row qualifies.
   */
  private divergenceFromOthers(clientId: string, rows: Uint32Array, probs: Float32Array): number | null {
    const c = this.proxy.numClasses;
    const others = [...this.teachers].filter(([id]) => id !== clientId).map(([, t]) => t);
    let sum = 0;
    let count = 0;
    for (let i = 0; i < rows.length; i++) {
      const row = rows[i];
      const at = others.filter((t) => t.version[row] >= 0).map((t) => t.probs.subarray(row * c, (row + 1) * c));
      if (at.length < 2) continue;
      sum += totalVariation(probs, i * c, medianConsensus(at, 1, c), 0, c);
      count++;
    }
    return count ? sum / count : null;
  }

  /** The temperature training and tasks use now: the schedule at the current student version. */
  get currentTemperature(): number {
    return this.temperature.at(this.version);
  }

  async configureTask(_ctx: RoundContext, p: Participant, n: number, heldVersion: number): Promise<RoundTask> {
    const indices = this.student.window(n);
    const same = p.model === this.modelKind;
    const T = this.currentTemperature;
    // Same architecture: the latest student, unless the client already has it. Other architectures: the student's
    // soft labels on the task's rows, learned mutual-style (they can't load its weights).
    const model = same && heldVersion !== this.version ? this.student.downlink()(p) : undefined;
    const mutual =
      !same && this.version > 0 && this.cfg.mutualBeta > 0
        ? { probs: await this.student.softLabels(indices, T, this.cfg.consensusCodec), temperature: T, beta: this.cfg.mutualBeta }
        : undefined;
    return { ...logitsTask(this.cfg, indices), model, mutual, studentVersion: this.version };
  }

  acceptUpdate(_ctx: RoundContext, _p: Participant, msg: ClientMsg, task: RoundTask): Float32Array {
    return acceptLogits(this.name, msg, task, this.student.proxyHash, this.proxy.numClasses);
  }

  ingest(update: Update, task: Pick<RoundTask, 'indices' | 'studentVersion'>): void {
    const c = this.proxy.numClasses;
    const rows = task.indices!;
    // At the temperature of the version the client trained from (what replay after a restart recomputes too).
    const probs = softmaxRows(update.payload as Float32Array, rows.length, c, this.temperature.at(task.studentVersion ?? 0));
    if (this.reputation.enabled) {
      const d = this.divergenceFromOthers(update.clientId, rows, probs);
      if (d !== null) this.reputation.observeOne(task.studentVersion ?? 0, update.clientId, d);
    }
    let t = this.teachers.get(update.clientId);
    if (!t) {
      t = { probs: new Float32Array(this.proxy.count * c), version: new Int32Array(this.proxy.count).fill(-1) };
      this.teachers.set(update.clientId, t);
    }
    for (let i = 0; i < rows.length; i++) {
      const row = rows[i];
      t.probs.set(probs.subarray(i * c, (i + 1) * c), row * c);
      t.version[row] = task.studentVersion ?? 0;
      if (!this.isLabelled[row]) {
        this.isLabelled[row] = 1;
        this.labelled.push(row);
      }
    }
  }

  /** Teacher probabilities of `rows` at the current version and its temperature (row-major, rows × classes). */
  teacherFor(rows: ArrayLike<number>): Float32Array {
    const c = this.proxy.numClasses;
    const out = new Float32Array(rows.length * c);
    const row = new Float64Array(c);
    const contribs: Contribution[] = [];
    const moved = Array.from({ length: this.teachers.size }, () => new Float64Array(c));
    const trust = [...this.teachers.keys()].map((id) => this.reputation.score(id));
    const opts = { exponent: this.cfg.stalenessExponent, confidence: this.cfg.aggregator === 'confidence', maxShare: this.cfg.maxShare };
    for (let i = 0; i < rows.length; i++) {
      contribs.length = 0;
      let k = 0;
      for (const t of this.teachers.values()) {
        const v = t.version[rows[i]];
        const trustK = trust[k++];
        if (v < 0) continue;
        const p = t.probs.subarray(rows[i] * c, (rows[i] + 1) * c);
        const buf = moved[contribs.length];
        contribs.push({ probs: this.temperature.retemperRow(p, v, this.version, buf) ? buf : p, version: v, trust: trustK });
      }
      staleTeacherRow(contribs, this.version, c, opts, row);
      for (let j = 0; j < c; j++) out[i * c + j] = row[j];
    }
    return out;
  }

  async trainStep(ctx: RoundContext): Promise<number | null> {
    if (this.labelled.length === 0) return null;
    const n = Math.min(this.cfg.distillBatchSize, this.labelled.length);
    const rows = new Uint32Array(n);
    for (let i = 0; i < n; i++) rows[i] = this.labelled[Math.floor(ctx.rng.next() * this.labelled.length)];
    return distillStep(this.model, this.student.optimizer, this.proxy, rows, this.teacherFor(rows), { temperature: this.currentTemperature, numClasses: this.proxy.numClasses });
  }

  publish(): void {
    this.student.version++;
  }

  async exportState(): Promise<OnlineState> {
    return {
      ...(await this.student.exportState()),
      teachers: [...this.teachers].map(([clientId, t]) => ({ clientId, probs: t.probs, version: t.version })),
      reputation: this.reputation.exportState(),
    };
  }

  async importState(raw: unknown): Promise<void> {
    const s = raw as OnlineState;
    await this.student.importState(s);
    this.teachers = new Map(s.teachers.map((t) => [t.clientId, { probs: t.probs, version: t.version }]));
    this.reputation.importState(s.reputation);
    this.isLabelled = new Uint8Array(this.proxy.count);
    this.labelled = [];
    for (const t of this.teachers.values()) {
      for (let row = 0; row < this.proxy.count; row++) {
        if (t.version[row] >= 0 && !this.isLabelled[row]) {
          this.isLabelled[row] = 1;
          this.labelled.push(row);
        }
      }
    }
    this.labelled.sort((a, b) => a - b);
  }
}
