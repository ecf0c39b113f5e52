/**
 * The browser entry of the client SDK (built by `npm run build` into dist/browser/fedistill.js and served by the
 * aggregator at /sdk/fedistill.js): the same FedistillClient as in Node, plus what a page needs around it.
 */
export { FedistillClient, FedistillError, type FedistillErrorCode, type ClientOptions, type RoundDone, type RoundProgress } from './client.ts';
export { initBrowserBackend, browserBackendInfo, type BrowserBackendInfo, type BrowserBackendOptions } from './browser-backend.ts';
export { IndexedDbProxyCache } from './indexeddb-proxy-cache.ts';
export { MemoryProxyCache, type ProxyCache } from './proxy-cache.ts';
export { datasetFromImages, demoShard, fetchDemoShard, holdOut, labelFromPath, type LabelledImage } from './browser-data.ts';
export type { Dataset } from '../shared/data/dataset.ts';
// The models and the local training step, for pages that measure or train outside a federation.
export { buildModel, MODEL_KINDS, type ModelKind } from '../shared/models/builders.ts';
export { trainSupervised, evaluateAccuracy } from '../shared/models/training.ts';
export type { WelcomeMsg, RoundMsg, RoundResultMsg, EndMsg } from '../shared/protocol/messages.ts';
export * as tf from '@tensorflow/tfjs';
