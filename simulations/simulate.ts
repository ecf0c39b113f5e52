import { fork, type ChildProcess } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { subset } from '../shared/data/dataset.ts';
import { accuracyOf } from '../shared/distill/aggregators.ts';
import type { ModelKind } from '../shared/models/builders.ts';
import { countParams } from '../shared/models/builders.ts';
import type { LogitCodecName } from '../shared/tensor/logit-codec.ts';
import { initBackend, type BackendInfo } from '../shared/compute/backend.ts';
import { createAggregator } from '../server/app.ts';
import type { PrivacyConfig, ServerConfig } from '../server/config.ts';
import type { PrivacyStatus } from '../shared/dashboard-feed.ts';
import type { LogSink } from '../server/logger.ts';
import { checkConfig, defaultsFor, settingsFor } from '../shared/settings/index.ts';
import type { OnlineStats, RoundSummary } from '../server/coordinator.ts';
import { FASHION_MNIST_CLASSES, loadFashionMnist } from '../datasets/fashion-mnist.ts';
import { fitProxySize } from '../datasets/proxy-size.ts';
import { splitForFederation, type PartitionKind } from '../shared/data/federated-split.ts';
import type { WorkerReport, WorkerStart } from './client-worker.ts';
import { kb, pct, table } from './report.ts';
import { ATTACK_KINDS, chooseAttackers, type AttackKind } from './attacks.ts';
import { continualReport, makeScenario, rowsPerTask, taskAccuracy, taskOfRound, type ContinualReport, type ScenarioKind } from './continual.ts';

/** The server settings a simulation passes through unchanged. */
const SERVER_KNOBS = [
  'rounds', 'strategy', 'proxySubset', 'localEpochs', 'student', 'aggregator', 'logitAdjust', 'ntdBeta', 'temperature',
  'temperatureDecay', 'prevStudentLambda', 'mutualBeta', 'publishEverySteps', 'publishEverySeconds', 'stepsPerUpload',
  'stalenessExponent', 'maxStaleness', 'distillEpochs', 'distillFill', 'distillThreads', 'distillAugment', 'distillBatchSize', 'distillLearningRate', 'studentCodec', 'bankDecay', 'uncertainRows', 'batchSize', 'learningRate', 'seed', 'roundTimeoutS',
  'trimFraction', 'maxShare', 'claimFactor', 'reputationDecay', 'fedavgAggregator',
] as const satisfies readonly (keyof ServerConfig)[];
type ServerKnobs = (typeof SERVER_KNOBS)[number];

/** The privacy settings (nested ServerConfig objects) a simulation passes through: every row under them. */
const PRIVACY_KEYS = settingsFor('simulate').map((s) => s.key).filter((k) => k.startsWith('privacy.') || k.startsWith('secureAggregation.'));

export interface SimulationOptions extends Pick<ServerConfig, ServerKnobs | 'privacy' | 'secureAggregation'> {
  clients: number;
  partition: PartitionKind;
  alpha: number;
  shardsPerClient: number;
  proxySize: number;
  /** Client architectures, assigned round-robin (e.g. ['cnn','mlp'] = half and half). */
  models: ModelKind[];
  codec: LogitCodecName;
  /** Logits kept per row with topk/topk8 (undefined: the codec's default). */
  topK?: number;
  workers: number;
  /** Test rows each client evaluates its own model on (0 = none); the student is always evaluated on the full test set. */
  clientEvalSize: number;
  /** Emulated device slowness per client, round-robin (e.g. [1, 1, 4] = every third client 4× slower). */
  slowdown: number[];
  /** Continual-learning scenario: the clients' private data changes task by task. */
  scenario: ScenarioKind;
  classesPerTask: number;
  roundsPerTask: number;
  /** Stop after this many seconds from all clients connected (rounds/versions then only cap it); 0 = no budget. */
  timeBudgetS: number;
  /** Accuracy levels to report the time to (seconds from all clients connected). */
  accuracyTargets: number[];
  /** Make some clients attackers of this kind (attacks.ts); absent = every client honest. */
  attack?: AttackKind;
  /** With `attack`: the fraction of clients that attack (round(F × clients), at least 1, picked by the seed). */
  attackFraction: number;
  dataDir?: string;
  backend?: string;
  log: (line: string) => void;
  /** The embedded server's logger (default: silent unless FEDISTILL_VERBOSE, then its lines go to `log`). */
  serverLog?: LogSink;
}

