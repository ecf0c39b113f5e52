import type * as tf from '@tensorflow/tfjs';
import type { WeightCodecName } from '../../shared/models/weight-codec.ts';
import type { RowEncodingName } from '../../shared/protocol/row-set.ts';
import { evaluatePerClass } from '../../shared/models/training.ts';
import type { Dataset } from '../../shared/data/dataset.ts';
import type { Rng } from '../../shared/data/rng.ts';
import type { ModelKind } from '../../shared/models/builders.ts';
import type { ClientMsg, ClientRoundStats, RoundMsg } from '../../shared/protocol/messages.ts';
import type { LogitCodecName } from '../../shared/tensor/logit-codec.ts';
import type { ServerConfig } from '../config.ts';
import type { Logger } from '../logger.ts';

/** A registered client as the coordinator knows it (metadata only: the server never sees private data). */
export interface Participant {
  id: string;
  model: ModelKind;
  numSamples: number;
  classCounts?: number[];
  codec: LogitCodecName;
  /** Weight encodings its hello said it decodes besides fp32 (absent: fp32 only). */
  weightEncodings?: WeightCodecName[];
  /** Row-set forms its hello said it decodes (absent: a round's proxy rows go as the uint32 list `indices`). */
  rowEncodings?: RowEncodingName[];
}

export interface RoundContext {
  round: number;
  config: ServerConfig;
  /** The public proxy set, labels dropped. */
  proxy: Dataset;
  /** Labelled data the server may evaluate on (e.g. a held-out test set), or null. */
  validation: Dataset | null;
  rng: Rng;
  log: Logger;
}

/** The per-client instructions of a round, before the coordinator stamps round number and deadline. */
export type RoundTask = Omit<RoundMsg, 'type' | 'round' | 'deadline' | 'strategy'>;

/** An accepted upload, decoded and checked: what aggregate() consumes and what a checkpoint holds. */
export interface Update {
  clientId: string;
  numSamples: number;
  classCounts?: number[];
  /** Strategy-specific payload (logits, weights). */
  payload: unknown;
  /** Serialized frame size as received. */
  bytes: number;
  stats: ClientRoundStats;
}

export interface AggregateReport {
  /** Seconds spent aggregating and distilling/averaging. */
  seconds: number;
  distillLoss?: number;
  /** Teacher probabilities on the round's proxy rows (distillation strategies): for in-process observers only. */
  teacher?: { indices: Uint32Array; probs: Float32Array };
  /**
   * Distillation strategies: each participant's weight multiplier this round (min of this round's agreement with the
   * median teacher and its reputation) and its reputation score afterwards, both in [0, 1].
   */
  trust?: { clientId: string; trust: number; score: number }[];
}

export interface EvalReport {
  accuracy?: number;
  /** Accuracy on each class's validation rows (NaN: none). */
  perClassAccuracy?: number[];
}

/** The student on the operator's labelled validation set, if there is one. */
export async function evaluateStudent(model: tf.LayersModel, ctx: RoundContext): Promise<EvalReport> {
  if (!ctx.validation) return {};
  const r = await evaluatePerClass(model, ctx.validation);
  return { accuracy: r.accuracy, perClassAccuracy: r.perClass };
}

/** What every strategy has: a student, its version, upload checks, evaluation and checkpointable state. */
export interface StrategyBase {
  readonly name: string;
  /** The global model (student) the strategy maintains. */
  readonly model: tf.LayersModel;
  readonly modelKind: ModelKind;
  /** Version of the global model, bumped by every aggregate. */
  readonly version: number;
  /** Which clients can take part (e.g. FedAvg needs the global architecture). */
  eligible(p: Participant): boolean;
  /** Check an upload against the task it answers; throws ProtocolError to refuse it. */
  acceptUpdate(ctx: RoundContext, p: Participant, msg: ClientMsg, task: RoundTask): unknown;
  evaluate(ctx: RoundContext): Promise<EvalReport>;
  exportState(): Promise<unknown>;
  importState(state: unknown): Promise<void>;
  /** Release what the strategy runs beside the event loop (the student's distillation threads); the aggregator's close. */
  close?(): Promise<void>;
}

/**
 * A round-based strategy, one per file, Flower's split: configure → (clients fit) → accept → aggregate → evaluate.
 * The coordinator owns rounds, selection, deadlines, transport and checkpoints; a strategy owns the math and its model.
 */
export interface Strategy extends StrategyBase {
  readonly mode?: 'rounds';
  configureRound(ctx: RoundContext, participants: Participant[]): Promise<Map<string, RoundTask>>;
  aggregate(ctx: RoundContext, updates: Update[], tasks: Map<string, RoundTask>): Promise<AggregateReport>;
  /** Secure aggregation: learn from the unmasked sum of `count` clients' vectors (the tasks' `secagg.values`). */
  aggregateSecure?(ctx: RoundContext, sum: SecureSum, tasks: Map<string, RoundTask>): Promise<AggregateReport>;
}

/** What secure aggregation hands a strategy: Σ of the contributors' vectors, their number, and the session's params. */
export interface SecureSum {
  sum: Float64Array;
  count: number;
  params: { length: number };
}

/**
 * An asynchronous strategy: no rounds. The online coordinator hands each idle client its own task, feeds every accepted
 * upload in at once, and calls trainStep() in a background loop; publish() makes the trained student the next version.
 */
export interface OnlineStrategy extends StrategyBase {
  readonly mode: 'online';
  /** Client `p`'s n-th task; `heldVersion` is the student version it last received (−1: none). */
  configureTask(ctx: RoundContext, p: Participant, n: number, heldVersion: number): Promise<RoundTask>;
  /** Take an accepted upload (acceptUpdate's payload) into the teacher. */
  ingest(update: Update, task: Pick<RoundTask, 'indices' | 'studentVersion'>): void;
  /** One training step of the student on the current teacher; null when there is nothing to learn from yet. */
  trainStep(ctx: RoundContext): Promise<number | null>;
  publish(): void;
}

export type AnyStrategy = Strategy | OnlineStrategy;

export function isOnline(s: AnyStrategy): s is OnlineStrategy {
  return s.mode === 'online';
}
