import * as tf from '@tensorflow/tfjs';
import { subset, type Dataset } from '../../shared/data/dataset.ts';
import { Rng } from '../../shared/data/rng.ts';
import { softmaxRows } from '../../shared/distill/aggregators.ts';
import { staleTeacherRow, type Contribution } from '../../shared/distill/staleness.ts';
import { buildModel, type ModelKind } from '../../shared/models/builders.ts';
import { distillStep, predictLogits } from '../../shared/models/training.ts';
import { applyWireWeights, modelToWire } from '../../shared/models/wire.ts';
import type { ClientMsg, WireModel, WireTensor } from '../../shared/protocol/messages.ts';
import { encodeMatrix } from '../../shared/tensor/logit-codec.ts';
import type { ServerConfig } from '../config.ts';
import { acceptLogits } from './logits-upload.ts';
import { exportOptimizer, importOptimizer } from './optimizer-state.ts';
import { evaluateStudent, type EvalReport, type OnlineStrategy as OnlineStrategyApi, type Participant, type RoundContext, type RoundTask, type Update } from './strategy.ts';

/** One client's latest say on each proxy row: probabilities at T and the student version it trained from (−1: none). */
interface ClientTeacher {
  probs: Float32Array;
  version: Int32Array;
}

interface OnlineState {
  proxyHash: string;
  version: number;
  model: WireModel;
  optimizer: WireTensor[];
  teachers: { clientId: string; probs: Float32Array; version: Int32Array }[];
}

/**
 * Online (asynchronous, codistillation-style) distillation. There is no round barrier: each client gets its own
 * stream of tasks (its n-th task labels the n-th window of a fixed shuffle of the proxy set, so all clients walk the
 * same rows, fast ones ahead), and every upload is taken into a per-row teacher as soon as it is accepted. The teacher
 * of a row is the staleness-weighted mean of each client's latest contribution to it; the student trains on it in a
 * background loop, step by step, and is published as a new version every K steps or S seconds. A client trained from
 * a student more than `maxStaleness` versions old is told to resync (the coordinator refuses its upload).
 */
export class OnlineStrategy implements OnlineStrategyApi {
  readonly name = 'online';
  readonly mode = 'online' as const;
  readonly model: tf.LayersModel;
  readonly modelKind: ModelKind;
  version = 0;
  private readonly optimizer: tf.Optimizer;
  private readonly proxyOrder: Uint32Array;
  private teachers = new Map<string, ClientTeacher>();
  /** Proxy rows with at least one contribution, and a membership flag. */
  private labelled: number[] = [];
  private isLabelled: Uint8Array;

  constructor(
    private readonly cfg: ServerConfig,
    private readonly proxy: Dataset,
    private readonly proxyHash: string,
  ) {
    this.modelKind = cfg.student;
    this.model = buildModel({ kind: cfg.student, inputShape: proxy.shape, numClasses: proxy.numClasses, seed: cfg.seed });
    this.optimizer = tf.train.adam(cfg.distillLearningRate);
    this.proxyOrder = Uint32Array.from(new Rng(`proxy-order/${cfg.seed}`).permutation(proxy.count));
    this.isLabelled = new Uint8Array(proxy.count);
  }

  eligible(): boolean {
    return true;
  }

  /** Rows of a client's n-th task: the n-th window of the fixed shuffle. */
  windowFor(n: number): Uint32Array {
    const size = Math.min(this.cfg.proxySubset, this.proxy.count);
    const start = ((n - 1) * size) % this.proxy.count;
    const out = new Uint32Array(size);
    for (let i = 0; i < size; i++) out[i] = this.proxyOrder[(start + i) % this.proxy.count];
    return out.sort();
  }

