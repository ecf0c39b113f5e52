import * as tf from '@tensorflow/tfjs';
import Fastify, { type FastifyInstance } from 'fastify';
import fastifyCors from '@fastify/cors';
import { Server as IoServer } from 'socket.io';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { Dataset } from '../shared/data/dataset.ts';
import { classHistogram } from '../shared/data/partition.ts';
import type { ClientToServerEvents, ServerToClientEvents } from '../shared/protocol/events.ts';
import { encodeFrame } from '../shared/protocol/frame-codec.ts';
import type { ProxyInfo } from '../shared/protocol/messages.ts';
import { backendInfo, type BackendInfo } from '../shared/compute/backend.ts';
import { checkServerConfig, DEFAULT_CONFIG, STRATEGIES, type ServerConfig } from './config.ts';
import { checkPrivacyConfig } from './privacy/check.ts';
import { createCoordinator, type Coordinator } from './coordinator.ts';
import { attachDashboard } from './dashboard/feed.ts';
import { attachGateway } from './gateway.ts';
import { AddressGuard } from './guard/address-guard.ts';
import { effectiveFrameLimits, transportBufferBytes } from './guard/frame-budget.ts';
import { checkAccessConfig, ClientAuth, type Identity } from './auth.ts';
import { CredentialStore } from './credentials/store.ts';
import { generatedViewerToken } from './credentials/viewer-token.ts';
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
  const config: ServerConfig = {
    ...DEFAULT_CONFIG,
    ...o.config,
    // Nested settings given in part (in code) keep the defaults of the rest.
    privacy: { ...DEFAULT_CONFIG.privacy, ...o.config?.privacy },
    secureAggregation: { ...DEFAULT_CONFIG.secureAggregation, ...o.config?.secureAggregation },
  };
  checkPrivacyConfig(config);
  // Exactly one way for clients to authenticate (an empty token is no longer "no auth"), --credentials with a state
  // dir, TLS cert and key together: the settings table's rules, for a config built in code too.
  checkAccessConfig(config);
  const logger = toLogger(o.log);
  const credentials = config.credentials ? new CredentialStore(config.stateDir) : null;
  credentials?.secret(); // made (0600) on first use; a broken or world-readable one stops the start here
  credentials?.refresh(true);
  const auth = new ClientAuth({ token: config.token, credentials, insecureNoAuth: config.insecureNoAuth });
  // With client auth on, /status, /metrics and the dashboard's data are never public: without a viewer token from the
  // operator one is made (and kept in the state dir), and start() says where it is.
  const viewerGenerated = !config.viewerToken && !config.insecureNoAuth ? generatedViewerToken(config.stateDir) : null;
  if (viewerGenerated) config.viewerToken = viewerGenerated.token;
  const https = config.tls ? { cert: pem(config.tls.cert, 'tls.cert'), key: pem(config.tls.key, 'tls.key') } : null;
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
  // With TLS, fastify serves https and socket.io (attached to the same server below) wss, on one port.
  const app = Fastify({ loggerInstance: logger, logController: new RequestLog(), bodyLimit: 1024 * 1024, ...(https ? { https } : {}) }) as unknown as FastifyInstance;
  // Pages on the listed origins may use the SDK against this server; none by default (same origin only).
  const corsOrigin = config.corsOrigins.includes('*') ? true : config.corsOrigins.length ? config.corsOrigins : false;
  app.register(fastifyCors, { origin: corsOrigin, methods: ['GET', 'HEAD'], allowedHeaders: ['authorization', 'if-none-match'], maxAge: 600 });
  // What this server's own tasks can need (rows × classes of logits, the student's weights), under the --max-*-bytes caps.
  const limits = effectiveFrameLimits(config.frameLimits, {
    rowsPerTask: Math.min(config.proxySubset, proxy.count),
    numClasses: proxy.numClasses,
    studentParams: strategy.model.countParams(),
    studentTensors: strategy.model.weights.length,
  });
  const addressGuard = new AddressGuard({
    failures: config.authFailures, baseMs: config.authBackoffS * 1000, maxMs: config.authBackoffMaxS * 1000, capacity: config.addressTableSize,
  });
  const io = new IoServer<ClientToServerEvents, ServerToClientEvents>(app.server, {
    // Just above the largest frame limit, so an oversized frame still reaches the validator and gets a clear
    // 'too-large' error, while a peer (authenticated or not) can't make the engine buffer more than that.
    maxHttpBufferSize: transportBufferBytes(limits),
    // An address backing off after failed authentications is refused by the gateway's first handshake middleware, before
    // any token check, and not here in engine.io's allowRequest: a refusal there reaches a client only as a bare
    // "websocket error", while the middleware's says why and when to retry (the SDK waits that long and tries again).
    // An engine connection that never completes the socket.io handshake is closed as soon as one that never says hello.
    connectTimeout: config.helloTimeoutS * 1000,
    pingTimeout: 60_000,
    cors: { origin: corsOrigin, methods: ['GET', 'POST'] },
  });
  const metrics = new AggregatorMetrics({ coordinator, connectedSockets: () => io.engine.clientsCount });
  const guard = {
    address: addressGuard,
    helloTimeoutMs: config.helloTimeoutS * 1000,
    connection: {
      framesPerS: config.rateFramesPerS, frameBurst: config.rateBurst, helloIntervalS: config.helloIntervalS,
      errorRepliesPerS: config.errorRepliesPerS, floodLimit: config.floodLimit,
    },
  };
  coordinator.attach(attachGateway(io, coordinator, { auth, limits, metrics, log: logger, guard }));
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
    config: { ...config, token: config.token ? '(set)' : '', viewerToken: config.viewerToken ? '(set)' : '', tls: config.tls ? '(set)' : undefined },
    history: coordinator.history,
  });
  const dashboard = attachDashboard(io, coordinator, { viewerToken: config.viewerToken, describe, log: logger });
  // HTTP takes part in the same per-address back-off as socket.io handshakes: a refused bearer token (401 from
  // /proxy, /student, /status, /metrics) counts as a failed authentication, and an address backing off gets 429 with
  // Retry-After on everything but /healthz, before any token is checked — else HTTP would be the way to guess tokens.
  app.addHook('onRequest', async (req, reply) => {
    const wait = addressGuard.blockedFor(req.ip);
    if (wait === 0 || req.url === '/healthz') return;
    const s = Math.ceil(wait / 1000);
    return reply.code(429).header('retry-after', String(s)).send({ error: 'rate-limited', message: `too many failed authentications from this address; retry in ${s} s` });
  });
  app.addHook('onResponse', async (req, reply) => {
    if (reply.statusCode === 401) addressGuard.failed(req.ip);
  });
  app.register(healthRoutes, { coordinator, metrics, describe, viewerToken: config.viewerToken });
  app.register(proxyRoutes, { info: proxyInfo, body: proxyBody, auth });
  app.register(studentRoutes, { shelf, auth, viewerToken: config.viewerToken });
  app.register(browserRoutes, {
    demoData: config.demoData,
    federation: () => ({
      server: 'fedistill',
      version: SERVER_VERSION,
      strategy: strategy.name,
      student: { kind: strategy.modelKind, inputShape: proxy.shape, numClasses: proxy.numClasses },
      classNames: o.classNames ?? Array.from({ length: proxy.numClasses }, (_, i) => String(i)),
      proxy: { id: proxyInfo.id, hash: proxyInfo.hash, count: proxyInfo.count },
      // mode: 'token' | 'credentials' | 'none'; either of the first two goes in the join page's token field.
      auth: { mode: auth.mode, clientToken: auth.mode !== 'none', viewerToken: config.viewerToken !== '' },
      demoData: config.demoData ? { path: '/demo-data/fashion-mnist-subset/', classes: 10, shape: [28, 28, 1] } : null,
      round: coordinator.round,
      rounds: config.rounds,
    }),
  });

  let revocationSweep: ReturnType<typeof setInterval> | null = null;
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
      const url = `${https ? 'https' : 'http'}://${host}:${addr.port}`;
      const backend = o.backend?.name ?? tf.getBackend();
      const goal = config.rounds === 0 ? 'forever' : `${config.rounds} ${strategy.name === 'online' ? 'student version' : 'round'}${config.rounds === 1 ? '' : 's'}`;
      logger.info(
        { url, strategy: strategy.name, student: strategy.modelKind, backend, proxy: proxyInfo.id, proxyRows: proxy.count, round: coordinator.round, rounds: config.rounds, minClients: config.minClients },
        `listening on ${url} (${strategy.name}, student ${strategy.modelKind}, backend ${backend}, proxy ${proxyInfo.id} × ${proxy.count}); ` +
          `waiting for ${config.minClients} client${config.minClients === 1 ? '' : 's'} to run ${goal}` +
          (coordinator.round > 0 ? ` (resuming after ${coordinator.round})` : ''),
      );
      logger.info({ dashboard: `${url}/`, join: `${url}/join`, metrics: `${url}/metrics` }, `dashboard ${url}/  join page ${url}/join  metrics ${url}/metrics`);
      logger.info({ auth: auth.mode, tls: !!https }, `clients authenticate with ${AUTH_TEXT[auth.mode]}${https ? '' : '; no TLS: tokens and logits travel in cleartext (--tls-cert/--tls-key)'}`);
      if (viewerGenerated) {
        // Said once, like Jupyter's token: the operator needs it for the dashboard, /status and /metrics.
        if (viewerGenerated.file) logger.info({ file: viewerGenerated.file }, `viewer token for the dashboard, /status and /metrics (Bearer): in ${viewerGenerated.file}`);
        else logger.info(`viewer token for the dashboard, /status and /metrics (Bearer): ${viewerGenerated.token}; dashboard ${url}/#viewer=${viewerGenerated.token} (set --viewer-token to choose one)`);
      }
      if (credentials) {
        // A revoked credential's live connections are closed within a second, without a restart; its reconnect is then
        // refused at the handshake. (Handshakes re-read the list too, so a new connection never waits for this.)
        revocationSweep = setInterval(() => {
          if (!credentials.refresh(true)) return;
          for (const socket of io.of('/').sockets.values()) {
            if (auth.stillValid(socket.data.identity as Identity | undefined)) continue;
            const who = (socket.data.identity as { clientId?: string } | undefined)?.clientId;
            logger.warn({ clientId: who, socket: socket.id }, `client ${who}: its credential was revoked (or the revocation list is unreadable); disconnected`);
            socket.disconnect(true);
          }
        }, 1000);
        revocationSweep.unref();
      }
      void coordinator.start();
      return url;
    },
    async close() {
      if (revocationSweep) clearInterval(revocationSweep);
      await coordinator.stop();
      await strategy.close?.();
      dashboard.close();
      io.close();
      await app.close();
      metrics.close();
      if (journal instanceof FileUploadJournal) journal.close();
    },
  };
}

const AUTH_TEXT = {
  token: 'the shared --token',
  credentials: 'per-client credentials (fedistill credential issue|revoke|list)',
  none: 'nothing: --insecure-no-auth, anyone who can reach this port may join',
} as const;

/** A TLS setting: PEM text as given, else the file it names (read once at creation; a bad path fails the start). */
function pem(v: string, key: string): string {
  if (v.trimStart().startsWith('-----BEGIN')) return v;
  try {
    return readFileSync(v, 'utf8');
  } catch (e) {
    throw new Error(`${key}: cannot read ${v}: ${(e as Error).message}`);
  }
}
