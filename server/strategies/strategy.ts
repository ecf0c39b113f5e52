import type * as tf from '@tensorflow/tfjs';
import type { Dataset } from '../../shared/data/dataset.ts';
import type { Rng } from '../../shared/data/rng.ts';
import type { ModelKind } from '../../shared/models/builders.ts';
import type { ClientMsg, ClientRoundStats, RoundMsg } from '../../shared/protocol/messages.ts';
import type { LogitCodecName } from '../../shared/tensor/logit-codec.ts';
import type { ServerConfig } from '../config.ts';

/** A registered client as the coordinator knows it (metadata only: the server never sees private data). */
export interface Participant {
  id: string;
  model: ModelKind;
  numSamples: number;
  classCounts?: number[];
  codec: LogitCodecName;
}

export interface RoundContext {
  round: number;
  config: ServerConfig;
  /** The public proxy set, labels dropped. */
  proxy: Dataset;
  /** Labelled data the server may evaluate on (e.g. a held-out test set), or null. */
  validation: Dataset | null;
  rng: Rng;
  log: (msg: string) => void;
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
}

export interface EvalReport {
  accuracy?: number;
}

/**
 * One strategy per file, Flower's split: configure → (clients fit) → accept → aggregate → evaluate.
 * The coordinator owns rounds, selection, deadlines, transport and checkpoints; a strategy owns the math and its model.
 */
export interface Strategy {
  readonly name: string;
  /** The global model (student) the strategy maintains. */
  readonly model: tf.LayersModel;
  readonly modelKind: ModelKind;
  /** Version of the global model, bumped by every aggregate. */
  readonly version: number;
  /** Which clients can take part (e.g. FedAvg needs the global architecture). */
  eligible(p: Participant): boolean;
  configureRound(ctx: RoundContext, participants: Participant[]): Promise<Map<string, RoundTask>>;
  /** Check an upload against the task it answers; throws ProtocolError to refuse it. */
  acceptUpdate(ctx: RoundContext, p: Participant, msg: ClientMsg, task: RoundTask): unknown;
  aggregate(ctx: RoundContext, updates: Update[], tasks: Map<string, RoundTask>): Promise<AggregateReport>;
  evaluate(ctx: RoundContext): Promise<EvalReport>;
  exportState(): Promise<unknown>;
  importState(state: unknown): Promise<void>;
}
