import { hostname } from 'node:os';
import { initBackend, type BackendPreference } from '../../shared/compute/backend.ts';
import { subset, type Dataset } from '../../shared/data/dataset.ts';
import { splitForFederation } from '../../shared/data/federated-split.ts';
import type { ModelKind } from '../../shared/models/builders.ts';
import type { LogitCodecName } from '../../shared/tensor/logit-codec.ts';
import { renderHelp, type FashionMnistPart } from '../../shared/settings/index.ts';
import { readCommandLine } from '../../server/command-line.ts';
import { createLogger, type LogOptions } from '../../server/logger.ts';
import { loadFashionMnist } from '../../datasets/fashion-mnist.ts';
import { FedistillClient, FedistillError } from '../client.ts';
import type { EndMsg } from '../../shared/protocol/messages.ts';
import { readFileSync } from 'node:fs';
import { FileProxyCache } from './file-proxy-cache.ts';
import { ResumeTokenFile } from './resume-token-file.ts';
import { trustCa } from './tls.ts';
import { loadPrivateData } from './private-data.ts';
import { fitProxySize } from '../../datasets/proxy-size.ts';

const TITLE = 'fedistill client — train on private data, share only proxy-set logits';

/** The client's settings (rows of the settings table that name 'client'). */
interface ClientCliSettings {
  url: string;
  token: string;
  id?: string;
  model: ModelKind;
  codec: LogitCodecName;
  topK?: number;
  dataDir?: string;
  /** Parsed and checked by the settings table (I < N, α > 0; α defaults to simulate's --alpha). */
  fashionMnistPart?: FashionMnistPart;
  proxySize?: number;
  clientEvalSize: number;
  classes?: string[];
  seed: number;
  proxyCache?: string;
  /** --ca: PEM file of a private CA that signed the server's certificate. */
  ca?: string;
  resumeDir?: string;
  giveUpAfterS: number;
  'clientPrivacy.epsilon': number;
  'clientPrivacy.delta': number;
  backend: BackendPreference;
  logLevel: string;
  logFormat: LogOptions['format'];
}

