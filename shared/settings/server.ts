import { AGGREGATORS } from '../distill/aggregators.ts';
import { FEDAVG_AGGREGATORS } from '../distill/weight-averaging.ts';
import { MODEL_KINDS } from '../protocol/model-kinds.ts';
import { VALUE_CODECS } from '../tensor/logit-codec.ts';
import { WEIGHT_CODECS } from '../models/weight-codec.ts';
import type { Setting } from './types.ts';

export type StrategyName = 'ensemble' | 'mutual' | 'online' | 'fedavg';
export const STRATEGIES: readonly StrategyName[] = ['ensemble', 'mutual', 'online', 'fedavg'];

/** '0,1;2,3' → [[0, 1], [2, 3]]: continual tasks as groups of class indices. */
export function parseTasks(raw: string): number[][] {
  const tasks = raw.split(';').map((t) => t.split(',').map((c) => (c.trim() === '' ? NaN : Number(c.trim()))));
  if (!tasks.length || tasks.some((t) => !t.length || t.some((c) => !Number.isInteger(c) || c < 0))) {
    throw new Error(`'${raw}' is not groups of class indices like 0,1;2,3`);
  }
  return tasks;
}

/** 'a,b,c' → ['a', 'b', 'c']: 2 to 256 distinct, non-empty names. */
export function parseClassNames(raw: string): string[] {
  const names = raw.split(',').map((c) => c.trim());
  if (names.some((c) => c === '')) throw new Error(`'${raw}' is not a comma list of names`);
  const dup = names.find((c, i) => names.indexOf(c) !== i);
  if (dup !== undefined) throw new Error(`'${raw}' names '${dup}' twice`);
  if (names.length < 2 || names.length > 256) throw new Error(`'${raw}' has ${names.length} names, not 2 to 256`);
  return names;
}

const positive = { min: 0, minOpen: true } as const;
const nonNegative = { min: 0 } as const;
const atLeastOne = { min: 1 } as const;
const fraction = { min: 0, minOpen: true, max: 1 } as const;

/**
 * Everything the aggregator can be told (ServerConfig), with the demo's values as defaults: `fedistill server` plus
 * `fedistill client`s run what `npm run demo` measured (README). `simulate` takes the ones a study varies.
 */
