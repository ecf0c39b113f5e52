import type { ModelKind } from '../shared/models/builders.ts';
import type { AggregatorName } from '../shared/distill/aggregators.ts';
import type { FedAvgAggregatorName } from '../shared/distill/weight-averaging.ts';
import type { LogitCodecName } from '../shared/tensor/logit-codec.ts';
import type { WeightCodecName } from '../shared/models/weight-codec.ts';
import type { FrameLimits } from '../shared/protocol/validate.ts';
import { checkConfig, defaultsFor, settingsFor, STRATEGIES, type StrategyName } from '../shared/settings/index.ts';

export { STRATEGIES, type StrategyName };

/** Everything the aggregator can be told; each field is a row of the settings table (shared/settings/). */
export interface ServerConfig {
  host: string;
  port: number;
  /**
   * Shared secret clients present in the socket.io handshake and as an HTTP bearer token. Exactly one of `token`,
   * `credentials` and `insecureNoAuth` must be set: an empty token alone is refused, never read as "no auth".
   */
  token: string;
  /** Per-client credentials instead of a shared token (`fedistill credential issue`); needs `stateDir`. */
  credentials: boolean;
  /** Accept any client and viewer with no token at all: only for experiments on a trusted network. */
  insecureNoAuth: boolean;
  /**
   * The operator/viewer token: the dashboard's feed (`auth.viewerToken`), /status and /metrics (Bearer), /student. '' with
   * client auth on: the aggregator generates one at start (kept in `stateDir`, if any); '' with insecureNoAuth: open.
   */
  viewerToken: string;
  /** https (and wss): PEM certificate chain and private key, as file paths or as the PEM text itself. */
  tls?: { cert: string; key: string };
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
  /** Robust aggregation (shared/distill/robust.ts): trimmed-mean's trim fraction, the per-client share cap (a multiple
   * of 1/K), the clamp on claimed sample counts (× the round's median claim), the reputation rate (0 = off), and
   * FedAvg's aggregator. */
  trimFraction: number;
  maxShare: number;
  claimFactor: number;
  reputationDecay: number;
  fedavgAggregator: FedAvgAggregatorName;
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
  /** Threads the student distills on (server/strategies/parallel-distill.ts); 0 = auto (cores, at most 4), 1 = the main thread only. */
  distillThreads: number;
  /** While the bank holds few rows, epochs enough for distillFill × distillEpochs × the proxy set size samples (0 = off). */
  distillFill: number;
  /** The student distills on randomly shifted and mirrored proxy images (shared/data/augment.ts). */
  distillAugment: boolean;
  /** Teacher labels in the bank count decay^(rounds since labelled) in the student's loss; 1 = all alike. */
  bankDecay: number;
  /** --uncertain-rows: share of a round's proxy rows picked by the student's smallest margin (shared/distill/row-selection.ts). */
  uncertainRows: number;
  distillBatchSize: number;
  distillLearningRate: number;
  /** Epochs a client whose architecture differs spends digesting the consensus (FedMD). */
  consensusEpochs: number;
  consensusCodec: LogitCodecName;
  /** How the student travels in round tasks (shared/models/weight-codec.ts); checkpoints, exports and the end stay fp32. */
  studentCodec: WeightCodecName;
  frameLimits: FrameLimits;
  /** Abuse limits (server/guard/): registered ids at most; seconds a connection has to say a valid hello. */
  maxClients: number;
  helloTimeoutS: number;
  /** Selected this many rounds (online: tasks) in a row without uploading: idle (not selected) until a sign of life; 0 = never. */
  idleAfterRounds: number;
  /** Offline clients not seen for this long leave the registry; 0 = kept forever. */
  clientRetentionS: number;
  /** Clients listed by /status and the dashboard (the most recently active). */
  statusClients: number;
  /** Per connection: frames per second and burst, one hello per helloIntervalS (0 = no own limit), error replies per second, flood limit. */
  rateFramesPerS: number;
  rateBurst: number;
  helloIntervalS: number;
  errorRepliesPerS: number;
  floodLimit: number;
  /** Per remote address: failed authentications before back-off, first and longest back-off, addresses tracked. */
  authFailures: number;
  authBackoffS: number;
  authBackoffMaxS: number;
  addressTableSize: number;
  /** Differential privacy (docs/privacy.md); off when both epsilon and noiseMultiplier are 0. */
  privacy: PrivacyConfig;
  /** Secure aggregation of the teachers (docs/privacy.md). */
  secureAggregation: { enabled: boolean; threshold: number; phaseTimeoutS: number };
}