/** The simulation's own settings, besides the server knobs it passes through. */
const SIMULATION_KNOBS = [
  'clients', 'partition', 'alpha', 'shardsPerClient', 'proxySize', 'models', 'codec', 'topK', 'clientEvalSize', 'slowdown', 'scenario',
  'classesPerTask', 'roundsPerTask', 'accuracyTargets', 'timeBudgetS', 'attackFraction',
] as const satisfies readonly (keyof SimulationOptions)[];

/** The settings table's defaults (shared/settings/): the demo's, the same the server and client CLIs default to. */
export const DEFAULT_SIMULATION: SimulationOptions = {
  ...(defaultsFor('simulate', [...SERVER_KNOBS, ...SIMULATION_KNOBS, ...PRIVACY_KEYS]) as Pick<
    SimulationOptions,
    ServerKnobs | (typeof SIMULATION_KNOBS)[number] | 'privacy' | 'secureAggregation'
  >),
  workers: Math.max(1, availableParallelism()),
  log: (l) => console.log(l),
};

export interface RoundRow extends RoundSummary {
  teacherAccuracy?: number;
  /** Seconds since every client was connected, when this round (or student version) was done. */
  elapsedSeconds: number;
  /** Continual scenarios: the task the round trained on (1-based) and the student's accuracy on each task's classes. */
  task?: number;
  taskAccuracy?: number[];
}

export interface SimulationResult {
  options: Omit<SimulationOptions, 'log'>;
  data: { source: string; isSubset: boolean; train: number; test: number; proxy: number; clientSizes: number[] };
  backend: BackendInfo;
  studentParams: number;
  rounds: RoundRow[];
  summary: {
    finalStudentAccuracy?: number;
    bestStudentAccuracy?: number;
    finalTeacherAccuracy?: number;
    /** Mean over clients of their own model's accuracy on their test rows, last round. */
    finalClientAccuracy?: number;
    uplinkBytes: number;
    downlinkBytes: number;
    uplinkPerClientRound: number;
    downlinkPerClientRound: number;
    seconds: number;
    /** Seconds from all clients connected until the student first reached each accuracy target (null: never). */
    timeToAccuracy: { target: number; seconds: number | null }[];
  };
  /** Online: staleness (in student versions) of every accepted upload. */
  staleness?: OnlineStats;
  continual?: ContinualReport;
  /** The attack this run was under (absent: attack-free): its kind and which clients were the attackers. */
  attack?: { kind: AttackKind; fraction: number; attackers: string[] };
  /** With differential privacy: what the run cost (absent: no DP). */
  privacy?: SimulationPrivacy;
  /** With secure aggregation: what the protocol cost per completed round (means over those rounds). */
  secureAggregation?: { rounds: number; contributorsMin: number; secondsPerRound: number; keyBytesPerRound: number };
}

export interface SimulationPrivacy {
  /** /status's privacy at the end: the noise multiplier z the server calibrated, the mode, the federation's ε. */
  status: PrivacyStatus;
  /** The budget every simulated client enforced on its own (null: none, only a noise multiplier was given). */
  clientBudget: number | null;
  /** Per client: what it told the server (numSamples; 0/1 under DP), ε as the server counts it and as it counts it itself. */
  clients: { id: string; numSamples: number; serverEpsilon?: number; clientEpsilon?: number; uploads: number; declined: number }[];
}

