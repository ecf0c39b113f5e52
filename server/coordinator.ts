import type { EventEmitter } from 'node:events';
import type { DashboardClient, OpenRoundStatus, PrivacyStatus, RoundSummary } from '../shared/dashboard-feed.ts';
import type { Dataset } from '../shared/data/dataset.ts';
import type { ClientMsg, EndMsg, ErrorMsg, HelloMsg, ServerMsg, WelcomeMsg } from '../shared/protocol/messages.ts';
import type { ServerConfig } from './config.ts';
import type { Logger } from './logger.ts';
import type { CheckpointStore } from './state/checkpoint-store.ts';
import type { StudentShelf } from './state/student-shelf.ts';
import type { UploadJournal } from './state/upload-journal.ts';
import { isOnline, type AnyStrategy } from './strategies/strategy.ts';
import { OnlineCoordinator } from './online-coordinator.ts';
import { RoundCoordinator } from './round-coordinator.ts';

// The round summary is part of the dashboard's wire types (shared/, so the browser page can use it without Node).
export type { RoundSummary };
export type { ClientRecord, StoredClient } from './coordination/client-registry.ts';
import type { ClientCounts } from './coordination/client-registry.ts';
export type { CoordinatorState, StudentMeta } from './coordination/recovery.ts';
export { RECONNECT_GRACE_MS, RESUME_GRACE_MS } from './coordination/round-scheduler.ts';
export { SHUTDOWN_DRAIN_MS, STUDENT_PATH, type EndDelivery } from './coordination/federation.ts';
export { OnlineCoordinator, RoundCoordinator };

/** How the coordinator reaches a client; the socket.io gateway implements it. Returns the frame's byte size. */
export interface Transport {
  send(clientId: string, msg: ServerMsg): number;
}

export interface CoordinatorOptions {
  config: ServerConfig;
  strategy: AnyStrategy;
  proxy: Dataset;
  proxyInfo: WelcomeMsg['proxy'];
  validation: Dataset | null;
  store: CheckpointStore;
  journal: UploadJournal;
  /** Operator lines (pino); default silent. */
  log?: Logger;
  serverVersion: string;
  /** Where each new student version goes as a tfjs LayersModel (default: kept in memory only). */
  shelf?: StudentShelf;
  /** Class names in index order, for the student's model card (default '0', '1', …). */
  classNames?: string[];
}

/** Online: uploads taken in since the federation began and their staleness in versions (kept across restarts). */
export interface OnlineStats {
  accepted: number;
  staleness: { count: number; mean: number; p50: number; p90: number; max: number };
  /** Index = versions behind. */
  histogram: number[];
  /** Tasks handed out and not yet answered. */
  openTickets: number;
}

/** /status (and the dashboard's client list): nothing secret. */
export interface CoordinatorStatus {
  round: number;
  /** The round in progress (null between rounds, and always for online). */
  openRound: OpenRoundStatus | null;
  /** The most recently active clients (at most --status-clients), newest first; `clientCounts` covers them all. */
  clients: DashboardClient[];
  clientCounts: ClientCounts;
  studentVersion: number;
  lastRound: RoundSummary | null;
  /** Set once the configured rounds are done (clients were sent the final student). */
  ended: { reason: EndMsg['reason']; round: number; studentAccuracy: number | null } | null;
  student: { latest: number | null; kept: number[]; path: string | null };
  /** Only where uploads are taken in asynchronously (the online coordinator): what readers of online series need. */
  online?: OnlineStats;
  /** With differential privacy: the noise, and ε so far (docs/privacy.md). */
  privacy?: PrivacyStatus;
  /** True when rounds use secure aggregation: the server sees only sums of teachers. */
  secureAggregation?: boolean;
}

/**
 * The aggregator's coordinator as app.ts, the gateway, metrics, the dashboard feed and the tests use it, whichever
 * scheduling runs behind it (RoundCoordinator: ensemble, mutual, fedavg; OnlineCoordinator: online).
 *
 * Events (observers; a listener that throws is logged, never fails an upload or a round):
 * 'round-start' (round, selected ids, deadline: rounds only), 'upload' ({clientId, round, bytes, at, staleness?}),
 * 'client' (id, on register/disconnect), 'phase' ({round, phase: 'closed' | 'aggregate' | 'evaluate' | 'done', at}),
 * 'round' (RoundSummary, AggregateReport: a round closed, or online a version published), 'end' (EndMsg),
 * 'finished' (history, once the configured rounds are done) and 'all-told' (EndDelivery, once after 'finished': every
 * registered client was sent the end, or the wait for offline ones ran out, or stop() came first).
 */
export interface Coordinator extends EventEmitter {
  /** Rounds completed (online: the published student version). */
  readonly round: number;
  readonly history: RoundSummary[];
  readonly config: ServerConfig;
  readonly strategy: AnyStrategy;
  readonly shelf: StudentShelf;
  attach(transport: Transport): void;
  /** Newest valid checkpoint plus the journal after it; true if there was anything. Before start(). */
  restore(): Promise<boolean>;
  /**
   * A hello: registers its client (throws ProtocolError to refuse) and returns the welcome to send. `vouched`: the
   * connection's per-client credential names this id, so it may take the id back while offline without a resume token.
   */
  register(hello: HelloMsg, o?: { vouched?: boolean }): WelcomeMsg;
  /** After the welcome went out: `end` if the federation is over, else the client's open task again, if any. */
  resumeIfSelected(clientId: string): void;
  disconnected(clientId: string): void;
  /** An upload: throws ProtocolError to refuse it; returns the accepted frame size (acked by the gateway). */
  submit(clientId: string, msg: ClientMsg, bytes: number): number;
  /** Run rounds (or the online loop) until the configured number is done or stop(). */
  start(): Promise<void>;
  /** Stop, tell every connected client `end`, and give them a moment to read it. */
  stop(): Promise<void>;
  status(): CoordinatorStatus;
  errorFor(e: unknown, round?: number): ErrorMsg;
}

/** Rounds or no rounds is the one scheduling choice, and the strategy makes it. */
export function createCoordinator(o: CoordinatorOptions): Coordinator {
  return isOnline(o.strategy) ? new OnlineCoordinator(o) : new RoundCoordinator(o);
}