export const SERVER_SETTINGS: readonly Setting[] = [
  // ---- listening and access
  { key: 'host', flag: 'host', type: 'string', default: '127.0.0.1', env: 'FEDISTILL_HOST', arg: 'H', commands: ['server'], help: 'listen address (0.0.0.0 = every interface)', group: 'access' },
  { key: 'port', flag: 'port', type: 'int', range: { min: 0, max: 65535 }, default: 8080, env: 'PORT', arg: 'N', commands: ['server'], help: 'port, 0 = any free one', group: 'access' },
  { key: 'viewerToken', flag: 'viewer-token', type: 'string', default: '', env: 'FEDISTILL_VIEWER_TOKEN', arg: 'T', commands: ['server'], help: "operator/viewer token for the dashboard's data, /status and /metrics (Bearer), and /student; unset with client auth on: one is generated (kept in --state-dir)", group: 'access' },
  { key: 'credentials', flag: 'credentials', type: 'boolean', default: false, commands: ['server'], help: "clients must present a per-client credential ('fedistill credential issue', revocable) instead of --token; needs --state-dir", group: 'access' },
  { key: 'insecureNoAuth', flag: 'insecure-no-auth', type: 'boolean', default: false, commands: ['server'], help: 'accept any client and viewer without a token (trusted loopback experiments only)', group: 'access' },
  { key: 'tls.cert', flag: 'tls-cert', type: 'string', default: undefined, env: 'FEDISTILL_TLS_CERT', arg: 'FILE', commands: ['server'], help: 'serve https/wss with this PEM certificate (chain) …', group: 'access' },
  { key: 'tls.key', flag: 'tls-key', type: 'string', default: undefined, env: 'FEDISTILL_TLS_KEY', arg: 'FILE', commands: ['server'], help: '… and this PEM private key', group: 'access' },
  {
    key: 'corsOrigins',
    flag: 'cors-origin',
    type: 'list',
    item: { type: 'string' },
    minItems: 0,
    default: [],
    env: 'FEDISTILL_CORS_ORIGIN',
    arg: 'LIST',
    commands: ['server'],
    help: "origins whose pages may use the SDK here (comma list, '*' = any; none = same origin only)",
    group: 'access',
  },
  { key: 'demoData', flag: 'demo-data', type: 'boolean', default: true, commands: ['server'], help: "serve the public Fashion-MNIST subset for the join page's demo shards", group: 'access' },
  { key: 'stateDir', flag: 'state-dir', type: 'string', default: '', env: 'FEDISTILL_STATE_DIR', arg: 'DIR', commands: ['server'], help: "checkpoints + upload journal; a restart on the same dir resumes ('' = memory only)", group: 'access' },

  {
    key: 'keepServing',
    flag: 'keep-serving',
    type: 'boolean',
    default: false,
    commands: ['server'],
    help: 'after the last round keep serving /student, /status and the dashboard until stopped (default: exit 0 once clients are told)',
    group: 'access',
  },

  // ---- rounds
  { key: 'strategy', flag: 'strategy', type: 'enum', values: STRATEGIES, default: 'ensemble', arg: 'S', commands: ['server'], help: 'who teaches whom (README: Strategies)', group: 'rounds' },
  { key: 'rounds', flag: 'rounds', type: 'int', range: nonNegative, default: 10, arg: 'N', commands: ['server', 'simulate'], help: 'rounds to run (online: student versions to publish); 0 = forever', group: 'rounds' },
  { key: 'minClients', flag: 'min-clients', type: 'int', range: atLeastOne, default: 2, arg: 'N', commands: ['server'], help: 'clients needed before a round starts', group: 'rounds' },
  { key: 'fraction', flag: 'fraction', type: 'float', range: fraction, default: 1, arg: 'F', commands: ['server'], help: 'fraction of connected clients selected per round (at least --min-clients)', group: 'rounds' },
  {
    key: 'roundTimeoutS',
    flag: 'round-timeout',
    type: 'float',
    range: positive,
    default: 300,
    defaults: { simulate: 600 },
    arg: 'S',
    commands: ['server', 'simulate'],
    help: 'round deadline in seconds',
    group: 'rounds',
  },
  { key: 'quorum', flag: 'quorum', type: 'float', range: fraction, default: 0.5, arg: 'F', commands: ['server'], help: 'fraction of the selected uploads a round needs at its deadline', group: 'rounds' },
  {
    key: 'tasks',
    flag: 'tasks',
    type: 'custom',
    parse: parseTasks,
    format: (v) => (v as number[][]).map((t) => t.join(',')).join(';'),
    default: undefined,
    arg: 'SPEC',
    commands: ['server'],
    help: 'continual tasks as class groups, e.g. 0,1;2,3;4,5 (dashboard: per-task accuracy, forgetting)',
    group: 'rounds',
  },

  // ---- data (loaded by the server CLI; not part of ServerConfig)
  {
    key: 'proxy',
    flag: 'proxy',
    type: 'string',
    pattern: /^(fashion-mnist(:[1-9]\d*)?|images:.+|idx:.+)$/,
    patternText: 'fashion-mnist[:N] (N ≥ 1), images:DIR or idx:FILE',
    default: 'fashion-mnist',
    arg: 'SPEC',
    commands: ['server'],
    help: 'public proxy set: N Fashion-MNIST training rows held out (no N: 10000, a sixth of a smaller set), a folder of images, or an idx images file',
    group: 'data',
  },
  {
    key: 'validation',
    flag: 'validation',
    type: 'string',
    pattern: /^(fashion-mnist|none|images:.+|idx:[^,]+,[^,]+)$/,
    patternText: 'fashion-mnist, images:DIR, idx:IMAGES,LABELS or none',
    default: 'fashion-mnist',
    arg: 'SPEC',
    commands: ['server'],
    help: "labelled set the student is scored on each round (none = don't evaluate)",
    group: 'data',
  },
  {
    key: 'classes',
    flag: 'classes',
    type: 'custom',
    parse: parseClassNames,
    format: (v) => (v as string[]).join(','),
    default: undefined,
    defaultText: "the data set's",
    arg: 'a,b,c',
    commands: ['server', 'client'],
    help: {
      server: 'class names in label order (image folders: their sub-folder names, in this order)',
      client: 'class names in label order (an image folder: classes.json, else the server\'s, else the sub-folder names)',
    },
    group: 'data',
  },
  { key: 'student', flag: 'student', type: 'enum', values: MODEL_KINDS, default: 'cnn', arg: 'M', commands: ['server', 'simulate'], help: "the student's architecture", group: 'distillation' },
  { key: 'proxySubset', flag: 'proxy-subset', type: 'int', range: atLeastOne, default: 4500, arg: 'N', commands: ['server', 'simulate'], help: 'proxy rows asked for per round (uplink per client-round = N × classes values)', group: 'data' },

  // ---- local training (sent to the clients with each round)
  { key: 'localEpochs', flag: 'local-epochs', type: 'int', range: atLeastOne, default: 2, arg: 'E', commands: ['server', 'simulate'], help: 'epochs clients train on their private data per round', group: 'local training' },
  { key: 'batchSize', flag: 'batch-size', type: 'int', range: atLeastOne, default: 64, arg: 'N', commands: ['server', 'simulate'], help: "clients' local batch size", group: 'local training' },
  { key: 'learningRate', flag: 'learning-rate', type: 'float', range: positive, default: 0.001, arg: 'LR', commands: ['server', 'simulate'], help: "clients' local learning rate (Adam)", group: 'local training' },
  { key: 'logitAdjust', flag: 'logit-adjust', type: 'boolean', default: true, commands: ['server', 'simulate'], help: 'clients train with the logit-adjusted loss CE(z + log π_local) (FedLC-style; ensemble)', group: 'local training' },
  { key: 'ntdBeta', flag: 'ntd-beta', type: 'float', range: nonNegative, default: 0, arg: 'B', commands: ['server', 'simulate'], help: 'β of not-true distillation from the student in local training (FedNTD); 0 = off', group: 'local training' },
  { key: 'mutualBeta', flag: 'mutual-beta', type: 'float', range: nonNegative, default: 1, arg: 'B', commands: ['server', 'simulate'], help: "mutual/online: β of the client's β·T²·KL(p_student ‖ p_client) term", group: 'local training' },
  { key: 'consensusEpochs', flag: 'consensus-epochs', type: 'int', range: nonNegative, default: 2, arg: 'E', commands: ['server'], help: 'epochs a client of another architecture digests the consensus soft labels (FedMD)', group: 'local training' },
  { key: 'consensusCodec', flag: 'consensus-codec', type: 'enum', values: VALUE_CODECS, default: 'fp16', arg: 'C', commands: ['server'], help: 'how the consensus soft labels are encoded for those clients (probabilities: topk8 cannot carry them)', group: 'local training' },

  // ---- the server's distillation
  { key: 'studentCodec', flag: 'student-codec', type: 'enum', values: WEIGHT_CODECS, default: 'int8', arg: 'C', commands: ['server', 'simulate'], help: "how the student's weights travel in round tasks: int8 (per-channel, ~4× smaller), fp16, fp32; checkpoints, exports, FedAvg and the final student stay fp32", group: 'distillation' },
  { key: 'aggregator', flag: 'aggregator', type: 'enum', values: AGGREGATORS, default: 'confidence', arg: 'A', commands: ['server', 'simulate'], help: "how clients' logits become the teacher", group: 'distillation' },
  { key: 'trimFraction', flag: 'trim-fraction', type: 'float', range: { min: 0, max: 0.5, maxOpen: true }, default: 0.2, arg: 'F', commands: ['server', 'simulate'], help: 'trimmed-mean (teachers and --fedavg-aggregator): fraction dropped from each end of every coordinate', group: 'attacks' },
  { key: 'maxShare', flag: 'max-share', type: 'float', range: nonNegative, default: 2, arg: 'M', commands: ['server', 'simulate'], help: "no client weighs more than M/K of any row's teacher or of FedAvg's mean (K clients; ≤ 1 = equal shares, 0 = no cap)", group: 'attacks' },
  { key: 'claimFactor', flag: 'claim-factor', type: 'float', range: nonNegative, default: 3, arg: 'F', commands: ['server', 'simulate'], help: "weighted, fedavg: a client's claimed sample count counts at most F × the round's median claim (0 = believe it)", group: 'attacks' },
  { key: 'reputationDecay', flag: 'reputation-decay', type: 'float', range: { min: 0, max: 1 }, default: 0.5, arg: 'R', commands: ['server', 'simulate'], help: "weight of each round's agreement with the median teacher in a client's reputation, which multiplies its weight (0 = off)", group: 'attacks' },
  { key: 'fedavgAggregator', flag: 'fedavg-aggregator', type: 'enum', values: FEDAVG_AGGREGATORS, default: 'trimmed-mean', arg: 'A', commands: ['server', 'simulate'], help: "fedavg: how clients' weights are combined (coordinate-wise trimmed mean / median, norm-clipped or plain mean)", group: 'attacks' },
  { key: 'temperature', flag: 'temperature', type: 'float', range: positive, default: 2, arg: 'T', commands: ['server', 'simulate'], help: 'distillation temperature (T_max with --temperature-decay)', group: 'distillation' },
  { key: 'temperatureDecay', flag: 'temperature-decay', type: 'float', range: nonNegative, default: 0, arg: 'K', commands: ['server', 'simulate'], help: 'T(t) = T_max·exp(−K·t) per round, floored at 1; 0 = constant', group: 'distillation' },
  { key: 'distillEpochs', flag: 'distill-epochs', type: 'int', range: atLeastOne, default: 3, arg: 'E', commands: ['server', 'simulate'], help: 'student epochs over the teacher bank per round', group: 'distillation' },
  { key: 'distillThreads', flag: 'distill-threads', type: 'int', range: { min: 0, max: 64 }, default: 0, arg: 'N', commands: ['server', 'simulate'], help: "threads the student distills on (ensemble, mutual): each batch is split across worker threads and summed into one Adam step, the same step up to float rounding; 0 = auto: the cores, at most 4 and at most one per 16 rows of --distill-batch-size (beyond, each thread's share of a batch gets thin and the main thread's share of the work grows), 1 on native TensorFlow (it has its own thread pool); 1 = the main thread only", group: 'distillation' },
  { key: 'distillBatchSize', flag: 'distill-batch-size', type: 'int', range: atLeastOne, default: 32, arg: 'N', commands: ['server', 'simulate'], help: "the student's batch size", group: 'distillation' },
  { key: 'distillLearningRate', flag: 'distill-learning-rate', type: 'float', range: positive, default: 0.002, arg: 'LR', commands: ['server', 'simulate'], help: "the student's learning rate (Adam)", group: 'distillation' },
  { key: 'distillFill', flag: 'distill-fill', type: 'float', range: { min: 0, max: 1 }, default: 1, arg: 'F', commands: ['server', 'simulate'], help: "while the teacher bank holds fewer rows than the proxy set, the student takes more epochs: at least F × the samples of --distill-epochs over the whole proxy set (0 = --distill-epochs over the bank only)", group: 'distillation' },
  { key: 'distillAugment', flag: 'distill-augment', type: 'boolean', default: false, commands: ['server', 'simulate'], help: 'the student distills on proxy images shifted by up to 2 px and mirrored at random (the teacher labels of the originals)', group: 'distillation' },
  { key: 'uncertainRows', flag: 'uncertain-rows', type: 'float', range: { min: 0, max: 1 }, default: 0.75, arg: 'F', commands: ['server', 'simulate'], help: "share of each round's proxy rows (ensemble) picked where the student's margin (top-1 minus top-2 probability) is smallest; the rest are the rows whose teacher label is oldest (0 = the fixed shuffle's windows, in turn)", group: 'distillation' },
  { key: 'bankDecay', flag: 'bank-decay', type: 'float', range: fraction, default: 0.8, arg: 'D', commands: ['server', 'simulate'], help: "a teacher label's weight per round of age in the student's loss; 1 = no decay", group: 'distillation' },
  { key: 'prevStudentLambda', flag: 'prev-lambda', type: 'float', range: nonNegative, default: 0, arg: 'L', commands: ['server'], help: 'λ of the previous-student term λ·T²·KL(p_prev ‖ p_student) (continual rounds); 0 = off', group: 'distillation' },

  // ---- privacy (docs/privacy.md)
  { key: 'privacy.epsilon', flag: 'dp-epsilon', type: 'float', range: nonNegative, default: 0, arg: 'E', commands: ['server', 'simulate'], help: "differential privacy: each client's ε at --dp-delta after --dp-rounds uploads; the noise multiplier is calibrated to it (0 = no DP, unless --dp-noise-multiplier)", group: 'privacy' },
  { key: 'privacy.noiseMultiplier', flag: 'dp-noise-multiplier', type: 'float', range: nonNegative, default: 0, arg: 'Z', commands: ['server', 'simulate'], help: 'the Gaussian noise multiplier z itself (noise std = z × the upload\'s L2 sensitivity), instead of --dp-epsilon', group: 'privacy' },
  { key: 'privacy.delta', flag: 'dp-delta', type: 'float', range: { min: 0, minOpen: true, max: 1, maxOpen: true }, default: 1e-5, arg: 'D', commands: ['server', 'simulate'], help: 'δ of the (ε, δ) guarantee', group: 'privacy' },
  { key: 'privacy.clip', flag: 'dp-clip', type: 'float', range: positive, default: 1, arg: 'C', commands: ['server', 'simulate'], help: 'L2 clip: of each probability row (distillation), of the whole weight update (fedavg)', group: 'privacy' },
  { key: 'privacy.rounds', flag: 'dp-rounds', type: 'int', range: nonNegative, default: 0, arg: 'N', defaultText: '--rounds', commands: ['server', 'simulate'], help: 'uploads per client the --dp-epsilon calibration plans for', group: 'privacy' },
  { key: 'privacy.budget', flag: 'dp-budget', type: 'float', range: nonNegative, default: 0, arg: 'E', defaultText: '--dp-epsilon', commands: ['server', 'simulate'], help: 'a client whose ε would pass this is not selected again (clients enforce their own budget too)', group: 'privacy' },
  { key: 'privacy.noise', flag: 'dp-noise', type: 'enum', values: ['local', 'central'], default: 'local', arg: 'WHERE', commands: ['server', 'simulate'], help: "local: each client adds all the noise (ε holds against the server too); central: the noise is split over a round's contributors and holds only for the aggregate and the student (a trusted server, as DP-FedAvg). Secure aggregation splits it without trusting the server", group: 'privacy' },
  { key: 'privacy.temperature', flag: 'dp-temperature', type: 'float', range: positive, default: 1, arg: 'T', commands: ['server', 'simulate'], help: 'softmax temperature of the noisy probabilities clients upload', group: 'privacy' },
  { key: 'secureAggregation.enabled', flag: 'secure-aggregation', type: 'boolean', default: false, commands: ['server', 'simulate'], help: "the server learns only the sum of the clients' teacher probabilities (pairwise masks, dropouts recovered by secret sharing); aggregator mean-probs or confidence", group: 'privacy' },
  { key: 'secureAggregation.threshold', flag: 'secagg-threshold', type: 'float', range: { min: 0, max: 1, maxOpen: true }, default: 0.5, arg: 'F', commands: ['server', 'simulate'], help: 'shares needed to unmask: t = max(2, ⌊F·K⌋ + 1) of the K selected; a round needs t clients at every step', group: 'privacy' },
  { key: 'secureAggregation.phaseTimeoutS', flag: 'secagg-phase-timeout', type: 'float', range: positive, default: 30, arg: 'S', commands: ['server', 'simulate'], help: 'how long each key-exchange and unmasking step waits for the clients that have not answered', group: 'privacy' },

  // ---- online strategy
  { key: 'publishEverySteps', flag: 'publish-steps', type: 'int', range: atLeastOne, default: 100, arg: 'K', commands: ['server', 'simulate'], help: 'online: publish a student version every K training steps ...', group: 'online' },
  { key: 'publishEverySeconds', flag: 'publish-seconds', type: 'float', range: positive, default: 30, arg: 'S', commands: ['server', 'simulate'], help: '... or every S seconds, whichever comes first', group: 'online' },
  { key: 'stepsPerUpload', flag: 'steps-per-upload', type: 'int', range: atLeastOne, default: 24, arg: 'N', commands: ['server', 'simulate'], help: 'online: student training steps owed per accepted upload', group: 'online' },
  { key: 'stalenessExponent', flag: 'staleness-exponent', type: 'float', range: nonNegative, default: 0.5, arg: 'A', commands: ['server', 'simulate'], help: 'online: an upload weighs (1 + staleness)^−A in the teacher', group: 'online' },
  { key: 'maxStaleness', flag: 'max-staleness', type: 'int', range: nonNegative, default: 30, arg: 'N', commands: ['server', 'simulate'], help: "online: uploads more than N versions behind are refused with 'resync'", group: 'online' },

  // ---- limits
  { key: 'frameLimits.hello', flag: 'max-hello-bytes', type: 'int', range: { min: 1024 }, default: 64 * 1024, arg: 'B', commands: ['server'], help: 'largest hello frame accepted', group: 'limits' },
  { key: 'frameLimits.logits', flag: 'max-logits-bytes', type: 'int', range: { min: 1024 }, default: 16 * 1024 * 1024, arg: 'B', commands: ['server'], help: 'largest logits upload accepted', group: 'limits' },
  { key: 'frameLimits.weights', flag: 'max-weights-bytes', type: 'int', range: { min: 1024 }, default: 64 * 1024 * 1024, arg: 'B', commands: ['server'], help: 'largest weights upload accepted (fedavg)', group: 'limits' },
  { key: 'maxClients', flag: 'max-clients', type: 'int', range: atLeastOne, default: 10_000, arg: 'N', commands: ['server'], help: "registered client ids at most; a hello for a new id beyond is refused 'too-many-clients' (known ids still reconnect)", group: 'limits' },
  { key: 'helloTimeoutS', flag: 'hello-timeout-s', type: 'float', range: positive, default: 30, arg: 'S', commands: ['server'], help: "a connection that has not been welcomed (a valid hello) within S seconds is closed ('hello-timeout')", group: 'limits' },
  { key: 'idleAfterRounds', flag: 'idle-after-rounds', type: 'int', range: nonNegative, default: 3, arg: 'N', commands: ['server'], help: 'a client selected N rounds (online: tasks) in a row without uploading is idle: not selected, sent nothing, until a hello or an upload; 0 = never', group: 'limits' },
  { key: 'clientRetentionS', flag: 'client-retention-s', type: 'float', range: nonNegative, default: 7 * 24 * 3600, arg: 'S', commands: ['server'], help: 'offline clients not seen for S seconds leave the registry (and the next checkpoint); 0 = keep forever', group: 'limits' },
  { key: 'statusClients', flag: 'status-clients', type: 'int', range: nonNegative, default: 50, arg: 'N', commands: ['server'], help: '/status and the dashboard list the N most recently active clients (counts cover all)', group: 'limits' },
  { key: 'rateFramesPerS', flag: 'rate-frames-per-s', type: 'float', range: positive, default: 10, arg: 'R', commands: ['server'], help: "frames one connection may send per second on average; over it a frame is refused 'rate-limited'", group: 'limits' },
  { key: 'rateBurst', flag: 'rate-burst', type: 'int', range: atLeastOne, default: 20, arg: 'N', commands: ['server'], help: '... in bursts of up to N frames', group: 'limits' },
  { key: 'helloIntervalS', flag: 'hello-interval-s', type: 'float', range: nonNegative, default: 10, arg: 'S', commands: ['server'], help: 'a connection may say hello once per S seconds on average (bursts of 5); 0 = no hello limit beyond the frame rate', group: 'limits' },
  { key: 'errorRepliesPerS', flag: 'error-replies-per-s', type: 'float', range: positive, default: 10, arg: 'R', commands: ['server'], help: 'error frames sent to one connection per second at most (bursts of 2R); further refusals are not answered', group: 'limits' },
  { key: 'floodLimit', flag: 'flood-limit', type: 'int', range: atLeastOne, default: 100, arg: 'N', commands: ['server'], help: 'a connection with more than N frames refused for rate within 10 s is closed', group: 'limits' },
  { key: 'authFailures', flag: 'auth-failures', type: 'int', range: nonNegative, default: 10, arg: 'N', commands: ['server'], help: 'failed authentications (handshake token, resume token) an address may make before back-off', group: 'limits' },
  { key: 'authBackoffS', flag: 'auth-backoff-s', type: 'float', range: positive, default: 1, arg: 'S', commands: ['server'], help: 'first back-off after those; doubles with each further failure ...', group: 'limits' },
  { key: 'authBackoffMaxS', flag: 'auth-backoff-max-s', type: 'float', range: positive, default: 600, arg: 'S', commands: ['server'], help: "... up to S seconds (also how long an address's failures are remembered)", group: 'limits' },
  { key: 'addressTableSize', flag: 'address-table-size', type: 'int', range: atLeastOne, default: 10_000, arg: 'N', commands: ['server'], help: 'remote addresses whose failures are tracked at most (least recent forgotten first)', group: 'limits' },
];
