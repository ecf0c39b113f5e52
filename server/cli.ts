import { initBackend, type BackendPreference } from '../shared/compute/backend.ts';
import { nest, renderHelp, UsageError } from '../shared/settings/index.ts';
import { createAggregator } from './app.ts';
import { readCommandLine } from './command-line.ts';
import { SERVER_CONFIG_SETTINGS, type ServerConfig } from './config.ts';
import type { EndDelivery } from './coordinator.ts';
import { createLogger, type LogOptions } from './logger.ts';
import { loadServerData } from '../datasets/sources.ts';

const TITLE = 'fedistill server — the aggregator (fastify + socket.io on one port)';

/** The server's settings that are not ServerConfig fields: data, runtime, logging. */
interface ServerCliSettings {
  proxy: string;
  validation: string;
  classes?: string[];
  dataDir?: string;
  backend: BackendPreference;
  logLevel: string;
  logFormat: LogOptions['format'];
  keepServing: boolean;
}

export async function main(argv: string[]): Promise<void> {
  // Every flag, env var, default, range and relation comes from the settings table (shared/settings/).
  const cmd = readCommandLine('server', argv);
  if (cmd.help) return void console.log(renderHelp('server', TITLE));
  const s = cmd.values as unknown as ServerCliSettings;
  const config = nest(cmd.values, SERVER_CONFIG_SETTINGS) as Partial<ServerConfig>;

  const logger = createLogger({ level: s.logLevel, format: s.logFormat });
  const log = (m: string) => logger.info(m);
  const backend = await initBackend({ prefer: s.backend, log });
  // Proxy and validation sets from their specs (datasets/sources.ts); no --proxy = the default size, scaled on a subset.
  const sets = await loadServerData({
    proxy: s.proxy,
    validation: s.validation,
    classes: s.classes,
    dataDir: s.dataDir,
    seed: config.seed!,
    log,
  });
  const rows = sets.proxy.dataset.count;
  if (config.proxySubset! > rows) {
    if (cmd.given.has('proxySubset')) throw new UsageError(`--proxy-subset: ${config.proxySubset} is more than the ${rows} rows of --proxy ${s.proxy}`);
    logger.warn(`proxy rows per round lowered from ${config.proxySubset} to ${rows}: the whole proxy set`);
    config.proxySubset = rows;
  }
  const agg = createAggregator({
    proxy: sets.proxy.dataset,
    proxyId: sets.proxy.id,
    classNames: sets.classNames,
    validation: sets.validation?.dataset ?? null,
    backend,
    log: logger,
    config,
  });
  // Whichever comes first (a signal, the end of the federation) closes; a second caller gets the same closing.
  let closing: Promise<void> | null = null;
  const closeAndExit = (): Promise<void> =>
    (closing ??= agg.close().then(
      () => process.exit(0),
      (e: unknown) => {
        logger.error({ err: e }, `shutdown failed: ${(e as Error)?.message ?? e}`);
        process.exit(1);
      },
    ));
  // A federation with a set number of rounds is a job: once every registered client has been sent the final student
  // (a client reconnecting at that moment gets it after its welcome), or min(--round-timeout, 60 s) after the end
  // (the coordinator logs who never got it), the server exits 0, its student kept in --state-dir. --keep-serving
  // leaves /student and the dashboard up. Registered before start(): a restored, finished federation ends at once.
  agg.coordinator.once('all-told', (d: EndDelivery) => {
    if (s.keepServing || d.reason === 'shutdown' || closing) return;
    logger.info('federation complete; exiting (--keep-serving keeps the server up)');
    void closeAndExit();
  });
  await agg.start();
  const shutdown = (sig: string) => {
    logger.info({ signal: sig }, `${sig}: shutting down`);
    void closeAndExit();
  };
  process.once('SIGINT', () => shutdown('SIGINT'));
  process.once('SIGTERM', () => shutdown('SIGTERM'));
}
