import { parseArgs } from 'node:util';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { MODEL_KINDS, type ModelKind } from '../shared/models/builders.ts';
import { AGGREGATORS } from '../shared/distill/aggregators.ts';
import { LOGIT_CODECS } from '../shared/tensor/logit-codec.ts';
import { STRATEGIES } from '../server/config.ts';
import { DEFAULT_SIMULATION, runSimulation, type SimulationOptions, type SimulationResult } from './simulate.ts';
import { kb, pct, table } from './report.ts';
import { SCENARIOS } from './continual.ts';

const HELP = `fedistill simulate — a real aggregator and N real clients on Fashion-MNIST, on this machine

  --strategy S          ensemble | mutual | online | fedavg, or a comma list run one after the other on the
                        same split and compared (e.g. ensemble,mutual); compare = ensemble,fedavg   [ensemble]
  --clients N           simulated clients (each its own socket.io connection)                  [${DEFAULT_SIMULATION.clients}]
  --rounds N            rounds                                                                  [${DEFAULT_SIMULATION.rounds}]
  --partition P         dirichlet | shards | iid                                                [dirichlet]
  --alpha A             Dirichlet concentration (smaller = more skewed)                         [${DEFAULT_SIMULATION.alpha}]
  --shards-per-client N with --partition shards                                                 [${DEFAULT_SIMULATION.shardsPerClient}]
  --proxy-size N        training rows held out as the public proxy set                          [${DEFAULT_SIMULATION.proxySize}]
  --proxy-subset N      proxy rows asked for per round                                          [${DEFAULT_SIMULATION.proxySubset}]
  --local-epochs E      local epochs per round                                                  [${DEFAULT_SIMULATION.localEpochs}]
  --models LIST         client architectures, round-robin, e.g. cnn,mlp (half and half)        [cnn]
  --student M           student architecture (mlp | cnn)                                        [cnn]
  --codec C             logit codec: ${LOGIT_CODECS.join(' | ')}                                [${DEFAULT_SIMULATION.codec}]
  --aggregator A        ${AGGREGATORS.join(' | ')}   [${DEFAULT_SIMULATION.aggregator}]
  --no-logit-adjust     clients train with plain CE instead of the logit-adjusted loss (ensemble)
  --ntd-beta B          weight of not-true distillation from the student in local training (0 = off)  [0]
  --temperature T       distillation temperature (T_max with --temperature-decay)               [${DEFAULT_SIMULATION.temperature}]
  --temperature-decay K T(t) = T_max·exp(−K·t) per round, floored at 1 (0 = constant)          [0]
  --mutual-beta B       mutual: weight of the client's KL to the student's soft labels          [${DEFAULT_SIMULATION.mutualBeta}]
  --prev-lambda L       weight λ of the previous-student term in the server's distillation; a comma
                        list (e.g. 0,1) runs each and compares forgetting                       [0]
  --distill-epochs E    server distillation epochs per round                                    [${DEFAULT_SIMULATION.distillEpochs}]
  --bank-decay D        weight of a teacher label per round of age in the student's loss (1 = no decay)   [${DEFAULT_SIMULATION.bankDecay}]
  --client-eval N       test rows each client scores its own model on (0 = off)                 [${DEFAULT_SIMULATION.clientEvalSize}]
  --workers N           client worker processes                                                 [cores]
  --seed N              seed for split, partitions, models                                      [${DEFAULT_SIMULATION.seed}]
  --data-dir DIR        Fashion-MNIST idx files (else cache, Debian package, download, subset)
  --backend B           auto | tensorflow-gpu | tensorflow | wasm | cpu (also FEDISTILL_BACKEND)
  --out FILE            results JSON                                                            [results/simulate-<strategies>[-<scenario>].json]

 online (asynchronous) distillation:
  --publish-steps K     publish a new student version every K training steps ...                [${DEFAULT_SIMULATION.publishEverySteps}]
  --publish-seconds S   ... or every S seconds, whichever comes first                           [${DEFAULT_SIMULATION.publishEverySeconds}]
  --steps-per-upload N  student training steps owed per accepted upload                         [${DEFAULT_SIMULATION.stepsPerUpload}]
  --staleness-exponent A  teacher weight (1 + staleness)^−A of an upload                        [${DEFAULT_SIMULATION.stalenessExponent}]
  --max-staleness N     uploads more than N versions behind are refused with 'resync'           [${DEFAULT_SIMULATION.maxStaleness}]
  --slowdown LIST       emulated device slowness per client, round-robin, e.g. 1,1,1,1,1,2,2,4,4,8   [1]
  --time-budget S       stop each run S seconds after all clients connected (compare by time)  [off]
  --targets LIST        accuracy levels to report the time to, e.g. 0.7,0.75,0.8                [0.7,0.75,0.8]

 continual learning:
  --scenario S          none | class-incremental | drift (the clients' data changes task by task)   [none]
  --classes-per-task N  classes per task                                                        [${DEFAULT_SIMULATION.classesPerTask}]
  --rounds-per-task N   rounds each task lasts (rounds = tasks × this)                         [${DEFAULT_SIMULATION.roundsPerTask}]
`;