/** What runSimulation takes: any option, and any part of the nested privacy settings (the rest default). */
export type SimulationInput = Partial<Omit<SimulationOptions, 'privacy' | 'secureAggregation'>> & {
  privacy?: Partial<PrivacyConfig>;
  secureAggregation?: Partial<ServerConfig['secureAggregation']>;
};

/** DP is on when either the target ε or the noise multiplier is set (shared/settings/server.ts). */
export const dpEnabled = (p: PrivacyConfig): boolean => p.epsilon > 0 || p.noiseMultiplier > 0;

// The worker is this module's sibling in the same form: client-worker.ts through tsx when this runs from the sources,
// client-worker.js with plain node when it runs compiled (dist/lib/, an installed package has no tsx).
const COMPILED = import.meta.url.endsWith('.js');
const WORKER = fileURLToPath(new URL(COMPILED ? './client-worker.js' : './client-worker.ts', import.meta.url));
const WORKER_EXEC_ARGV = COMPILED ? [] : ['--import', 'tsx'];

/** Start a real aggregator on loopback and real clients in worker processes, run the rounds, report. */
export async function runSimulation(opts: SimulationInput = {}): Promise<SimulationResult> {
  checkConfig('simulate', opts as Record<string, unknown>); // the flags' ranges, for callers that build options in code
  const o: SimulationOptions = {
    ...DEFAULT_SIMULATION,
    ...opts,
    privacy: { ...DEFAULT_SIMULATION.privacy, ...opts.privacy },
    secureAggregation: { ...DEFAULT_SIMULATION.secureAggregation, ...opts.secureAggregation },
  };
  const dp = dpEnabled(o.privacy);
  const secagg = o.secureAggregation.enabled;
  // Every client enforces a budget of its own, as a real one would: --dp-budget, else --dp-epsilon; with only a noise
  // multiplier there is no target, so the clients only count (and refuse rounds without noise).
  const clientBudget = dp ? o.privacy.budget || o.privacy.epsilon || Infinity : null;
  if (o.attack !== undefined && !ATTACK_KINDS.includes(o.attack)) throw new RangeError(`unknown attack '${o.attack}' (one of ${ATTACK_KINDS.join(', ')})`);
  const scenario = o.scenario === 'none' ? null : makeScenario(o.scenario, 10, o.classesPerTask, o.roundsPerTask);
  if (scenario && o.strategy === 'online') {
    throw new Error("--scenario needs rounds (its tasks are counted in rounds); the online strategy has none: use ensemble, mutual or fedavg");
  }
  if (scenario) o.rounds = scenario.tasks.length * scenario.roundsPerTask;
  const log = o.log;
  const t0 = performance.now();
  const backend = await initBackend({ prefer: (o.backend as never) ?? undefined, log });
  const data = await loadFashionMnist({ dir: o.dataDir, log });
  // On a smaller training set (the committed subset) the defaults that no longer fit are scaled, loudly; a value the
  // caller gave (opts) is kept, or refused when it does not fit.
  o.proxySize = fitProxySize({ requested: opts.proxySize, trainCount: data.train.count, isSubset: data.isSubset, log, flag: '--proxy-size' });
  if (o.proxySubset > o.proxySize) {
    if (opts.proxySubset !== undefined) throw new Error(`--proxy-subset ${o.proxySubset} is more than the ${o.proxySize} rows of the proxy set`);
    log(`data: ${data.isSubset ? 'SUBSET: ' : ''}proxy rows per round scaled ${o.proxySubset} → ${o.proxySize} (the whole proxy set)`);
    o.proxySubset = o.proxySize;
  }
  const split = splitForFederation(data.train, { proxySize: o.proxySize, numClients: o.clients, partition: o.partition, alpha: o.alpha, shardsPerClient: o.shardsPerClient, seed: o.seed });
  const proxy = subset(data.train, split.proxy);
  const proxyLabels = proxy.labels!; // kept by the simulator only, to score the teacher ensemble
  const token = `sim-${o.seed}-${Math.random().toString(36).slice(2)}`;
  const clientId = (i: number) => `client-${String(i).padStart(2, '0')}`;
  // The attackers depend on the seed and the client count only: an attack-free run of the same settings has the very
  // same honest clients, so the two differ by the attack alone.
  const attackers = new Set(o.attack ? chooseAttackers(o.clients, o.attackFraction, o.seed) : []);
  // `absent`: the chosen clients don't take part at all (the honest-only reference); the others are the same clients.
  const joining = Array.from({ length: o.clients }, (_, i) => i).filter((i) => !(o.attack === 'absent' && attackers.has(i)));

  const agg = createAggregator({
    proxy,
    proxyId: `fashion-mnist-proxy-${o.proxySize}-s${o.seed}`,
    classNames: [...FASHION_MNIST_CLASSES],
    validation: data.test,
    backend,
    log: o.serverLog ?? ((m: string) => void (process.env.FEDISTILL_VERBOSE && log(`[server] ${m}`))),
    config: {
      ...(Object.fromEntries(SERVER_KNOBS.map((k) => [k, o[k]])) as Pick<ServerConfig, ServerKnobs>),
      privacy: o.privacy,
      secureAggregation: o.secureAggregation,
      host: '127.0.0.1',
      port: 0,
      token,
      minClients: joining.length,
      fraction: 1,
      // The dashboard shows per-task accuracy and forgetting when it knows the tasks.
      tasks: scenario?.tasks,
    },
  });
  const studentParams = countParams(agg.coordinator.strategy.model);
  log(
    `fedistill simulate: ${o.strategy}, ${o.clients} clients (${o.models.join('/')}), student ${o.student} (${studentParams} params), ` +
      `${o.partition}${o.partition === 'dirichlet' ? ` α=${o.alpha}` : ''}, proxy ${proxy.count} (subset ${o.proxySubset}/round, ${o.codec}), ` +
      `${o.localEpochs} local epochs, backend ${backend.name}, data ${data.source}${data.isSubset ? ' (SUBSET)' : ''}`,
  );
  const ps = agg.coordinator.status().privacy;
  if (ps) {
    log(
      `privacy: DP with ${ps.mode} noise, z = ${ps.noiseMultiplier.toFixed(3)} (effective ${ps.effectiveNoiseMultiplier.toFixed(3)}), clip ${ps.clip}, ` +
        `ε per upload ${ps.epsilonPerRound.toFixed(3)}, budget ε = ${fmtEpsilon(ps.budget)} at δ = ${ps.delta}; each client's own budget ε = ${fmtEpsilon(clientBudget ?? Infinity)}`,
    );
  }
  if (secagg) log(`secure aggregation: the server learns only sums of teachers (threshold ${o.secureAggregation.threshold} of the selected)`);
  if (o.attack === 'absent') log(`absent: ${[...attackers].map(clientId).join(', ')} do not take part (${joining.length} of ${o.clients} clients join)`);
  else if (o.attack) log(`attack: ${o.attack} by ${attackers.size} of ${o.clients} clients (${[...attackers].map(clientId).join(', ')})`);
  const url = await agg.start();
  log(`watch it live: ${url}/ (dashboard)`);

  const rows: RoundRow[] = [];
  const online = agg.coordinator.status().online !== undefined;
  const testRowsPerClass = Array.from({ length: data.test.numClasses }, (_, j) => data.test.labels!.reduce((n, y) => n + (y === j ? 1 : 0), 0));
  const headers = [
    online ? 'version' : 'round',
    ...(scenario ? ['task'] : []),
    'uploads',
    'uplink',
    'downlink',
    ...(online ? ['steps', 'staleness mean/max'] : ['teacher acc (proxy)']),
    'student acc (test)',
    ...(scenario ? scenario.tasks.map((c) => `T{${c.join(',')}}`) : []),
    'client acc',
    ...(dp ? ['ε round', 'ε total'] : []),
    ...(secagg ? ['secagg K', 'secagg s', 'secagg bytes'] : []),
    online ? 'train s' : 'aggregate s',
    's',
    'elapsed s',
  ];
  let connectedAt = 0;
  let printedHeader = false;
  agg.coordinator.on('round', (s: RoundSummary, report: { teacher?: { indices: Uint32Array; probs: Float32Array } }) => {
    let teacherAccuracy: number | undefined;
    if (report.teacher) {
      const { indices, probs } = report.teacher;
      teacherAccuracy = accuracyOf(probs, Array.from(indices, (row) => proxyLabels[row]), indices.length, proxy.numClasses);
    }
    const row: RoundRow = { ...s, teacherAccuracy, elapsedSeconds: (Date.now() - connectedAt) / 1000 };
    if (scenario && s.studentPerClassAccuracy) {
      row.task = taskOfRound(scenario, s.round) + 1;
      row.taskAccuracy = scenario.tasks.map((classes) => taskAccuracy(s.studentPerClassAccuracy!, classes, testRowsPerClass));
    }
    rows.push(row);
    const cells = [
      s.round,
      ...(scenario ? [row.task ?? '-'] : []),
      online ? String(s.participants) : `${s.participants}/${s.selected}`,
      kb(s.uplinkBytes),
      kb(s.downlinkBytes),
      ...(online ? [s.trainSteps ?? 0, s.staleness ? `${s.staleness.mean.toFixed(2)}/${s.staleness.max}` : '-'] : [pct(teacherAccuracy)]),
      pct(s.studentAccuracy),
      ...(row.taskAccuracy ?? []).map(pct),
      pct(s.meanClientEvalAccuracy),
      ...(dp ? [s.privacy ? s.privacy.epsilonRound.toFixed(3) : '-', s.privacy ? s.privacy.epsilon.toFixed(3) : '-'] : []),
      ...(secagg ? (s.secureAggregation ? [s.secureAggregation.contributors, s.secureAggregation.seconds.toFixed(2), kb(s.secureAggregation.keyBytes)] : ['-', '-', '-']) : []),
      s.aggregateSeconds.toFixed(1),
      s.seconds.toFixed(1),
      row.elapsedSeconds.toFixed(1),
    ];
    const lines = table(headers, [cells]).split('\n');
    if (!printedHeader) {
      log(lines[0]);
      log(lines[1]);
      printedHeader = true;
    }
    log(lines[2]);
  });
  let stopAt: (() => void) | null = null;
  const finished = new Promise<void>((resolve) => {
    agg.coordinator.once('finished', () => resolve());
    stopAt = resolve;
  });
  let budgetTimer: ReturnType<typeof setTimeout> | null = null;
  // What each client saw of its own privacy: its ε (its accountant), uploads made and rounds it declined.
  const ownPrivacy = new Map<string, { epsilon?: number; uploads: number; declined: number }>();
  const own = (id: string) => ownPrivacy.get(id) ?? (ownPrivacy.set(id, { uploads: 0, declined: 0 }), ownPrivacy.get(id)!);

  // Clients: over worker processes, each client its own connection and partition. A round lasts as long as the
  // busiest worker's clients take to train one after the other, so the clients are dealt largest first to the least
  // loaded worker (LPT): on a Dirichlet split round-robin can leave one worker with 20% more samples than the other.
  const nWorkers = Math.max(1, Math.min(o.workers, joining.length));
  // A client's load: its samples times its architecture's training cost per sample (npm run bench, wasm: a CNN sample
  // costs ~5 MLP samples), so mixed --models are balanced by work, not by rows.
  const assignment = balanceWorkers(joining.map((i) => split.clients[i].length * TRAIN_COST_PER_SAMPLE[o.models[i % o.models.length]]), nWorkers);
  const workers: ChildProcess[] = [];
  let readyWorkers = 0;
  const workerFailed = new Promise<never>((_, reject) => {
    for (let w = 0; w < nWorkers; w++) {
      const specs = [];
      for (const j of assignment[w]) {
        const i = joining[j];
        const id = clientId(i);
        specs.push({
          clientId: id,
          model: o.models[i % o.models.length],
          codec: o.codec,
          topK: o.topK,
          rows: Array.from(split.clients[i]),
          slowdown: o.slowdown[i % o.slowdown.length],
          taskRows: scenario ? rowsPerTask(scenario, split.clients[i], data.train.labels!, `${o.seed}/${id}`) : undefined,
          attack: o.attack && o.attack !== 'absent' && attackers.has(i) ? { kind: o.attack, seed: o.seed } : undefined,
        });
      }
      const child = fork(WORKER, [], { execArgv: WORKER_EXEC_ARGV, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      child.on('message', (m: WorkerReport) => {
        if (m.type === 'ready' && ++readyWorkers === nWorkers) {
          connectedAt = Date.now();
          // A wall-clock budget: compare strategies by what they reach in the same time, not the same round count.
          if (o.timeBudgetS > 0) budgetTimer = setTimeout(() => (log(`time budget of ${o.timeBudgetS} s reached`), stopAt?.()), o.timeBudgetS * 1000);
        }
        if (m.type === 'fatal') reject(new Error(`client worker failed: ${m.message}`));
        if (m.type === 'server-error') log(`[${m.clientId}] server refused: ${m.code}: ${m.message}`);
        if (m.type === 'round-done') own(m.clientId).uploads++;
        if (m.type === 'privacy') own(m.clientId).epsilon = m.epsilon;
        if (m.type === 'declined') {
          own(m.clientId).declined++;
          log(`[${m.clientId}] declined round ${m.round}: ${m.reason}`);
        }
      });
      child.on('exit', (code) => code && reject(new Error(`client worker exited with code ${code}`)));
      const start: WorkerStart = {
        type: 'start', url, token, dataDir: data.dir, clients: specs, evalSize: o.clientEvalSize, seed: o.seed, backend: o.backend, roundsPerTask: scenario?.roundsPerTask,
        // Simulated clients trust this server when it is told to hold the noise centrally (--dp-noise central).
        privacy: clientBudget === null ? undefined : { epsilon: Number.isFinite(clientBudget) ? clientBudget : null, delta: o.privacy.delta, trustAggregator: o.privacy.noise === 'central' },
      };
      child.send(start);
      workers.push(child);
    }
  });

  let endStatus: ReturnType<typeof agg.coordinator.status> | null = null;
  try {
    await Promise.race([finished, workerFailed]);
    endStatus = agg.coordinator.status(); // before close: the clients' last numSamples and ε, the final privacy status
  } finally {
    if (budgetTimer) clearTimeout(budgetTimer);
    for (const w of workers) {
      w.removeAllListeners('exit');
      if (w.connected) w.send({ type: 'stop' });
    }
    await agg.close();
    await Promise.all(workers.map((w) => new Promise<void>((r) => (w.exitCode !== null ? r() : (w.once('exit', () => r()), setTimeout(() => { w.kill('SIGKILL'); r(); }, 5000))))));
  }

  const done = rows.filter((r) => r.status === 'completed');
  const uploads = done.reduce((n, r) => n + r.participants, 0);
  const uplink = rows.reduce((n, r) => n + r.uplinkBytes, 0);
  const downlink = rows.reduce((n, r) => n + r.downlinkBytes, 0);
  const accs = done.map((r) => r.studentAccuracy).filter((a): a is number => a !== undefined);
  const { log: _log, serverLog: _serverLog, ...options } = o;
  return {
    options,
    data: { source: data.source, isSubset: data.isSubset, train: data.train.count, test: data.test.count, proxy: proxy.count, clientSizes: split.clients.map((c) => c.length) },
    backend,
    studentParams,
    rounds: rows,
    summary: {
      finalStudentAccuracy: accs.at(-1),
      bestStudentAccuracy: accs.length ? Math.max(...accs) : undefined,
      finalTeacherAccuracy: done.at(-1)?.teacherAccuracy,
      finalClientAccuracy: done.at(-1)?.meanClientEvalAccuracy,
      uplinkBytes: uplink,
      downlinkBytes: downlink,
      uplinkPerClientRound: uploads ? uplink / uploads : 0,
      downlinkPerClientRound: uploads ? downlink / uploads : 0,
      seconds: (performance.now() - t0) / 1000,
      timeToAccuracy: o.accuracyTargets.map((target) => ({ target, seconds: rows.find((r) => (r.studentAccuracy ?? 0) >= target)?.elapsedSeconds ?? null })),
    },
    staleness: agg.coordinator.status().online,
    // Indexed by round: a round that did not complete (no quorum, failure) is a gap, not a shift of every later task.
    continual: scenario
      ? continualReport(scenario, Array.from({ length: o.rounds }, (_, i) => done.find((r) => r.round === i + 1)?.studentPerClassAccuracy ?? []), testRowsPerClass)
      : undefined,
    attack: o.attack ? { kind: o.attack, fraction: o.attackFraction, attackers: [...attackers].map(clientId) } : undefined,
    privacy:
      endStatus?.privacy && clientBudget !== null
        ? {
            status: endStatus.privacy,
            clientBudget: Number.isFinite(clientBudget) ? clientBudget : null,
            clients: endStatus.clients
              .map((c) => ({ id: c.id, numSamples: c.numSamples, serverEpsilon: c.epsilon, clientEpsilon: ownPrivacy.get(c.id)?.epsilon, uploads: ownPrivacy.get(c.id)?.uploads ?? 0, declined: ownPrivacy.get(c.id)?.declined ?? 0 }))
              .sort((a, b) => a.id.localeCompare(b.id)),
          }
        : undefined,
    secureAggregation: secagg ? secureAggregationCost(done) : undefined,
  };
}

/** Means over the rounds that ran the protocol: its extra seconds and key-exchange/unmasking bytes, and the fewest contributors. */
function secureAggregationCost(done: RoundRow[]): SimulationResult['secureAggregation'] {
  const sa = done.map((r) => r.secureAggregation).filter((x): x is NonNullable<RoundRow['secureAggregation']> => x !== undefined);
  const mean = (f: (x: (typeof sa)[number]) => number) => (sa.length ? sa.reduce((n, x) => n + f(x), 0) / sa.length : 0);
  return { rounds: sa.length, contributorsMin: sa.length ? Math.min(...sa.map((x) => x.contributors)) : 0, secondsPerRound: mean((x) => x.seconds), keyBytesPerRound: mean((x) => x.keyBytes) };
}

/** ε as a table shows it: 3 decimals, ∞ for no limit. */
export function fmtEpsilon(e: number): string {
  return Number.isFinite(e) ? (e >= 100 ? e.toFixed(0) : e.toFixed(3)) : '∞';
}

/** Relative training cost of one sample per architecture (wasm, batch 128: CNN 2,423 vs MLP 12,974 samples/s). */
const TRAIN_COST_PER_SAMPLE: Record<ModelKind, number> = { mlp: 1, cnn: 5 };

/**
 * Longest-processing-time-first: positions of `loads` dealt to `bins` lists, largest first, each to the currently
 * lightest bin (ties to the lower bin, so the deal is deterministic); within a bin, positions stay in order.
 */
export function balanceWorkers(loads: readonly number[], bins: number): number[][] {
  const order = loads.map((_, i) => i).sort((a, b) => loads[b] - loads[a] || a - b);
  const total = new Array<number>(bins).fill(0);
  const out: number[][] = Array.from({ length: bins }, () => []);
  for (const i of order) {
    let best = 0;
    for (let b = 1; b < bins; b++) if (total[b] < total[best]) best = b;
    out[best].push(i);
    total[best] += loads[i];
  }
  return out.map((b) => b.sort((x, y) => x - y));
}
