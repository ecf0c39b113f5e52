import type { ModelKind } from '../shared/models/builders.ts';
import type { AggregatorName } from '../shared/distill/aggregators.ts';
import type { LogitCodecName } from '../shared/tensor/logit-codec.ts';
import { DEFAULT_FRAME_LIMITS, type FrameLimits } from '../shared/protocol/validate.ts';

export type StrategyName = 'ensemble' | 'mutual' | 'online' | 'fedavg';
export const STRATEGIES: readonly StrategyName[] = ['ensemble', 'mutual', 'online', 'fedavg'];

/** Everything the aggregator can be told, with defaults that a CLI flag or env var overrides. */
export interface ServerConfig {
  host: string;
  port: number;
  /** Shared secret clients present in the socket.io handshake and as an HTTP bearer token; '' disables auth. */
  token: string;
  /** Secret a dashboard viewer presents (socket.io handshake `auth.viewerToken`) to watch `/`; '' = open to anyone. */
  viewerToken: string;
  /** Continual scenarios: the tasks as groups of class indices, for the dashboard's per-task accuracy and forgetting. */
  tasks?: number[][];
  /**
   * Origins (e.g. https://shop.example) whose pages may use the client SDK from this server: CORS on the HTTP routes
   * and socket.io's handshake. Empty (default): same origin only. '*' allows any origin.
   */
  corsOrigins: string[];
  /** Serve the committed public Fashion-MNIST subset under /demo-data/ for the join page's demo shards. */
  demoData: boolean;
  strategy: StrategyName;
  /** Rounds to run (online: student versions to publish); 0 = forever (continual). */
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
  /** Distillation temperature; with temperatureDecay k > 0 it is T_max of T(t) = T_max·exp(−k·t), t = round (floor 1). */
  temperature: number;
  temperatureDecay: number;
  /** λ of the previous-student term λ·T²·KL(p_prev ‖ p_student) in the server's distillation (continual rounds); 0 = off. */
  prevStudentLambda: number;
  /** Mutual: β of the client's β·T²·KL(p_student ‖ p_client) term on the round's proxy rows. */
  mutualBeta: number;
  /** Online: the student publishes a new version every this many training steps or seconds, whichever comes first. */
  publishEverySteps: number;
  publishEverySeconds: number;
  /** Online: training steps the student owes per accepted upload (it idles when none are owed). */
  stepsPerUpload: number;
  /** Online: a contribution's teacher weight is (1 + staleness)^−stalenessExponent, staleness in student versions. */
  stalenessExponent: number;
  /** Online: an upload computed against a student more than this many versions old is refused with 'resync'. */
  maxStaleness: number;
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
  viewerToken: '',
  corsOrigins: [],
  demoData: true,
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
  temperatureDecay: 0,
  prevStudentLambda: 0,
  mutualBeta: 1,
  publishEverySteps: 100,
  publishEverySeconds: 30,
  stepsPerUpload: 24,
  stalenessExponent: 0.5,
  maxStaleness: 30,
  distillEpochs: 3,
  bankDecay: 1,
  distillBatchSize: 128,
  distillLearningRate: 0.001,
  consensusEpochs: 2,
  consensusCodec: 'fp16',
  frameLimits: DEFAULT_FRAME_LIMITS,
};
