/**
 * A simulation worker process: hosts some of the simulated clients, each with its own socket.io connection and its
 * own private partition, loaded here from the dataset files (the parent only says which rows). One process per core
 * because tfjs-wasm is single-threaded in Node.
 */
import { FedistillClient } from '../client/client.ts';
import { FileProxyCache } from '../client/node/file-proxy-cache.ts';
import { initBackend } from '../shared/compute/backend.ts';
import { subset, type Dataset } from '../shared/data/dataset.ts';
import type { ModelKind } from '../shared/models/builders.ts';
import type { LogitCodecName } from '../shared/tensor/logit-codec.ts';
import { loadFromDir } from '../datasets/fashion-mnist.ts';
import { makeAttacker, type AttackSpec } from './attacks.ts';

export interface WorkerClientSpec {
  clientId: string;
  model: ModelKind;
  codec: LogitCodecName;
  topK?: number;
  rows: number[];
  /** Emulated device slowness (1 = as fast as this machine). */
  slowdown: number;
  /** Continual scenarios: the client's private rows during each task (round r trains on task ⌊(r−1)/roundsPerTask⌋). */
  taskRows?: number[][];
  /** This client attacks the federation (simulate --attack); absent = honest. */
  attack?: AttackSpec;
}

export interface WorkerStart {
  type: 'start';
  url: string;
  token: string;
  dataDir: string;
  clients: WorkerClientSpec[];
  evalSize: number;
  seed: number;
  proxyCacheDir?: string;
  backend?: string;
  roundsPerTask?: number;
  /**
   * With DP: every client's own budget (ClientOptions.privacy). `epsilon` null = no limit (only counting): IPC is
   * JSON, which has no Infinity.
   */
  privacy?: { epsilon: number | null; delta: number; trustAggregator?: boolean };
}

export type WorkerReport =
  | { type: 'ready'; backend: string; clients: string[] }
  | { type: 'round-done'; clientId: string; round: number; uploadBytes: number; trainSeconds: number; evalAccuracy?: number; adopted: boolean; digested: boolean }
  | { type: 'server-error'; clientId: string; code: string; message: string }
  | { type: 'privacy'; clientId: string; round: number; epsilon: number; epsilonRound: number }
  | { type: 'declined'; clientId: string; round: number; reason: string }
  | { type: 'fatal'; message: string };

const send = (m: WorkerReport) => process.send?.(m);

let clients: FedistillClient[] = [];

process.on('message', async (m: WorkerStart | { type: 'stop' }) => {
  if (m.type === 'stop') {
    clients.forEach((c) => c.stop());
    setTimeout(() => process.exit(0), 50);
    return;
  }
  try {
    const backend = await initBackend({ prefer: (m.backend as never) ?? undefined, log: () => {} });
    const { train, test } = await loadFromDir(m.dataDir);
    const evalSet: Dataset | null = m.evalSize > 0 ? subset(test, Uint32Array.from({ length: Math.min(m.evalSize, test.count) }, (_, i) => i)) : null;
    const cache = m.proxyCacheDir ? new FileProxyCache(m.proxyCacheDir) : undefined;
    clients = m.clients.map((spec) => {
      // An attacker is the same client with its labels and/or what it tells the server changed (attacks.ts).
      const attacker = spec.attack ? makeAttacker(spec.attack, spec.clientId) : null;
      const mine = new WeakMap<Dataset, Dataset>(); // one relabelled copy per task's data, not one per round
      const own = (d: Dataset) => (attacker ? (mine.get(d) ?? (mine.set(d, attacker.data(d)), mine.get(d)!)) : d);
      const dataAt = spec.taskRows ? taskData(train, spec.taskRows, m.roundsPerTask!) : undefined;
      return new FedistillClient({
        url: m.url,
        token: m.token,
        clientId: spec.clientId,
        model: spec.model,
        codec: spec.codec,
        topK: spec.topK,
        data: own(subset(train, spec.taskRows?.[0] ?? spec.rows)),
        dataAt: dataAt && ((round) => own(dataAt(round))),
        outbound: attacker?.outbound,
        evalSet,
        proxyCache: cache,
        seed: m.seed,
        slowdown: spec.slowdown,
        privacy: m.privacy && { epsilon: m.privacy.epsilon ?? Infinity, delta: m.privacy.delta, trustAggregator: m.privacy.trustAggregator },
        log: (msg) => process.env.FEDISTILL_VERBOSE && console.error(`[${spec.clientId}] ${msg}`),
      });
    });
    for (const c of clients) {
      const id = c.clientId;
      c.on('round-done', (r) =>
        send({ type: 'round-done', clientId: id, round: r.round, uploadBytes: r.uploadBytes, trainSeconds: r.stats.trainSeconds, evalAccuracy: r.stats.evalAccuracy, adopted: r.adoptedStudent, digested: r.digestedConsensus }),
      );
      c.on('server-error', (e) => send({ type: 'server-error', clientId: id, code: e.code, message: e.message }));
      c.on('privacy', (p) => send({ type: 'privacy', clientId: id, round: p.round, epsilon: p.epsilon, epsilonRound: p.epsilonRound }));
      c.on('declined', (d) => send({ type: 'declined', clientId: id, round: d.round, reason: d.reason }));
    }
    await Promise.all(clients.map((c) => c.start()));
    send({ type: 'ready', backend: backend.name, clients: m.clients.map((c) => c.clientId) });
  } catch (e) {
    send({ type: 'fatal', message: (e as Error).stack ?? String(e) });
    process.exit(1);
  }
});

process.on('disconnect', () => process.exit(0));

/** The client's private data for round r: its rows of the task r falls in, built once per task. */
function taskData(train: Dataset, taskRows: number[][], roundsPerTask: number): (round: number) => Dataset {
  const cache = new Map<number, Dataset>();
  return (round) => {
    const k = Math.min(taskRows.length - 1, Math.floor((round - 1) / roundsPerTask));
    if (!cache.has(k)) cache.set(k, subset(train, taskRows[k]));
    return cache.get(k)!;
  };
}