export async function main(argv: string[]): Promise<void> {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      strategy: { type: 'string', default: 'ensemble' },
      clients: { type: 'string' },
      rounds: { type: 'string' },
      partition: { type: 'string' },
      alpha: { type: 'string' },
      'shards-per-client': { type: 'string' },
      'proxy-size': { type: 'string' },
      'proxy-subset': { type: 'string' },
      'local-epochs': { type: 'string' },
      models: { type: 'string' },
      student: { type: 'string' },
      codec: { type: 'string' },
      aggregator: { type: 'string' },
      temperature: { type: 'string' },
      'temperature-decay': { type: 'string' },
      'mutual-beta': { type: 'string' },
      'prev-lambda': { type: 'string' },
      'publish-steps': { type: 'string' },
      'publish-seconds': { type: 'string' },
      'steps-per-upload': { type: 'string' },
      'staleness-exponent': { type: 'string' },
      'max-staleness': { type: 'string' },
      slowdown: { type: 'string' },
      targets: { type: 'string' },
      'time-budget': { type: 'string' },
      scenario: { type: 'string' },
      'classes-per-task': { type: 'string' },
      'rounds-per-task': { type: 'string' },
      'no-logit-adjust': { type: 'boolean' },
      'ntd-beta': { type: 'string' },
      'distill-epochs': { type: 'string' },
      'client-eval': { type: 'string' },
      'bank-decay': { type: 'string' },
      workers: { type: 'string' },
      seed: { type: 'string' },
      'data-dir': { type: 'string' },
      backend: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (v.help) {
    console.log(HELP);
    return;
  }
  const num = (x: string | undefined, name: string): number | undefined => {
    if (x === undefined) return undefined;
    const n = Number(x);
    if (!Number.isFinite(n)) throw new Error(`--${name} must be a number, got '${x}'`);
    return n;
  };
  const oneOf = <T extends string>(x: string | undefined, allowed: readonly T[], name: string): T | undefined => {
    if (x === undefined) return undefined;
    if (!allowed.includes(x as T)) throw new Error(`--${name} must be one of ${allowed.join(', ')}, got '${x}'`);
    return x as T;
  };
  const opts: Partial<SimulationOptions> = {
    clients: num(v.clients, 'clients'),
    rounds: num(v.rounds, 'rounds'),
    partition: oneOf(v.partition, ['dirichlet', 'shards', 'iid'] as const, 'partition'),
    alpha: num(v.alpha, 'alpha'),
    shardsPerClient: num(v['shards-per-client'], 'shards-per-client'),
    proxySize: num(v['proxy-size'], 'proxy-size'),
    proxySubset: num(v['proxy-subset'], 'proxy-subset'),
    localEpochs: num(v['local-epochs'], 'local-epochs'),
    models: v.models?.split(',').map((m) => oneOf(m.trim(), MODEL_KINDS, 'models') as ModelKind),
    student: oneOf(v.student, MODEL_KINDS, 'student'),
    codec: oneOf(v.codec, LOGIT_CODECS, 'codec'),
    aggregator: oneOf(v.aggregator, AGGREGATORS, 'aggregator'),
    temperature: num(v.temperature, 'temperature'),
    temperatureDecay: num(v['temperature-decay'], 'temperature-decay'),
    mutualBeta: num(v['mutual-beta'], 'mutual-beta'),
    publishEverySteps: num(v['publish-steps'], 'publish-steps'),
    publishEverySeconds: num(v['publish-seconds'], 'publish-seconds'),
    stepsPerUpload: num(v['steps-per-upload'], 'steps-per-upload'),
    stalenessExponent: num(v['staleness-exponent'], 'staleness-exponent'),
    maxStaleness: num(v['max-staleness'], 'max-staleness'),
    slowdown: v.slowdown?.split(',').map((x) => num(x, 'slowdown')!),
    timeBudgetS: num(v['time-budget'], 'time-budget'),
    accuracyTargets: v.targets?.split(',').map((x) => num(x, 'targets')!),
    scenario: oneOf(v.scenario, SCENARIOS, 'scenario'),
    classesPerTask: num(v['classes-per-task'], 'classes-per-task'),
    roundsPerTask: num(v['rounds-per-task'], 'rounds-per-task'),
    logitAdjust: v['no-logit-adjust'] ? false : undefined,
    ntdBeta: num(v['ntd-beta'], 'ntd-beta'),
    distillEpochs: num(v['distill-epochs'], 'distill-epochs'),
    clientEvalSize: num(v['client-eval'], 'client-eval'),
    bankDecay: num(v['bank-decay'], 'bank-decay'),
    workers: num(v.workers, 'workers'),
    seed: num(v.seed, 'seed'),
    dataDir: v['data-dir'],
    backend: v.backend,
  };
  for (const k of Object.keys(opts) as (keyof SimulationOptions)[]) if (opts[k] === undefined) delete opts[k];
  const strategies = (v.strategy === 'compare' ? 'ensemble,fedavg' : v.strategy!).split(',').map((x) => oneOf(x.trim(), STRATEGIES, 'strategy')!);

  const lambdas = (v['prev-lambda'] ?? '0').split(',').map((x) => num(x, 'prev-lambda')!);

  const out = v.out ?? `results/simulate-${strategies.join('-')}${opts.scenario && opts.scenario !== 'none' ? `-${opts.scenario}` : ''}.json`;
  mkdirSync(dirname(out), { recursive: true });
  const results: SimulationResult[] = [];
  const total = strategies.length * lambdas.length;
  for (const s of strategies) {
    for (const prevStudentLambda of lambdas) {
      const r = await runSimulation({ ...opts, strategy: s, prevStudentLambda });
      printSummary(r);
      results.push(r);
      // After every run, so a long comparison that is stopped midway keeps what it measured.
      writeFileSync(out, JSON.stringify(total > 1 ? { runs: results } : results[0], null, 2));
    }
  }
  if (results.length > 1) printComparison(results);
  console.log(`\nresults written to ${out}`);
}

