import { parseArgs } from 'node:util';
import { subset, type Dataset } from '../shared/data/dataset.ts';
import { initBackend } from '../shared/compute/backend.ts';
import { AGGREGATORS } from '../shared/distill/aggregators.ts';
import { MODEL_KINDS } from '../shared/models/builders.ts';
import { proxyRows } from '../shared/data/federated-split.ts';
import { createAggregator } from './app.ts';
import { DEFAULT_CONFIG, STRATEGIES, type ServerConfig } from './config.ts';
import { FASHION_MNIST_CLASSES, loadFashionMnist } from './data/fashion-mnist.ts';

const HELP = `fedistill server — the aggregator (fastify + socket.io on one port)

  --host H               listen address (env FEDISTILL_HOST)                  [${DEFAULT_CONFIG.host}]
  --port N               port, 0 = any free (env PORT)                         [${DEFAULT_CONFIG.port}]
  --token T              shared client token (env FEDISTILL_TOKEN); empty = no auth
  --viewer-token T       token the dashboard at / asks for (env FEDISTILL_VIEWER_TOKEN); empty = open
  --strategy S           ${STRATEGIES.join(' | ')}                  [${DEFAULT_CONFIG.strategy}]
  --rounds N             rounds to run (online: student versions), 0 = forever [${DEFAULT_CONFIG.rounds}]
  --min-clients N        clients needed to start a round                       [${DEFAULT_CONFIG.minClients}]
  --fraction F           fraction of connected clients selected per round      [${DEFAULT_CONFIG.fraction}]
  --round-timeout S      round deadline in seconds                             [${DEFAULT_CONFIG.roundTimeoutS}]
  --quorum F             fraction of selected uploads needed at the deadline   [${DEFAULT_CONFIG.quorum}]
  --cors-origin LIST     origins whose pages may use the SDK here (comma list, '*' = any; env FEDISTILL_CORS_ORIGIN) [none]
  --no-demo-data         don't serve the public Fashion-MNIST subset for the join page's demo shards
  --tasks SPEC           continual tasks as class groups, e.g. 0,1;2,3;4,5 (dashboard: per-task accuracy, forgetting)
  --state-dir DIR        checkpoints; a restart on the same dir resumes (env FEDISTILL_STATE_DIR)
  --student M            ${MODEL_KINDS.join(' | ')}                                             [${DEFAULT_CONFIG.student}]
  --proxy SPEC           fashion-mnist:N = N training rows held out as proxy   [fashion-mnist:10000]
  --proxy-subset N       proxy rows per round                                  [${DEFAULT_CONFIG.proxySubset}]
  --local-epochs E       epochs clients train per round                        [${DEFAULT_CONFIG.localEpochs}]
  --aggregator A         ${AGGREGATORS.join(' | ')}  [${DEFAULT_CONFIG.aggregator}]
  --temperature T        distillation temperature (T_max with a decay)         [${DEFAULT_CONFIG.temperature}]
  --temperature-decay K  T(t) = T_max·exp(−K·t) per round, floored at 1        [${DEFAULT_CONFIG.temperatureDecay}]
  --prev-lambda L        λ of the previous-student term (continual rounds)    [${DEFAULT_CONFIG.prevStudentLambda}]
  --mutual-beta B        mutual/online: client's weight on the student's labels [${DEFAULT_CONFIG.mutualBeta}]
  --publish-steps K      online: new student version every K steps ...         [${DEFAULT_CONFIG.publishEverySteps}]
  --publish-seconds S    ... or S seconds                                      [${DEFAULT_CONFIG.publishEverySeconds}]
  --steps-per-upload N   online: student steps owed per accepted upload        [${DEFAULT_CONFIG.stepsPerUpload}]
  --staleness-exponent A online: teacher weight (1 + staleness)^−A             [${DEFAULT_CONFIG.stalenessExponent}]
  --max-staleness N      online: older uploads are refused with 'resync'       [${DEFAULT_CONFIG.maxStaleness}]
  --distill-epochs E     student epochs per round                              [${DEFAULT_CONFIG.distillEpochs}]
  --no-validation        don't evaluate the student on the Fashion-MNIST test set
  --data-dir DIR         where the Fashion-MNIST files are
  --seed N               [${DEFAULT_CONFIG.seed}]
  --backend B            auto | tensorflow-gpu | tensorflow | wasm | cpu (env FEDISTILL_BACKEND)
`;