export interface PrivacyConfig {
  /** Target ε per client after `rounds` uploads (0: use noiseMultiplier). */
  epsilon: number;
  noiseMultiplier: number;
  delta: number;
  clip: number;
  /** Uploads per client the calibration plans for (0: config.rounds). */
  rounds: number;
  /** ε past which a client is not selected (0: epsilon). */
  budget: number;
  temperature: number;
  /** Who adds the noise without secure aggregation: every client all of it, or a share each (trusted server). */
  noise: 'local' | 'central';
}

/** Every ServerConfig field, so the check below fails the build when a field has no row in the settings table. */
const CONFIG_FIELDS = {
  host: 1, port: 1, token: 1, credentials: 1, insecureNoAuth: 1, viewerToken: 1, tls: 1, tasks: 1, corsOrigins: 1, demoData: 1, strategy: 1, rounds: 1, minClients: 1,
  fraction: 1, roundTimeoutS: 1, quorum: 1, stateDir: 1, seed: 1, student: 1, proxySubset: 1, localEpochs: 1, batchSize: 1,
  learningRate: 1, aggregator: 1, trimFraction: 1, maxShare: 1, claimFactor: 1, reputationDecay: 1, fedavgAggregator: 1, logitAdjust: 1, ntdBeta: 1, temperature: 1, temperatureDecay: 1, prevStudentLambda: 1,
  mutualBeta: 1, publishEverySteps: 1, publishEverySeconds: 1, stepsPerUpload: 1, stalenessExponent: 1, maxStaleness: 1,
  distillEpochs: 1, distillFill: 1, distillThreads: 1, distillAugment: 1, bankDecay: 1, uncertainRows: 1, distillBatchSize: 1, distillLearningRate: 1, consensusEpochs: 1, consensusCodec: 1, studentCodec: 1,
  frameLimits: 1, maxClients: 1, helloTimeoutS: 1, idleAfterRounds: 1, clientRetentionS: 1, statusClients: 1,
  rateFramesPerS: 1, rateBurst: 1, helloIntervalS: 1, errorRepliesPerS: 1, floodLimit: 1, authFailures: 1,
  authBackoffS: 1, authBackoffMaxS: 1, addressTableSize: 1, privacy: 1, secureAggregation: 1,
} satisfies Record<keyof ServerConfig, 1>;

/** The settings table's server rows that are ServerConfig fields (the others — --proxy, --log-level … — are the CLI's). */
export const SERVER_CONFIG_SETTINGS = settingsFor('server').filter((s) => s.key.split('.')[0] in CONFIG_FIELDS);
for (const field of Object.keys(CONFIG_FIELDS)) {
  if (!SERVER_CONFIG_SETTINGS.some((s) => s.key.split('.')[0] === field)) throw new Error(`ServerConfig.${field} has no row in the settings table`);
}

/** The settings table's defaults: the demo's settings (README), so `fedistill server` + clients reproduce it. */
export const DEFAULT_CONFIG: ServerConfig = defaultsFor('server', SERVER_CONFIG_SETTINGS.map((s) => s.key)) as unknown as ServerConfig;

/** Refuses a config whose values are out of the table's ranges or contradict each other (RangeError naming the key). */
export function checkServerConfig(config: Partial<ServerConfig>): void {
  checkConfig('server', config as Record<string, unknown>);
}
