/**
 * `fedistill/client/node`: the client parts that need Node — the proxy-set cache on disk and private data read from a
 * directory of idx files. The SDK itself (FedistillClient) is `fedistill/client`, the same in Node and browsers.
 */
export { FileProxyCache } from './file-proxy-cache.ts';
export { loadPrivateData } from './private-data.ts';
export { fetchWithCa, trustCa, type FetchLike } from './tls.ts';
export { ResumeTokenFile } from './resume-token-file.ts';