export async function main(argv: string[]): Promise<void> {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      host: { type: 'string', default: process.env.FEDISTILL_HOST ?? DEFAULT_CONFIG.host },
      port: { type: 'string', default: process.env.PORT ?? String(DEFAULT_CONFIG.port) },
      token: { type: 'string', default: process.env.FEDISTILL_TOKEN ?? '' },
      'viewer-token': { type: 'string', default: process.env.FEDISTILL_VIEWER_TOKEN ?? '' },
      strategy: { type: 'string', default: DEFAULT_CONFIG.strategy },
      rounds: { type: 'string' },
      'min-clients': { type: 'string' },
      fraction: { type: 'string' },
      'round-timeout': { type: 'string' },
      quorum: { type: 'string' },
      'cors-origin': { type: 'string', default: process.env.FEDISTILL_CORS_ORIGIN ?? '' },
      'no-demo-data': { type: 'boolean' },
      tasks: { type: 'string' },
      'state-dir': { type: 'string', default: process.env.FEDISTILL_STATE_DIR ?? '' },
      student: { type: 'string' },
      proxy: { type: 'string', default: 'fashion-mnist:10000' },
      'proxy-subset': { type: 'string' },
      'local-epochs': { type: 'string' },
      aggregator: { type: 'string' },
      temperature: { type: 'string' },
      'temperature-decay': { type: 'string' },
      'prev-lambda': { type: 'string' },
      'mutual-beta': { type: 'string' },
      'publish-steps': { type: 'string' },
      'publish-seconds': { type: 'string' },
      'steps-per-upload': { type: 'string' },
      'staleness-exponent': { type: 'string' },
      'max-staleness': { type: 'string' },
      'distill-epochs': { type: 'string' },
      'no-validation': { type: 'boolean' },
      'data-dir': { type: 'string' },
      seed: { type: 'string' },
      backend: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (v.help) return void console.log(HELP);
  const n = (x: string | undefined) => (x === undefined ? undefined : Number(x));
  const config: Partial<ServerConfig> = {
    host: v.host,
    port: n(v.port),
    token: v.token,
    viewerToken: v['viewer-token'],
    strategy: v.strategy as ServerConfig['strategy'],
    rounds: n(v.rounds),
    minClients: n(v['min-clients']),
    fraction: n(v.fraction),
    roundTimeoutS: n(v['round-timeout']),
    quorum: n(v.quorum),
    stateDir: v['state-dir'],
    tasks: v.tasks === undefined ? undefined : parseTasks(v.tasks),
    corsOrigins: v['cors-origin'].split(',').map((x) => x.trim()).filter(Boolean),
    demoData: !v['no-demo-data'],
    student: v.student as ServerConfig['student'],
    proxySubset: n(v['proxy-subset']),
    localEpochs: n(v['local-epochs']),
    aggregator: v.aggregator as ServerConfig['aggregator'],
    temperature: n(v.temperature),
    temperatureDecay: n(v['temperature-decay']),
    prevStudentLambda: n(v['prev-lambda']),
    mutualBeta: n(v['mutual-beta']),
    publishEverySteps: n(v['publish-steps']),
    publishEverySeconds: n(v['publish-seconds']),
    stepsPerUpload: n(v['steps-per-upload']),
    stalenessExponent: n(v['staleness-exponent']),
    maxStaleness: n(v['max-staleness']),
    distillEpochs: n(v['distill-epochs']),
    seed: n(v.seed),
  };
  for (const [k, val] of Object.entries(config)) {
    if (val === undefined) delete config[k as keyof ServerConfig];
    else if (typeof val === 'number' && !Number.isFinite(val)) throw new Error(`--${k} must be a number`);
  }
  if (config.strategy && !STRATEGIES.includes(config.strategy)) throw new Error(`--strategy must be one of ${STRATEGIES.join(', ')}`);
  if (config.student && !MODEL_KINDS.includes(config.student)) throw new Error(`--student must be one of ${MODEL_KINDS.join(', ')}`);
  if (config.aggregator && !AGGREGATORS.includes(config.aggregator)) throw new Error(`--aggregator must be one of ${AGGREGATORS.join(', ')}`);

  const log = (m: string) => console.log(`${new Date().toISOString()} ${m}`);
  const backend = await initBackend({ prefer: v.backend as never, log });
  const m = /^fashion-mnist:(\d+)$/.exec(v.proxy);
  if (!m) throw new Error(`--proxy must look like fashion-mnist:N (got '${v.proxy}')`);
  const data = await loadFashionMnist({ dir: v['data-dir'], log });
  // The same held-out rows `fedistill simulate` uses for this seed; labels are dropped.
  const proxy: Dataset = { ...subset(data.train, proxyRows(data.train.count, Number(m[1]), config.seed ?? DEFAULT_CONFIG.seed)), labels: null };
  const agg = createAggregator({
    proxy,
    proxyId: `fashion-mnist-${proxy.count}`,
    classNames: [...FASHION_MNIST_CLASSES],
    validation: v['no-validation'] ? null : data.test,
    backend,
    log,
    config,
  });
  await agg.start();
  agg.coordinator.once('finished', () => log(`all ${agg.config.rounds} ${agg.config.strategy === 'online' ? 'student versions' : 'rounds'} done; still serving /status (Ctrl-C to stop)`));
  const shutdown = async (sig: string) => {
    log(`${sig}: shutting down`);
    await agg.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void shutdown('SIGINT'));
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
}

/** '0,1;2,3' → [[0, 1], [2, 3]]: the dashboard's continual tasks. */
function parseTasks(spec: string): number[][] {
  const tasks = spec.split(';').map((t) => t.split(',').map((c) => Number(c.trim())));
  if (!tasks.length || tasks.some((t) => !t.length || t.some((c) => !Number.isInteger(c) || c < 0))) {
    throw new Error(`--tasks must be groups of class indices like 0,1;2,3 (got '${spec}')`);
  }
  return tasks;
}
