/**
 * `import … from 'fedistill'`: the aggregator as a library — createAggregator (fastify + socket.io on one port), its
 * configuration (types, defaults, strategy names), the logger, the coordinator and its state stores, and the shared
 * pieces an embedder needs to hand it data (Dataset, splits, idx parsing) and to pick a compute backend.
 * Datasets on disk (Fashion-MNIST, image folders) are `fedistill/datasets`; the client SDK is `fedistill/client`.
 */
export * from './app.ts';
export * from './config.ts';
export * from './logger.ts';
export {
  createCoordinator,
  OnlineCoordinator,
  RoundCoordinator,
  type ClientRecord,
  type Coordinator,
  type CoordinatorOptions,
  type CoordinatorState,
  type CoordinatorStatus,
  type OnlineStats,
  type RoundSummary,
  type Transport,
} from './coordinator.ts';
export { FileCheckpointStore, MemoryCheckpointStore, type CheckpointStore } from './state/checkpoint-store.ts';
export { ClientAuth, type AuthMode, type Identity } from './auth.ts';
export { CredentialStore, type IssuedCredential } from './credentials/store.ts';
export { FileUploadJournal, MemoryUploadJournal, type JournalRecord, type UploadJournal } from './state/upload-journal.ts';
export type {
  AggregateReport,
  AnyStrategy,
  EvalReport,
  OnlineStrategy as OnlineStrategyApi,
  Participant,
  RoundContext,
  Strategy,
  Update,
} from './strategies/strategy.ts';
export {
  DASHBOARD_NAMESPACE,
  type ClientsUpdate,
  type DashboardClient,
  type DashboardSnapshot,
  type Phase,
  type Timeline,
  type TimelineEvent,
} from './dashboard/feed.ts';
export { AGGREGATORS, type AggregatorName } from '../shared/distill/aggregators.ts';
export { buildModel, MODEL_KINDS, type ModelKind } from '../shared/models/builders.ts';
export {
  backendInfo,
  BACKEND_PREFERENCES,
  initBackend,
  type BackendInfo,
  type BackendPreference,
  type InitBackendOptions,
} from '../shared/compute/backend.ts';
export { subset, type Dataset } from '../shared/data/dataset.ts';
export { proxyRows, splitForFederation, type FederatedSplit, type PartitionKind } from '../shared/data/federated-split.ts';
export { datasetFromIdx, datasetToIdx, encodeIdx, parseIdx } from '../shared/data/idx.ts';
export { LOGIT_CODECS, type LogitCodecName } from '../shared/tensor/logit-codec.ts';