function printSummary(r: SimulationResult): void {
  const s = r.summary;
  console.log(
    `\n${r.options.strategy}: final student accuracy ${pct(s.finalStudentAccuracy)} (best ${pct(s.bestStudentAccuracy)}) on ${r.data.test} test images` +
      `${r.data.isSubset ? ' (SUBSET)' : ''}; uplink ${kb(s.uplinkPerClientRound)} and downlink ${kb(s.downlinkPerClientRound)} per client-round; ${s.seconds.toFixed(0)} s`,
  );
  if (s.timeToAccuracy.length) {
    console.log(`time to accuracy (s from all clients connected): ${s.timeToAccuracy.map((t) => `${pct(t.target)}: ${t.seconds === null ? 'not reached' : t.seconds.toFixed(0)}`).join(', ')}`);
  }
  if (r.staleness) {
    const st = r.staleness;
    console.log(
      `online: ${st.accepted} uploads taken in; staleness in student versions: mean ${st.staleness.mean.toFixed(2)}, median ${st.staleness.p50}, p90 ${st.staleness.p90}, max ${st.staleness.max}`,
    );
    console.log(`staleness histogram (versions behind: uploads): ${st.histogram.map((n, i) => `${i}: ${n}`).filter((_, i) => st.histogram[i] > 0).join(', ')}`);
  }
  if (r.continual) {
    const c = r.continual;
    console.log(`\n${c.scenario.kind}, ${c.scenario.tasks.length} tasks × ${c.scenario.roundsPerTask} rounds, previous-student λ = ${r.options.prevStudentLambda}:`);
    console.log(
      table(
        ['task', 'classes', 'acc at end of task', 'best acc', 'final acc', 'forgetting'],
        c.tasks.map((t) => [t.task, t.classes.join(','), pct(t.atEndOfTask), pct(t.best), pct(t.final), pct(t.forgetting)]),
      ),
    );
    console.log(`average final accuracy over tasks ${pct(c.averageAccuracy)}, average forgetting (tasks 1..${c.tasks.length - 1}) ${pct(c.averageForgetting)}`);
  }
  if (r.options.strategy !== 'fedavg') {
    const weights = r.studentParams * 4;
    console.log(
      `the student's weights are ${kb(weights)} (${r.studentParams} × 4 B): distillation uplink is ${((100 * s.uplinkPerClientRound) / weights).toFixed(1)}% of one FedAvg upload` +
        ` (measure FedAvg itself on the same split: npm run demo:fedavg, or --strategy compare)`,
    );
  }
  console.log();
}

