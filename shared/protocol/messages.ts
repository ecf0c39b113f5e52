import type { EncodedMatrix, LogitCodecName } from '../tensor/logit-codec.ts';
import type { ModelKind } from '../models/builders.ts';

/** Bumped on any incompatible change to a message below; the server refuses other versions at `hello`. */
export const PROTOCOL_VERSION = 1;

/** A tensor on the wire: shape plus raw little-endian float32 values (msgpackr carries typed arrays as binary). */
export interface WireTensor {
  name: string;
  shape: number[];
  data: Float32Array;
}

/** Student (or FedAvg global) weights as they travel downlink and are checkpointed. */
export interface WireModel {
  kind: ModelKind;
  version: number;
  weights: WireTensor[];
}

// ---- client → server ----

export interface HelloMsg {
  type: 'hello';
  protocol: number;
  /** Stable id chosen by the client so a reconnect is recognised as the same participant. */
  clientId: string;
  model: ModelKind;
  /** Private training-set size: used for sample-count weighting. Only the count travels, never samples. */
  numSamples: number;
  /** Private label histogram (optional; enables label-count-aware weighting). Counts only. */
  classCounts?: number[];
  codec: LogitCodecName;
  /** The secret a previous `welcome` issued for this clientId: lets a reconnect replace a connection still open. */
  resumeToken?: string;
  /** The TensorFlow.js backend the client trains on ('webgpu', 'webgl', 'wasm', 'tensorflow', 'cpu'): for dashboards. */
  backend?: string;
}

export interface LogitsMsg {
  type: 'logits';
  round: number;
  /** The proxy set's content hash: a client on another proxy set is refused. */
  proxyHash: string;
  /** Logits on the round's proxy subset, row i for proxy index round.indices[i]. */
  logits: EncodedMatrix;
  /** Metadata about the local step (scalars only). */
  stats: ClientRoundStats;
}

export interface WeightsMsg {
  type: 'weights';
  round: number;
  numSamples: number;
  weights: WireTensor[];
  stats: ClientRoundStats;
}

export interface ClientRoundStats {
  trainLoss: number;
  trainAccuracy: number;
  trainSeconds: number;
  /** Accuracy on a labelled evaluation set the client holds (simulations), if any. */
  evalAccuracy?: number;
}

// ---- server → client ----

export interface WelcomeMsg {
  type: 'welcome';
  protocol: number;
  clientId: string;
  /** Keep it and send it in later hellos: proves a reconnect is the same client (the token is shared by all). */
  resumeToken: string;
  serverVersion: string;
  strategy: string;
  proxy: ProxyInfo;
  student: { kind: ModelKind; numClasses: number; inputShape: [number, number, number] };
}

export interface ProxyInfo {
  id: string;
  /** sha256 of the proxy images, hex: the cache key. */
  hash: string;
  count: number;
  shape: [number, number, number];
  numClasses: number;
  /** Path on the server's HTTP port that serves the proxy set (binary). */
  path: string;
}

/** What a selected client must do this round (Flower's "configure_fit"). */
export interface RoundMsg {
  type: 'round';
  round: number;
  strategy: string;
  task: 'logits' | 'weights';
  /** Proxy rows to compute logits on (task 'logits'). */
  indices?: Uint32Array;
  localEpochs: number;
  batchSize: number;
  learningRate: number;
  /** Train with the logit-adjusted (label-prior-corrected) loss so uploaded logits are not skewed to local classes. */
  logitAdjust?: boolean;
  /** Weight β of not-true distillation from the received model during local training (FedNTD); 0/absent = off. */
  ntdBeta?: number;
  /** Milliseconds since epoch after which an upload is refused as late. */
  deadline: number;
  /** Weights to start from: the student when the client's architecture matches, the global model for FedAvg. */
  model?: WireModel;
  /** Consensus soft labels (teacher probabilities) from the previous round, for clients whose architecture differs. */
  consensus?: { indices: Uint32Array; probs: EncodedMatrix; temperature: number; epochs: number };
  /**
   * Mutual learning: the student's probabilities at `temperature` on this task's `indices`; the client adds
   * β·T²·KL(p_student ‖ p_client) on those proxy rows to its private loss and keeps its own weights.
   */
  mutual?: { probs: EncodedMatrix; temperature: number; beta: number };
  /** The student version this task was made against (online: the server tags each upload's staleness with it). */
  studentVersion?: number;
}

export interface AckMsg {
  type: 'ack';
  round: number;
  accepted: true;
  bytes: number;
}

export interface ErrorMsg {
  type: 'error';
  code: ErrorCode;
  message: string;
  round?: number;
}

export type ErrorCode =
  | 'bad-frame'
  | 'too-large'
  | 'bad-message'
  | 'protocol-version'
  | 'unauthorized'
  | 'not-registered'
  | 'unknown-round'
  | 'stale-round'
  | 'not-selected'
  | 'duplicate'
  | 'late'
  | 'wrong-proxy'
  | 'bad-shape'
  | 'non-finite'
  /** Online: the upload was computed against a student too many versions old; the next task brings the latest. */
  | 'resync'
  | 'internal';

export interface RoundResultMsg {
  type: 'round-result';
  round: number;
  participants: number;
  studentAccuracy?: number;
}

export type ClientMsg = HelloMsg | LogitsMsg | WeightsMsg;
export type ServerMsg = WelcomeMsg | RoundMsg | AckMsg | ErrorMsg | RoundResultMsg;
