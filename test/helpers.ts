/** Real parts for tests: a real aggregator on an ephemeral loopback port, real clients, real (small) data. */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { io, type Socket } from 'socket.io-client';
import { FedistillClient, type ClientOptions } from '../client/client.ts';
import { initBackend } from '../shared/compute/backend.ts';
import { subset, type Dataset } from '../shared/data/dataset.ts';
import { splitForFederation } from '../shared/data/federated-split.ts';
import { decodeFrame, encodeFrame } from '../shared/protocol/frame-codec.ts';
import type { ServerMsg } from '../shared/protocol/messages.ts';
import { createAggregator, type Aggregator } from '../server/app.ts';
import type { ServerConfig } from '../server/config.ts';
import { loadSubset } from '../datasets/fashion-mnist.ts';

export const TOKEN = 'test-token-0123456789';

/** For tests that send many (bad) frames on one connection on purpose: per-connection rate limits lifted. */
export const NO_RATE_LIMITS = { rateFramesPerS: 10_000, rateBurst: 10_000, helloIntervalS: 0, errorRepliesPerS: 10_000, floodLimit: 1_000_000 } as const;
/** The operator/viewer token test servers get (startBench, the server fixture): /status, /metrics, the dashboard. */
export const VIEWER_TOKEN = 'test-viewer-token-9876543210';

/** Headers that open /status and /metrics of a server started with VIEWER_TOKEN (or `token`). */
export function viewerAuth(token = VIEWER_TOKEN): { authorization: string } {
  return { authorization: `Bearer ${token}` };
}

let cached: Promise<{ train: Dataset; test: Dataset }> | null = null;
/** The committed Fashion-MNIST subset (6000 train / 2000 test), loaded once per test process. */
export function subsetData(): Promise<{ train: Dataset; test: Dataset }> {
  cached ??= (async () => {
    await initBackend({ prefer: 'wasm', log: () => {} });
    return loadSubset();
  })();
  return cached;
}

export interface Bench {
  agg: Aggregator;
  url: string;
  proxy: Dataset;
  /** Private partitions, one per client. */
  parts: Dataset[];
  test: Dataset;
}

/** Start an aggregator (MLP student: fast) with a 400-row proxy and `clients` Dirichlet partitions of the rest. */
export async function startBench(clients: number, config: Partial<ServerConfig> = {}, log?: (m: string) => void): Promise<Bench> {
  const { train, test } = await subsetData();
  const split = splitForFederation(train, { proxySize: 400, numClients: clients, partition: 'dirichlet', alpha: 0.5, shardsPerClient: 2, seed: 3 });
  const proxy = subset(train, split.proxy);
  const agg = createAggregator({
    proxy,
    validation: subset(test, Uint32Array.from({ length: 500 }, (_, i) => i)),
    log: log ?? (() => {}),
    config: {
      host: '127.0.0.1',
      port: 0,
      token: TOKEN,
      viewerToken: VIEWER_TOKEN,
      student: 'mlp',
      rounds: 2,
      minClients: clients,
      proxySubset: 200,
      localEpochs: 1,
      distillEpochs: 2,
      roundTimeoutS: 60,
      ...config,
    },
  });
  const url = await agg.start();
  return { agg, url, proxy, parts: split.clients.map((rows) => subset(train, rows)), test };
}

export function makeClient(b: Bench, i: number, o: Partial<ClientOptions> = {}): FedistillClient {
  return new FedistillClient({ url: b.url, token: TOKEN, clientId: `c${i}`, model: 'mlp', data: b.parts[i], log: () => {}, ...o });
}

export function roundsDone(b: Bench, n: number, timeoutMs = 120_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${n} rounds not done in ${timeoutMs} ms (at round ${b.agg.coordinator.round})`)), timeoutMs);
    const check = () => {
      if (b.agg.coordinator.round >= n) {
        clearTimeout(t);
        b.agg.coordinator.off('round', check);
        resolve();
      }
    };
    b.agg.coordinator.on('round', check);
    check();
  });
}

/** A raw socket.io peer that speaks frames by hand: for feeding the server bad input. */
export class RawPeer {
  readonly socket: Socket;
  readonly received: ServerMsg[] = [];
  /** Every frame the server sent this peer, as the bytes that arrived (for checks on the encoding itself). */
  readonly frames: { event: string; bytes: Uint8Array }[] = [];
  private waiters: { pred: (m: ServerMsg) => boolean; resolve: (m: ServerMsg) => void }[] = [];

  constructor(url: string, token = TOKEN) {
    this.socket = io(url, { auth: { token }, transports: ['websocket'], reconnection: false, forceNew: true });
    this.socket.onAny((event: string, frame: Uint8Array) => {
      this.frames.push({ event, bytes: frame });
      const m = decodeFrame(frame) as ServerMsg;
      this.received.push(m);
      this.waiters = this.waiters.filter((w) => (w.pred(m) ? (w.resolve(m), false) : true));
    });
  }

  connected(): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.socket.connected) return resolve();
      this.socket.once('connect', () => resolve());
      this.socket.once('connect_error', reject);
    });
  }

  next(pred: (m: ServerMsg) => boolean, timeoutMs = 10_000): Promise<ServerMsg> {
    const have = this.received.find(pred);
    if (have) {
      this.received.splice(this.received.indexOf(have), 1);
      return Promise.resolve(have);
    }
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no matching message from server')), timeoutMs);
      this.waiters.push({ pred, resolve: (m) => (clearTimeout(t), this.received.splice(this.received.indexOf(m), 1), resolve(m)) });
    });
  }

  error(): Promise<Extract<ServerMsg, { type: 'error' }>> {
    return this.next((m) => m.type === 'error') as Promise<Extract<ServerMsg, { type: 'error' }>>;
  }

  sendRaw(event: string, payload: unknown): void {
    this.socket.emit(event, payload);
  }

  send(event: string, msg: unknown): void {
    this.socket.emit(event, encodeFrame(msg));
  }

  close(): void {
    this.socket.disconnect();
  }
}

const BIN = fileURLToPath(new URL('../bin/fedistill.mjs', import.meta.url));

/** Run the real CLI (bin/fedistill.mjs), bounded in time (SIGKILL after it); resolves with its exit code and output. */
export function runCli(args: string[], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const t = setTimeout(() => (child.kill('SIGKILL'), reject(new Error(`fedistill ${args.join(' ')} did not exit: ${stdout}${stderr}`))), timeoutMs);
    child.on('exit', (code) => (clearTimeout(t), resolve({ code, stdout, stderr })));
  });
}
