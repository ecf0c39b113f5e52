import * as tf from '@tensorflow/tfjs';
import Fastify, { type FastifyInstance } from 'fastify';
import fastifyCors from '@fastify/cors';
import { Server as IoServer } from 'socket.io';
import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Dataset } from '../shared/data/dataset.ts';
import { classHistogram } from '../shared/data/partition.ts';
import type { ClientToServerEvents, ServerToClientEvents } from '../shared/protocol/events.ts';
import { encodeFrame } from '../shared/protocol/frame-codec.ts';
import type { ProxyInfo } from '../shared/protocol/messages.ts';
import { backendInfo, type BackendInfo } from '../shared/compute/backend.ts';
import { DEFAULT_CONFIG, STRATEGIES, type ServerConfig } from './config.ts';
import { Coordinator } from './coordinator.ts';
import { attachDashboard } from './dashboard/feed.ts';
import { attachGateway } from './gateway.ts';
import { Metrics } from './metrics.ts';
import { healthRoutes } from './routes/health.ts';
import { proxyRoutes } from './routes/proxy.ts';
import { browserRoutes } from './routes/browser.ts';
import { FileCheckpointStore, MemoryCheckpointStore } from './state/checkpoint-store.ts';
import { FileUploadJournal, MemoryUploadJournal } from './state/upload-journal.ts';
import { EnsembleStrategy } from './strategies/ensemble.ts';
import { FedAvgStrategy } from './strategies/fedavg.ts';
import { MutualStrategy } from './strategies/mutual.ts';
import { OnlineStrategy } from './strategies/online.ts';
import { OnlineCoordinator } from './online-coordinator.ts';
import { isOnline, type AnyStrategy } from './strategies/strategy.ts';

export const SERVER_VERSION = '0.1.0';

export interface AggregatorOptions {
  config?: Partial<ServerConfig>;
  /** Public proxy set; labels are dropped here whatever the caller passes. */
  proxy: Dataset;
  proxyId?: string;
  /** Names of the classes, index order (shown by the join page and used to label image folders). */
  classNames?: string[];
  /** Labelled set to evaluate the student on, if the operator has one. */
  validation?: Dataset | null;
  backend?: BackendInfo | null;
  log?: (msg: string) => void;
}

export interface Aggregator {
  app: FastifyInstance;
  io: IoServer<ClientToServerEvents, ServerToClientEvents>;
  coordinator: Coordinator;
  config: ServerConfig;
  proxyInfo: ProxyInfo;
  /** Listen, restore the newest checkpoint, start rounds. Resolves to the base URL. */
  start(): Promise<string>;
  close(): Promise<void>;
}

function makeStrategy(cfg: ServerConfig, proxy: Dataset, proxyHash: string): AnyStrategy {
  switch (cfg.strategy) {
    case 'ensemble':
      return new EnsembleStrategy(cfg, proxy, proxyHash);
    case 'mutual':
      return new MutualStrategy(cfg, proxy, proxyHash);
    case 'online':
      return new OnlineStrategy(cfg, proxy, proxyHash);
    case 'fedavg':
      return new FedAvgStrategy(cfg, proxy);
    default:
      throw new Error(`unknown strategy '${cfg.strategy}' (${STRATEGIES.join(', ')})`);
  }
}