function printComparison(runs: SimulationResult[]): void {
  const label = (r: SimulationResult) => r.options.strategy + (runs.some((x) => x.options.prevStudentLambda !== runs[0].options.prevStudentLambda) ? ` λ=${r.options.prevStudentLambda}` : '');
  console.log('Runs compared (same split, same seed, same student architecture):');
  console.log(
    table(
      ['run', 'final student', 'best student', 'final client (mean)', 'uplink/client-round', 'downlink/client-round', ...runs[0].summary.timeToAccuracy.map((t) => `to ${pct(t.target)} s`), 'seconds'],
      runs.map((r) => [
        label(r),
        pct(r.summary.finalStudentAccuracy),
        pct(r.summary.bestStudentAccuracy),
        pct(r.summary.finalClientAccuracy),
        kb(r.summary.uplinkPerClientRound),
        kb(r.summary.downlinkPerClientRound),
        ...r.summary.timeToAccuracy.map((t) => (t.seconds === null ? '-' : t.seconds.toFixed(0))),
        r.summary.seconds.toFixed(0),
      ]),
    ),
  );
  if (runs.every((r) => r.continual)) {
    console.log('\nForgetting (best minus final accuracy per task):');
    console.log(
      table(
        ['run', ...runs[0].continual!.tasks.map((t) => `T${t.task} {${t.classes.join(',')}}`), 'avg forgetting', 'avg final acc'],
        runs.map((r) => [label(r), ...r.continual!.tasks.map((t) => pct(t.forgetting)), pct(r.continual!.averageForgetting), pct(r.continual!.averageAccuracy)]),
      ),
    );
  }
  const avg = runs.find((r) => r.options.strategy === 'fedavg');
  for (const r of runs) {
    if (avg && r !== avg) console.log(`uplink per client-round: ${r.options.strategy} sends ${((100 * r.summary.uplinkPerClientRound) / avg.summary.uplinkPerClientRound).toFixed(1)}% of FedAvg's bytes`);
  }
}
