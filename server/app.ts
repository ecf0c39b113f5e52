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
import { checkServerConfig, DEFAULT_CONFIG, STRATEGIES, type ServerConfig } from './config.ts';
import { createCoordinator, type Coordinator } from './coordinator.ts';
import { attachDashboard } from './dashboard/feed.ts';
import { attachGateway } from './gateway.ts';
import { AggregatorMetrics } from './metrics.ts';
import { RequestLog } from './request-log.ts';
import { healthRoutes } from './routes/health.ts';
import { proxyRoutes } from './routes/proxy.ts';
import { browserRoutes } from './routes/browser.ts';
import { FileCheckpointStore, MemoryCheckpointStore } from './state/checkpoint-store.ts';
import { FileUploadJournal, MemoryUploadJournal } from './state/upload-journal.ts';
import { StudentShelf } from './state/student-shelf.ts';
import { studentRoutes } from './routes/student.ts';
import { toLogger, type Logger, type LogSink } from './logger.ts';
import { join } from 'node:path';
import { EnsembleStrategy } from './strategies/ensemble.ts';
import { FedAvgStrategy } from './strategies/fedavg.ts';
import { MutualStrategy } from './strategies/mutual.ts';
import { OnlineStrategy } from './strategies/online.ts';
import type { AnyStrategy } from './strategies/strategy.ts';

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
  /**
   * Where the aggregator logs (fastify's requests, coordinator, gateway, dashboard): a pino logger, or a line callback
   * (each record's message). Absent: silent, unless FEDISTILL_LOG_LEVEL is set (then to stdout, like the CLI).
   */
  log?: LogSink;
}

export interface Aggregator {
  app: FastifyInstance;
  log: Logger;
  metrics: AggregatorMetrics;
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
  // The flags' ranges and relations apply to a config built in code too (RangeError naming the key).
  checkServerConfig(o.config ?? {});
  const config: ServerConfig = { ...DEFAULT_CONFIG, ...o.config };
  const logger = toLogger(o.log);
  const proxy: Dataset = { ...o.proxy, labels: null };
  const hash = createHash('sha256').update(proxy.images).digest('hex');
  const proxyInfo: ProxyInfo = { id: o.proxyId ?? 'proxy', hash, count: proxy.count, shape: proxy.shape, numClasses: proxy.numClasses, path: `/proxy/${o.proxyId ?? 'proxy'}` };
  const proxyBody = encodeFrame({ id: proxyInfo.id, hash, count: proxy.count, shape: proxy.shape, numClasses: proxy.numClasses, images: proxy.images });

  const strategy = makeStrategy(config, proxy, hash);
  const store = config.stateDir ? new FileCheckpointStore(config.stateDir, logger) : new MemoryCheckpointStore();
  const journal = config.stateDir ? new FileUploadJournal(config.stateDir, logger) : new MemoryUploadJournal();
  const shelf = new StudentShelf(config.stateDir ? join(config.stateDir, 'student') : null, logger);
  // Rounds or no rounds is the one scheduling choice (createCoordinator asks the strategy); the rest is the strategy's.
  const coordinator = createCoordinator({
    config, strategy, proxy, proxyInfo, validation: o.validation ?? null, store, journal, log: logger, serverVersion: SERVER_VERSION, shelf, classNames: o.classNames,
  });

  // fastify logs through the same pino logger, one line per request at most (RequestLog: 5xx error, 4xx warn, the rest debug).
  const app = Fastify({ loggerInstance: logger, logController: new RequestLog(), bodyLimit: 1024 * 1024 }) as unknown as FastifyInstance;
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
  const metrics = new AggregatorMetrics({ coordinator, connectedSockets: () => io.engine.clientsCount });
  coordinator.attach(attachGateway(io, coordinator, { token: config.token, limits, metrics, log: logger }));
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
  const dashboard = attachDashboard(io, coordinator, { viewerToken: config.viewerToken, describe, log: logger });
  app.register(healthRoutes, { coordinator, metrics, describe });
  app.register(proxyRoutes, { info: proxyInfo, body: proxyBody, token: config.token });
  app.register(studentRoutes, { shelf, token: config.token, viewerToken: config.viewerToken });
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
    log: logger,
    metrics,
    io,
    coordinator,
    config,
    proxyInfo,
    async start() {
      await coordinator.restore();
      await app.listen({ host: config.host, port: config.port, listenTextResolver: (address) => `reachable at ${address}` });
      const addr = app.server.address() as AddressInfo;
      const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
      const url = `http://${host}:${addr.port}`;
      const backend = o.backend?.name ?? tf.getBackend();
      const goal = config.rounds === 0 ? 'forever' : `${config.rounds} ${strategy.name === 'online' ? 'student version' : 'round'}${config.rounds === 1 ? '' : 's'}`;
      logger.info(
        { url, strategy: strategy.name, student: strategy.modelKind, backend, proxy: proxyInfo.id, proxyRows: proxy.count, round: coordinator.round, rounds: config.rounds, minClients: config.minClients },
        `listening on ${url} (${strategy.name}, student ${strategy.modelKind}, backend ${backend}, proxy ${proxyInfo.id} × ${proxy.count}); ` +
          `waiting for ${config.minClients} client${config.minClients === 1 ? '' : 's'} to run ${goal}` +
          (coordinator.round > 0 ? ` (resuming after ${coordinator.round})` : ''),
      );
      logger.info({ dashboard: `${url}/`, join: `${url}/join`, metrics: `${url}/metrics` }, `dashboard ${url}/  join page ${url}/join  metrics ${url}/metrics`);
      void coordinator.start();
      return url;
    },
    async close() {
      await coordinator.stop();
      dashboard.close();
      io.close();
      await app.close();
      metrics.close();
      if (journal instanceof FileUploadJournal) journal.close();
    },
  };
}