  async configureTask(_ctx: RoundContext, p: Participant, n: number, heldVersion: number): Promise<RoundTask> {
    const indices = this.windowFor(n);
    const same = p.model === this.modelKind;
    const T = this.cfg.temperature;
    const c = this.proxy.numClasses;
    // Same architecture: the latest student, unless the client already has it. Other architectures: the student's
    // soft labels on the task's rows, learned mutual-style (they can't load its weights).
    const model = same && heldVersion !== this.version ? modelToWire(this.model, this.modelKind, this.version) : undefined;
    const mutual =
      !same && this.version > 0 && this.cfg.mutualBeta > 0
        ? { probs: encodeMatrix(softmaxRows(await predictLogits(this.model, subset(this.proxy, indices)), indices.length, c, T), indices.length, c, this.cfg.consensusCodec), temperature: T, beta: this.cfg.mutualBeta }
        : undefined;
    return {
      task: 'logits',
      indices,
      localEpochs: this.cfg.localEpochs,
      batchSize: this.cfg.batchSize,
      learningRate: this.cfg.learningRate,
      logitAdjust: this.cfg.logitAdjust,
      model,
      mutual,
      studentVersion: this.version,
    };
  }

  acceptUpdate(_ctx: RoundContext, _p: Participant, msg: ClientMsg, task: RoundTask): Float32Array {
    return acceptLogits(this.name, msg, task, this.proxyHash, this.proxy.numClasses);
  }

  ingest(update: Update, task: Pick<RoundTask, 'indices' | 'studentVersion'>): void {
    const c = this.proxy.numClasses;
    const rows = task.indices!;
    const probs = softmaxRows(update.payload as Float32Array, rows.length, c, this.cfg.temperature);
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

  /** Teacher probabilities of `rows` at the current version (row-major, rows × classes). */
  teacherFor(rows: ArrayLike<number>): Float32Array {
    const c = this.proxy.numClasses;
    const out = new Float32Array(rows.length * c);
    const row = new Float64Array(c);
    const contribs: Contribution[] = [];
    for (let i = 0; i < rows.length; i++) {
      contribs.length = 0;
      for (const t of this.teachers.values()) {
        const v = t.version[rows[i]];
        if (v >= 0) contribs.push({ probs: t.probs.subarray(rows[i] * c, (rows[i] + 1) * c), version: v });
      }
      staleTeacherRow(contribs, this.version, c, { exponent: this.cfg.stalenessExponent, confidence: this.cfg.aggregator === 'confidence' }, row);
      for (let j = 0; j < c; j++) out[i * c + j] = row[j];
    }
    return out;
  }

  get labelledRows(): number {
    return this.labelled.length;
  }

  async trainStep(ctx: RoundContext): Promise<number | null> {
    if (this.labelled.length === 0) return null;
    const n = Math.min(this.cfg.distillBatchSize, this.labelled.length);
    const rows = new Uint32Array(n);
    for (let i = 0; i < n; i++) rows[i] = this.labelled[Math.floor(ctx.rng.next() * this.labelled.length)];
    return distillStep(this.model, this.optimizer, this.proxy, rows, this.teacherFor(rows), { temperature: this.cfg.temperature, numClasses: this.proxy.numClasses });
  }

  publish(): void {
    this.version++;
  }

  async evaluate(ctx: RoundContext): Promise<EvalReport> {
    return evaluateStudent(this.model, ctx);
  }

  async exportState(): Promise<OnlineState> {
    return {
      proxyHash: this.proxyHash,
      version: this.version,
      model: modelToWire(this.model, this.modelKind, this.version),
      optimizer: await exportOptimizer(this.optimizer),
      teachers: [...this.teachers].map(([clientId, t]) => ({ clientId, probs: t.probs, version: t.version })),
    };
  }

  async importState(raw: unknown): Promise<void> {
    const s = raw as OnlineState;
    if (s.proxyHash !== this.proxyHash) {
      throw new Error(`checkpoint was made with proxy set ${s.proxyHash}, this server has ${this.proxyHash}: use the same --proxy and --seed, or a new --state-dir`);
    }
    applyWireWeights(this.model, s.model.weights);
    await importOptimizer(this.optimizer, s.optimizer);
    this.version = s.version;
    this.teachers = new Map(s.teachers.map((t) => [t.clientId, { probs: t.probs, version: t.version }]));
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
