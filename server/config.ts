import type { ModelKind } from '../shared/models/builders.ts';
import type { AggregatorName } from '../shared/distill/aggregators.ts';
import type { LogitCodecName } from '../shared/tensor/logit-codec.ts';
import { DEFAULT_FRAME_LIMITS, type FrameLimits } from '../shared/protocol/validate.ts';

export type StrategyName = 'ensemble' | 'fedavg';

/** Everything the aggregator can be told, with defaults that a CLI flag or env var overrides. */
export interface ServerConfig {
  host: string;
  port: number;
  /** Shared secret clients present in the socket.io handshake and as an HTTP bearer token; '' disables auth. */
  token: string;
  strategy: StrategyName;
  /** Rounds to run; 0 = forever (continual). */
  rounds: number;
  /** Clients needed before a round starts, and the fraction of connected clients selected each round. */
  minClients: number;
  fraction: number;
  /** A round closes when every selected client answered, or at the deadline if at least quorum·selected answered. */
  roundTimeoutS: number;
  quorum: number;
  /** State dir for checkpoints; '' keeps state in memory only. */
  stateDir: string;
  seed: number;
  student: ModelKind;
  /** Proxy rows asked for per round (uplink per client-round = proxySubset × classes values). */
  proxySubset: number;
  localEpochs: number;
  batchSize: number;
  learningRate: number;
  aggregator: AggregatorName;
  /** Ask distillation clients for the logit-adjusted local loss (FedLC-style de-biasing of non-IID teachers). */
  logitAdjust: boolean;
  /** β of not-true distillation from the student during local training (FedNTD); 0 = off. */
  ntdBeta: number;
  temperature: number;
  distillEpochs: number;
  /** Teacher labels in the bank count decay^(rounds since labelled) in the student's loss; 1 = all alike. */
  bankDecay: number;
  distillBatchSize: number;
  distillLearningRate: number;
  /** Epochs a client whose architecture differs spends digesting the consensus (FedMD). */
  consensusEpochs: number;
  consensusCodec: LogitCodecName;
  frameLimits: FrameLimits;
}

export const DEFAULT_CONFIG: ServerConfig = {
  host: '127.0.0.1',
  port: 8080,
  token: '',
  strategy: 'ensemble',
  rounds: 10,
  minClients: 2,
  fraction: 1,
  roundTimeoutS: 300,
  quorum: 0.5,
  stateDir: '',
  seed: 1,
  student: 'cnn',
  proxySubset: 1000,
  localEpochs: 2,
  batchSize: 64,
  learningRate: 0.001,
  aggregator: 'confidence',
  logitAdjust: true,
  ntdBeta: 0,
  temperature: 2,
  distillEpochs: 3,
  bankDecay: 1,
  distillBatchSize: 128,
  distillLearningRate: 0.001,
  consensusEpochs: 2,
  consensusCodec: 'fp16',
  frameLimits: DEFAULT_FRAME_LIMITS,
};