export function createAggregator(o: AggregatorOptions): Aggregator {
  const config: ServerConfig = { ...DEFAULT_CONFIG, ...o.config };
  const log = o.log ?? ((m: string) => console.log(`[server] ${m}`));
  const proxy: Dataset = { ...o.proxy, labels: null };
  const hash = createHash('sha256').update(proxy.images).digest('hex');
  const proxyInfo: ProxyInfo = { id: o.proxyId ?? 'proxy', hash, count: proxy.count, shape: proxy.shape, numClasses: proxy.numClasses, path: `/proxy/${o.proxyId ?? 'proxy'}` };
  const proxyBody = encodeFrame({ id: proxyInfo.id, hash, count: proxy.count, shape: proxy.shape, numClasses: proxy.numClasses, images: proxy.images });

  const strategy = makeStrategy(config, proxy, hash);
  const store = config.stateDir ? new FileCheckpointStore(config.stateDir, log) : new MemoryCheckpointStore();
  const journal = config.stateDir ? new FileUploadJournal(config.stateDir, log) : new MemoryUploadJournal();
  // Rounds or no rounds is the one scheduling choice; everything else is the strategy's.
  const coordinator = new (isOnline(strategy) ? OnlineCoordinator : Coordinator)({ config, strategy, proxy, proxyInfo, validation: o.validation ?? null, store, journal, log, serverVersion: SERVER_VERSION });
  const metrics = new Metrics();

  const app = Fastify({ logger: false, bodyLimit: 1024 * 1024 });
  // Pages on the listed origins may use the SDK against this server; none by default (same origin only).
  const corsOrigin = config.corsOrigins.includes('*') ? true : config.corsOrigins.length ? config.corsOrigins : false;
  app.register(fastifyCors, { origin: corsOrigin, methods: ['GET', 'HEAD'], allowedHeaders: ['authorization', 'if-none-match'], maxAge: 600 });
  const limits = config.frameLimits;
  const io = new IoServer<ClientToServerEvents, ServerToClientEvents>(app.server, {
    // Just above the largest frame this strategy accepts, so an oversized frame still reaches the validator and gets
    // a clear 'too-large' error, while a peer (authenticated or not) can't make the engine buffer more than that.
    maxHttpBufferSize: Math.max(limits.hello, config.strategy === 'fedavg' ? limits.weights : limits.logits) + 64 * 1024,
    pingTimeout: 60_000,
    cors: { origin: corsOrigin, methods: ['GET', 'POST'] },
  });
  coordinator.attach(attachGateway(io, coordinator, { token: config.token, limits, metrics, log }));
  // Rows per class of the set the student is scored on (per-task accuracy weighs classes by them); computed once.
  const v = o.validation;
  const validation = v?.labels ? { count: v.count, rowsPerClass: classHistogram(v.labels, Uint32Array.from({ length: v.count }, (_, i) => i), v.numClasses) } : null;
  const describe = () => ({
    server: 'fedistill',
    version: SERVER_VERSION,
    strategy: strategy.name,
    student: strategy.modelKind,
    backend: o.backend ?? backendInfo() ?? null,
    proxy: proxyInfo,
    validation,
    config: { ...config, token: config.token ? '(set)' : '', viewerToken: config.viewerToken ? '(set)' : '' },
    history: coordinator.history,
  });
  const dashboard = attachDashboard(io, coordinator, { viewerToken: config.viewerToken, describe, log });
  app.register(healthRoutes, { coordinator, metrics, describe, connectedSockets: () => io.engine.clientsCount });
  app.register(proxyRoutes, { info: proxyInfo, body: proxyBody, token: config.token });
  app.register(browserRoutes, {
    demoData: config.demoData,
    federation: () => ({
      server: 'fedistill',
      version: SERVER_VERSION,
      strategy: strategy.name,
      student: { kind: strategy.modelKind, inputShape: proxy.shape, numClasses: proxy.numClasses },
      classNames: o.classNames ?? Array.from({ length: proxy.numClasses }, (_, i) => String(i)),
      proxy: { id: proxyInfo.id, hash: proxyInfo.hash, count: proxyInfo.count },
      auth: { clientToken: config.token !== '', viewerToken: config.viewerToken !== '' },
      demoData: config.demoData ? { path: '/demo-data/fashion-mnist-subset/', classes: 10, shape: [28, 28, 1] } : null,
      round: coordinator.round,
      rounds: config.rounds,
    }),
  });

  return {
    app,
    io,
    coordinator,
    config,
    proxyInfo,
    async start() {
      await coordinator.restore();
      await app.listen({ host: config.host, port: config.port });
      const addr = app.server.address() as AddressInfo;
      const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
      log(`listening on http://${host}:${addr.port} (strategy ${strategy.name}, student ${strategy.modelKind}, backend ${o.backend?.name ?? tf.getBackend()})`);
      log(`dashboard: http://${host}:${addr.port}/   join page (train in a browser): http://${host}:${addr.port}/join`);
      void coordinator.start();
      return `http://${host}:${addr.port}`;
    },
    async close() {
      await coordinator.stop();
      dashboard.close();
      io.close();
      await app.close();
      if (journal instanceof FileUploadJournal) journal.close();
    },
  };
}
