import * as tf from '@tensorflow/tfjs';
import { subset, type Dataset } from '../../shared/data/dataset.ts';
import { Rng } from '../../shared/data/rng.ts';
import { softmaxRows } from '../../shared/distill/aggregators.ts';
import { buildModel, type ModelKind } from '../../shared/models/builders.ts';
import { predictLogits } from '../../shared/models/training.ts';
import { applyWireWeights, encodeModel, modelToWire } from '../../shared/models/wire.ts';
import type { WireModel, WireTensor } from '../../shared/protocol/messages.ts';
import { encodeMatrix, type EncodedMatrix, type LogitCodecName } from '../../shared/tensor/logit-codec.ts';
import type { ServerConfig } from '../config.ts';
import { exportOptimizer, importOptimizer } from './optimizer-state.ts';
import { evaluateStudent, type EvalReport, type Participant, type RoundContext } from './strategy.ts';

/** What a checkpoint keeps of a distilled student. */
export interface StudentCheckpoint {
  proxyHash: string;
  version: number;
  model: WireModel;
  optimizer: WireTensor[];
}

/**
 * The server's student as the distillation strategies share it: the model, its Adam optimizer and version, the
 * proxy set it learns on (and that set's fixed shuffle, whose n-th window is round n's rows unless --uncertain-rows picks them), its
 * soft labels for clients, and its checkpoint.
 */
export class Student {
  readonly model: tf.LayersModel;
  readonly kind: ModelKind;
  readonly optimizer: tf.Optimizer;
  version = 0;
  private readonly order: Uint32Array;

  constructor(
    private readonly cfg: ServerConfig,
    readonly proxy: Dataset,
    readonly proxyHash: string,
  ) {
    this.kind = cfg.student;
    this.model = buildModel({ kind: cfg.student, inputShape: proxy.shape, numClasses: proxy.numClasses, seed: cfg.seed });
    this.optimizer = tf.train.adam(cfg.distillLearningRate);
    // One fixed shuffle: every proxy row gets used, and a restarted server asks for the same rows.
    this.order = Uint32Array.from(new Rng(`proxy-order/${cfg.seed}`).permutation(proxy.count));
  }

  /** The proxy set's fixed shuffle (row indices in shuffled order). */
  get shuffle(): Uint32Array {
    return this.order;
  }

  /** The n-th (1-based) window of proxySubset rows of the fixed shuffle, sorted. */
  window(n: number): Uint32Array {
    const size = Math.min(this.cfg.proxySubset, this.proxy.count);
    const start = ((n - 1) * size) % this.proxy.count;
    const out = new Uint32Array(size);
    for (let i = 0; i < size; i++) out[i] = this.order[(start + i) % this.proxy.count];
    return out.sort();
  }

  /** The student in fp32 (lossless): checkpoints, exports. */
  toWire(): WireModel {
    return modelToWire(this.model, this.kind, this.version);
  }

  /**
   * The student as this round's tasks carry it: encoded with --student-codec for a client whose hello lists that
   * encoding, fp32 for any other (a client written before weight encodings keeps working). One snapshot, each
   * encoding computed once. The final student in `end`, checkpoints and exports stay fp32 (toWire).
   */
  downlink(): (p: Pick<Participant, 'weightEncodings'>) => WireModel {
    const fp32 = modelToWire(this.model, this.kind, this.version);
    const codec = this.cfg.studentCodec;
    let encoded: WireModel | undefined;
    return (p) => (codec !== 'fp32' && p.weightEncodings?.includes(codec) ? (encoded ??= encodeModel(fp32, codec)) : fp32);
  }

  /** The student's probabilities at T on proxy rows, encoded for the downlink (mutual learning's teacher signal). */
  async softLabels(indices: Uint32Array, temperature: number, codec: LogitCodecName): Promise<EncodedMatrix> {
    const c = this.proxy.numClasses;
    const probs = softmaxRows(await predictLogits(this.model, subset(this.proxy, indices)), indices.length, c, temperature);
    return encodeMatrix(probs, indices.length, c, codec);
  }

  async exportState(): Promise<StudentCheckpoint> {
    return { proxyHash: this.proxyHash, version: this.version, model: this.toWire(), optimizer: await exportOptimizer(this.optimizer) };
  }

  async importState(s: StudentCheckpoint): Promise<void> {
    if (s.proxyHash !== this.proxyHash) {
      throw new Error(`checkpoint was made with proxy set ${s.proxyHash}, this server has ${this.proxyHash}: use the same --proxy and --seed, or a new --state-dir`);
    }
    applyWireWeights(this.model, s.model.weights);
    await importOptimizer(this.optimizer, s.optimizer);
    this.version = s.version;
  }
}

/** What the distillation strategies expose of their student (the Strategy interface's model side), in one place. */
export abstract class HasStudent {
  protected abstract readonly student: Student;

  get model(): tf.LayersModel {
    return this.student.model;
  }
  get modelKind(): ModelKind {
    return this.student.kind;
  }
  get version(): number {
    return this.student.version;
  }
  /** sha256 of the proxy set the logits must be computed on. */
  get proxyHash(): string {
    return this.student.proxyHash;
  }
  /** Any architecture can take part: only logits travel up. */
  eligible(): boolean {
    return true;
  }
  async evaluate(ctx: RoundContext): Promise<EvalReport> {
    return evaluateStudent(this.student.model, ctx);
  }
}
