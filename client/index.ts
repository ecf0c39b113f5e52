/**
 * `fedistill/client`: the client SDK, the same code in Node and in browsers — FedistillClient (connects, fetches and
 * caches the proxy set, trains on private data, uploads logits), its options and events, the proxy-set caches (in
 * memory, IndexedDB), browser-safe data helpers and backend selection. Node-only parts (a proxy cache on disk, private
 * data from idx files) are `fedistill/client/node`; the one-file browser bundle is `fedistill/browser`.
 */
export { FedistillClient, type ClientEvents, type ClientOptions, type OutboundTransforms, type ReportedCounts, type RoundDone, type RoundProgress, type UploadDraft } from './client.ts';
export { FedistillError, type FedistillErrorCode } from './fedistill-error.ts';
export { MemoryProxyCache, type ProxyCache } from './proxy-cache.ts';
export { IndexedDbProxyCache } from './indexeddb-proxy-cache.ts';
export {
  datasetFromImages,
  demoShard,
  fetchDemoShard,
  holdOut,
  labelFromPath,
  type DemoShardOptions,
  type ImageDecodeOptions,
  type LabelledImage,
} from './browser-data.ts';
export {
  backendInfo,
  BACKEND_PREFERENCES,
  initBackend,
  type BackendInfo,
  type BackendPreference,
  type InitBackendOptions,
} from '../shared/compute/backend.ts';
export { subset, type Dataset } from '../shared/data/dataset.ts';
export { splitForFederation, type FederatedSplit, type PartitionKind } from '../shared/data/federated-split.ts';
export { datasetFromIdx, datasetToIdx, encodeIdx, parseIdx } from '../shared/data/idx.ts';
export { buildModel, MODEL_KINDS, type ModelKind } from '../shared/models/builders.ts';
export { evaluateAccuracy, trainSupervised } from '../shared/models/training.ts';
export { LOGIT_CODECS, type LogitCodecName } from '../shared/tensor/logit-codec.ts';
export type { AckMsg, EndMsg, ErrorMsg, RoundMsg, RoundResultMsg, WelcomeMsg } from '../shared/protocol/messages.ts';
