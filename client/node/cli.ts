import { parseArgs } from 'node:util';
import { hostname } from 'node:os';
import { initBackend } from '../../shared/compute/backend.ts';
import { subset, type Dataset } from '../../shared/data/dataset.ts';
import { splitForFederation } from '../../shared/data/federated-split.ts';
import { MODEL_KINDS, type ModelKind } from '../../shared/models/builders.ts';
import { LOGIT_CODECS, type LogitCodecName } from '../../shared/tensor/logit-codec.ts';
import { loadFashionMnist } from '../../server/data/fashion-mnist.ts';
import { FedistillClient } from '../client.ts';
import { FileProxyCache } from './file-proxy-cache.ts';
import { loadPrivateData } from './private-data.ts';

const HELP = `fedistill client — train on private data, share only proxy-set logits

  --url URL              aggregator URL (env FEDISTILL_URL)                  [http://127.0.0.1:8080]
  --token T              the server's client token (env FEDISTILL_TOKEN)
  --id ID                stable client id                                    [hostname-pid]
  --model M              ${MODEL_KINDS.join(' | ')} (may differ from the server's student)  [cnn]
  --codec C              ${LOGIT_CODECS.join(' | ')}                            [fp16]
  --data-dir DIR         private data: train-images-idx3-ubyte(.gz) + train-labels-idx1-ubyte(.gz)
                         (+ optional t10k-* to report local accuracy)
  --fashion-mnist-part I/N[:ALPHA]
                         instead of --data-dir, for test benches: take client I of N of the same
                         Dirichlet split 'fedistill simulate' makes (ALPHA default 0.5)
  --proxy-size N         with --fashion-mnist-part: the server's proxy size   [10000]
  --seed N               [1]
  --proxy-cache DIR      proxy-set cache                                      [~/.cache/fedistill/proxy]
  --backend B            auto | tensorflow-gpu | tensorflow | wasm | cpu (env FEDISTILL_BACKEND)
`;

export async function main(argv: string[]): Promise<void> {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      url: { type: 'string', default: process.env.FEDISTILL_URL ?? 'http://127.0.0.1:8080' },
      token: { type: 'string', default: process.env.FEDISTILL_TOKEN ?? '' },
      id: { type: 'string', default: `${hostname()}-${process.pid}` },
      model: { type: 'string', default: 'cnn' },
      codec: { type: 'string', default: 'fp16' },
      'data-dir': { type: 'string' },
      'fashion-mnist-part': { type: 'string' },
      'proxy-size': { type: 'string', default: '10000' },
      seed: { type: 'string', default: '1' },
      'proxy-cache': { type: 'string' },
      backend: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (v.help) return void console.log(HELP);
  if (!MODEL_KINDS.includes(v.model as ModelKind)) throw new Error(`--model must be one of ${MODEL_KINDS.join(', ')}`);
  if (!LOGIT_CODECS.includes(v.codec as LogitCodecName)) throw new Error(`--codec must be one of ${LOGIT_CODECS.join(', ')}`);
  const log = (m: string) => console.log(`${new Date().toISOString()} [${v.id}] ${m}`);
  await initBackend({ prefer: v.backend as never, log });

  let data: Dataset;
  let evalSet: Dataset | null = null;
  if (v['data-dir']) {
    ({ train: data, eval: evalSet } = await loadPrivateData(v['data-dir']));
  } else if (v['fashion-mnist-part']) {
    const m = /^(\d+)\/(\d+)(?::([\d.]+))?$/.exec(v['fashion-mnist-part']);
    if (!m) throw new Error('--fashion-mnist-part must look like I/N or I/N:ALPHA');
    const [i, n, alpha] = [Number(m[1]), Number(m[2]), Number(m[3] ?? 0.5)];
    if (i >= n) throw new Error(`client index ${i} must be below ${n}`);
    const fm = await loadFashionMnist({ log });
    const split = splitForFederation(fm.train, { proxySize: Number(v['proxy-size']), numClients: n, partition: 'dirichlet', alpha, shardsPerClient: 2, seed: Number(v.seed) });
    data = subset(fm.train, split.clients[i]);
    evalSet = fm.test;
  } else {
    throw new Error('give --data-dir DIR (private idx files) or --fashion-mnist-part I/N');
  }
  log(`private data: ${data.count} labelled samples (never sent)`);

  const client = new FedistillClient({
    url: v.url,
    token: v.token,
    clientId: v.id,
    model: v.model as ModelKind,
    codec: v.codec as LogitCodecName,
    data,
    evalSet,
    proxyCache: new FileProxyCache(v['proxy-cache']),
    seed: Number(v.seed),
    log,
  });
  client.on('round-done', (r) =>
    log(`round ${r.round}: trained ${r.stats.trainSeconds.toFixed(1)} s (train acc ${(r.stats.trainAccuracy * 100).toFixed(1)}%` +
      `${r.stats.evalAccuracy !== undefined ? `, eval acc ${(r.stats.evalAccuracy * 100).toFixed(1)}%` : ''}), uploaded ${r.uploadBytes} B` +
      `${r.adoptedStudent ? ', started from the student' : ''}${r.digestedConsensus ? ', digested consensus' : ''}`),
  );
  client.on('round-result', (r) => log(`server finished round ${r.round}${r.studentAccuracy !== undefined ? `: student acc ${(r.studentAccuracy * 100).toFixed(2)}%` : ''}`));
  client.on('disconnected', (reason) => log(`disconnected (${reason}); reconnecting`));
  const w = await client.start();
  log(`joined ${v.url}: strategy ${w.strategy}, student ${w.student.kind}, proxy ${w.proxy.id} (${w.proxy.count})`);
  const stop = () => {
    client.stop();
    process.exit(0);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
