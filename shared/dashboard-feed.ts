/**
 * What the live dashboard's read-only socket.io namespace sends (server/dashboard/feed.ts) and the page reads
 * (web/dashboard.ts). It lives in shared/ so the browser code types its data without importing server modules (and,
 * through them, Node's types): the isomorphic check (tsconfig.browser.json) compiles web/ without @types/node.
 */

/** One completed round (online: one published student version), as kept in the coordinator's history. */
export interface RoundSummary {
  round: number;
  status: 'completed' | 'no-quorum' | 'failed';
  strategy: string;
  selected: number;
  participants: number;
  /** Selected clients that disconnected or missed the deadline. */
  dropped: string[];
  uplinkBytes: number;
  downlinkBytes: number;
  studentVersion: number;
  studentAccuracy?: number;
  studentPerClassAccuracy?: number[];
  distillLoss?: number;
  aggregateSeconds: number;
  meanClientTrainSeconds: number;
  meanClientEvalAccuracy?: number;
  seconds: number;
  startedAt: number;
  /** Online: training steps since the previous version, and the staleness (in versions) of the uploads taken in. */
  trainSteps?: number;
  staleness?: { count: number; mean: number; p50: number; p90: number; max: number };
  /** With differential privacy: ε of this round's release per participant, and the federation's ε after it (max over clients). */
  privacy?: { epsilonRound: number; epsilon: number };
  /**
   * With secure aggregation: contributors to the unmasked sum; seconds from the round's close to the sum (reveals and
   * unmasking; the key exchange overlaps local training); bytes of the key exchange and reveal frames, both ways.
   */
  secureAggregation?: { contributors: number; seconds: number; keyBytes: number };
}

/** /status's `privacy`: the differential-privacy setting and what it has cost so far (docs/privacy.md). */
export interface PrivacyStatus {
  mode: 'local' | 'central' | 'distributed';
  delta: number;
  noiseMultiplier: number;
  effectiveNoiseMultiplier: number;
  clip: number;
  epsilonPerRound: number;
  /** The federation's ε so far: the most any one client has spent. */
  epsilon: number;
  budget: number;
  /** Clients that one more upload would take past the budget (no longer selected). */
  exhaustedClients: number;
}

export type Phase = 'closed' | 'aggregate' | 'evaluate' | 'done';

export interface TimelineEvent {
  kind: 'upload' | Phase;
  at: number;
  clientId?: string;
  bytes?: number;
  staleness?: number;
}

/** The current (or, between rounds, the last) round as it happened. Times are epoch milliseconds. */
export interface Timeline {
  round: number;
  openedAt: number;
  deadline: number | null;
  selected: string[];
  events: TimelineEvent[];
}

/** A registered client as the coordinator's status() lists it (no resume token: nothing secret goes to viewers). */
export interface DashboardClient {
  id: string;
  model: string;
  backend: string | undefined;
  numSamples: number;
  connected: boolean;
  /** Selected --idle-after-rounds rounds in a row without uploading: not selected again until a hello or an upload. */
  idle?: boolean;
  lastSeen: string | null;
  lastUploadAt: string | null;
  lastUploadRound: number | null;
  lastUploadStaleness: number | null;
  /** With differential privacy: the ε this client has spent so far (the server's count, at the server's δ). */
  epsilon?: number;
}

/** The round in progress: how many were selected, how many uploads are in, and its deadline (ISO time). */
export interface OpenRoundStatus {
  round: number;
  selected: number;
  received: number;
  deadline: string;
}

export interface ClientsUpdate {
  at: number;
  round: number;
  studentVersion: number;
  openRound: OpenRoundStatus | null;
  clients: DashboardClient[];
}

export interface DashboardSnapshot extends Record<string, unknown> {
  at: number;
  /** The aggregator's describe(): strategy, student, backend, proxy, config (secrets hidden). */
  server: Record<string, unknown>;
  status: ClientsUpdate;
  history: RoundSummary[];
  timeline: Timeline | null;
  tasks: number[][] | null;
}