export async function main(argv: string[]): Promise<void> {
  // Every flag, env var, default, range and relation comes from the settings table (shared/settings/).
  const cmd = readCommandLine('client', argv);
  if (cmd.help) return void console.log(renderHelp('client', TITLE));
  const v = cmd.values as unknown as ClientCliSettings;
  const id = v.id ?? `${hostname()}-${process.pid}`;
  const logger = createLogger({ level: v.logLevel, format: v.logFormat, name: id });
  const log = (m: string) => logger.info(m);
  await initBackend({ prefer: v.backend, log });
  // A private CA (--ca) is trusted by the socket and by every HTTP request this client makes (/federation, the proxy set).
  let tls: ReturnType<typeof trustCa> | Record<string, never> = {};
  if (v.ca) {
    let pem: string;
    try {
      pem = readFileSync(v.ca, 'utf8');
    } catch (e) {
      throw new Error(`--ca ${v.ca}: ${(e as Error).message}`);
    }
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new Error(`--ca ${v.ca}: no PEM certificate in it`);
    tls = trustCa(pem);
  }

  let data: Dataset;
  let evalSet: Dataset | null = null;
  if (v.dataDir) {
    ({ train: data, eval: evalSet } = await loadPrivateData(v.dataDir, { classes: v.classes, serverUrl: v.url, fetch: tls.fetch, log }));
  } else if (v.fashionMnistPart) {
    // The Dirichlet split `fedistill simulate` makes with the same seed, proxy size and α, so that client I here
    // holds exactly the rows of simulate's client I.
    const { index: i, of: n, alpha } = v.fashionMnistPart;
    const fm = await loadFashionMnist({ log });
    // The server's default proxy size is scaled the same way on a smaller (subset) training set.
    const proxySize = fitProxySize({ requested: v.proxySize, trainCount: fm.train.count, isSubset: fm.isSubset, log, flag: '--proxy-size' });
    const split = splitForFederation(fm.train, { proxySize, numClients: n, partition: 'dirichlet', alpha, shardsPerClient: 2, seed: v.seed });
    data = subset(fm.train, split.clients[i]);
    // The first --client-eval test rows, as simulate's clients: the mean "client acc" of a round is then the same.
    const evalRows = Math.min(v.clientEvalSize, fm.test.count);
    evalSet = evalRows > 0 ? subset(fm.test, Uint32Array.from({ length: evalRows }, (_, r) => r)) : null;
  } else {
    throw new Error('give --data-dir DIR (private idx files) or --fashion-mnist-part I/N');
  }
  log(`private data: ${data.count} labelled samples (never sent)`);

  // The id's resume token survives a restart of this process: the server refuses a known id without it.
  const resume = new ResumeTokenFile(v.url, id, v.resumeDir);
  const budget = v['clientPrivacy.epsilon'];
  const privacy = budget > 0 ? { epsilon: budget, delta: v['clientPrivacy.delta'], state: resume.readPrivacy() } : undefined;
  const client = new FedistillClient({
    privacy,
    ...tls,
    resumeToken: resume.read(),
    url: v.url,
    token: v.token,
    clientId: id,
    model: v.model,
    codec: v.codec,
    topK: v.topK,
    data,
    evalSet,
    proxyCache: new FileProxyCache(v.proxyCache),
    seed: v.seed,
    giveUpAfterMs: v.giveUpAfterS * 1000, // --give-up-after S; 0 = never give up
    log,
  });
  client.on('welcome', (w) => {
    try {
      resume.write(w.resumeToken);
    } catch (e) {
      logger.warn(`could not keep the resume token in ${resume.file}: ${(e as Error).message}`);
    }
  });
  client.on('round-done', (r) =>
    log(`round ${r.round}: trained ${r.stats.trainSeconds.toFixed(1)} s (train acc ${(r.stats.trainAccuracy * 100).toFixed(1)}%` +
      `${r.stats.evalAccuracy !== undefined ? `, eval acc ${(r.stats.evalAccuracy * 100).toFixed(1)}%` : ''}), uploaded ${r.uploadBytes} B` +
      `${r.adoptedStudent ? ', started from the student' : ''}${r.digestedConsensus ? ', digested consensus' : ''}`),
  );
  client.on('privacy', (p) => {
    try {
      resume.writePrivacy(p.state);
    } catch (e) {
      // The round is counted before it trains: without the count on disk, a restart would spend the budget again.
      console.error(`fedistill client ${id}: could not keep the privacy state in ${resume.privacyFile} (${(e as Error).message}); stopping before the upload`);
      client.stop();
      process.exit(1);
    }
  });
  client.on('declined', (d) => logger.warn(`round ${d.round} declined: ${d.reason}`));
  client.on('round-result', (r) => log(`server finished round ${r.round}${r.studentAccuracy !== undefined ? `: student acc ${(r.studentAccuracy * 100).toFixed(2)}%` : ''}`));
  client.on('disconnected', (reason) => log(`disconnected (${reason}); reconnecting`));
  const stop = () => {
    client.stop();
    process.exit(0);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  // Either way one line says how it ended: exit 0 at the federation's end, 1 (with the reason) when it can't go on.
  let end: EndMsg;
  try {
    const w = await client.start();
    log(`joined ${v.url}: strategy ${w.strategy}, student ${w.student.kind}, proxy ${w.proxy.id} (${w.proxy.count})`);
    end = await client.finished();
  } catch (e) {
    console.error(`fedistill client ${id}: ${e instanceof FedistillError ? `${e.code}: ` : ''}${(e as Error).message}`);
    process.exit(1);
  }
  const acc = end.studentAccuracy !== undefined ? `student accuracy ${(end.studentAccuracy * 100).toFixed(2)}%` : 'no student accuracy (the server has no validation set)';
  const where = end.studentPath ? `; student model: ${new URL(end.studentPath, v.url)} (tf.loadLayersModel)` : '';
  log(end.reason === 'completed' ? `federation complete after round ${end.round}: ${acc}${where}` : `the server shut down after round ${end.round}: ${acc}${where}`);
  process.exit(0);
}
