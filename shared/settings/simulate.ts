import { AGGREGATORS } from '../distill/aggregators.ts';
import { FEDAVG_AGGREGATORS } from '../distill/weight-averaging.ts';
import { MODEL_KINDS } from '../protocol/model-kinds.ts';
import { STRATEGIES } from './server.ts';
import type { Setting } from './types.ts';

/** simulations/continual.ts's SCENARIOS (a test keeps them equal; shared/ does not import simulations/). */
export const SCENARIO_NAMES = ['none', 'class-incremental', 'drift'] as const;
export const PARTITIONS = ['dirichlet', 'shards', 'iid'] as const;

/**
 * simulations/attacks.ts implements each (README: Attacks and robustness). `absent` is the reference, not an attack:
 * the would-be attackers do not take part, so the honest clients alone set the bar a robust aggregator aims at.
 */
export const ATTACK_KINDS = ['absent', 'confident-wrong', 'label-flip', 'random', 'inflated-counts', 'collude', 'free-ride'] as const;
export type AttackKind = (typeof ATTACK_KINDS)[number];

/**
 * The rows `--aggregators` may name: a teacher aggregator (run with the first distillation strategy of --strategy,
 * ensemble if none), `fedavg` (the weights baseline with --fedavg-aggregator) or `fedavg:<its aggregator>`, or
 * `all` of them (every teacher aggregator, then fedavg with each of its aggregators).
 */
export const ATTACK_TABLE_ROWS = [...AGGREGATORS, 'fedavg', ...FEDAVG_AGGREGATORS.map((a) => `fedavg:${a}`), 'all'] as const;

/** `1,4,8,inf` → [1, 4, 8, Infinity]: target ε values, each > 0; `inf` (or ∞) is the run without DP. Duplicates are refused. */
export function parseEpsilonList(raw: string): number[] {
  const parts = raw.split(',').map((p) => p.trim()).filter((p) => p !== '');
  if (!parts.length) throw new Error(`'${raw}' needs at least one ε (e.g. 1,4,8,inf)`);
  const out = parts.map((p) => {
    if (/^(inf|infinity|∞)$/i.test(p)) return Infinity;
    const x = Number(p);
    if (!Number.isFinite(x) || !(x > 0)) throw new Error(`'${p}' is not an ε > 0 or inf`);
    return x;
  });
  if (new Set(out).size !== out.length) throw new Error(`'${raw}' names an ε twice`);
  return out;
}

/**
 * What only `fedistill simulate` takes: the federation it builds on this machine (clients, split, devices), the
 * comparisons it runs, and where the report goes. The server settings it passes through are in server.ts.
 */
export const SIMULATE_SETTINGS: readonly Setting[] = [
  {
    key: 'strategies',
    flag: 'strategy',
    type: 'list',
    item: { type: 'enum', values: [...STRATEGIES, 'compare'] },
    default: ['ensemble'],
    arg: 'LIST',
    commands: ['simulate'],
    help: 'a strategy, or a comma list run one after the other on the same split and compared (compare = ensemble, then fedavg with --fedavg-aggregator mean unless given, then the centralized ceiling)',
    group: 'simulation',
  },
  {
    key: 'ceilingEpochs',
    flag: 'ceiling-epochs',
    type: 'int',
    range: { min: 0 },
    default: 5,
    arg: 'N',
    commands: ['simulate'],
    help: "the centralized ceiling that compare runs (any --strategy when given): the student trained N epochs on the clients' pooled data with their optimizer, lr and batch, scored on the test set every epoch; 0 = skip",
    group: 'simulation',
  },
  { key: 'clients', flag: 'clients', type: 'int', range: { min: 1 }, default: 10, arg: 'N', commands: ['simulate'], help: 'simulated clients (each its own socket.io connection)', group: 'simulation' },
  { key: 'partition', flag: 'partition', type: 'enum', values: PARTITIONS, default: 'dirichlet', arg: 'P', commands: ['simulate'], help: 'how the private data is split', group: 'simulation' },
  { key: 'alpha', flag: 'alpha', type: 'float', range: { min: 0, minOpen: true }, default: 0.5, arg: 'A', commands: ['simulate'], help: 'Dirichlet concentration (smaller = more skewed)', group: 'simulation' },
  { key: 'shardsPerClient', flag: 'shards-per-client', type: 'int', range: { min: 1 }, default: 2, arg: 'N', commands: ['simulate'], help: 'with --partition shards', group: 'simulation' },
  { key: 'models', flag: 'models', type: 'list', item: { type: 'enum', values: MODEL_KINDS }, default: ['cnn'], arg: 'LIST', commands: ['simulate'], help: 'client architectures, round-robin (cnn,mlp = half and half)', group: 'simulation' },
  { key: 'workers', flag: 'workers', type: 'int', range: { min: 1 }, default: undefined, defaultText: 'one per core', arg: 'N', commands: ['simulate'], help: 'client worker processes', group: 'simulation' },
  {
    key: 'prevLambdas',
    flag: 'prev-lambda',
    type: 'list',
    item: { type: 'float', range: { min: 0 } },
    default: [0],
    arg: 'LIST',
    commands: ['simulate'],
    help: "λ of the previous-student term in the server's distillation; a comma list runs each and compares forgetting",
    group: 'distillation',
  },
  {
    key: 'slowdown',
    flag: 'slowdown',
    type: 'list',
    item: { type: 'float', range: { min: 1 } },
    default: [1],
    arg: 'LIST',
    commands: ['simulate'],
    help: 'emulated device slowness per client, round-robin, e.g. 1,1,1,1,1,2,2,4,4,8',
    group: 'online',
  },
  { key: 'timeBudgetS', flag: 'time-budget', type: 'float', range: { min: 0 }, default: 0, arg: 'S', commands: ['simulate'], help: 'stop each run S seconds after all clients connected (compare by time); 0 = off', group: 'online' },
  {
    key: 'accuracyTargets',
    flag: 'targets',
    type: 'list',
    item: { type: 'float', range: { min: 0, minOpen: true, max: 1 } },
    default: [0.7, 0.75, 0.8],
    arg: 'LIST',
    commands: ['simulate'],
    help: 'accuracy levels to report the time to',
    group: 'online',
  },
  { key: 'scenario', flag: 'scenario', type: 'enum', values: SCENARIO_NAMES, default: 'none', arg: 'S', commands: ['simulate'], help: "continual learning: the clients' data changes task by task", group: 'continual' },
  { key: 'classesPerTask', flag: 'classes-per-task', type: 'int', range: { min: 1, max: 10 }, default: 2, arg: 'N', commands: ['simulate'], help: 'classes per task', group: 'continual' },
  { key: 'roundsPerTask', flag: 'rounds-per-task', type: 'int', range: { min: 1 }, default: 4, arg: 'N', commands: ['simulate'], help: 'rounds each task lasts (rounds = tasks × this)', group: 'continual' },
  {
    key: 'attacks',
    flag: 'attack',
    type: 'list',
    item: { type: 'enum', values: [...ATTACK_KINDS, 'all'] },
    default: undefined,
    defaultText: 'none',
    arg: 'LIST',
    commands: ['simulate'],
    help: 'run with attackers, each attack in turn, and the attack-free baseline on the same split and seed; report side by side (all = every attack)',
    group: 'attacks',
  },
  {
    key: 'attackFraction',
    flag: 'attack-fraction',
    type: 'float',
    range: { min: 0, minOpen: true, max: 1 },
    default: 0.2,
    arg: 'F',
    commands: ['simulate'],
    help: 'fraction of the clients that attack: round(F × clients), at least 1, picked by --seed',
    group: 'attacks',
  },
  {
    key: 'attackRows',
    flag: 'aggregators',
    type: 'list',
    item: { type: 'enum', values: ATTACK_TABLE_ROWS },
    default: undefined,
    defaultText: '--aggregator, for each --strategy',
    arg: 'LIST',
    commands: ['simulate'],
    help: 'with --attack: the rows of the table, each run clean and under every attack (fedavg: with --fedavg-aggregator; all = every teacher aggregator, then fedavg with each of its own)',
    group: 'attacks',
  },
  {
    key: 'dpEpsilons',
    flag: 'dp-epsilons',
    type: 'custom',
    parse: parseEpsilonList,
    format: (v) => (v as number[]).map((e) => (Number.isFinite(e) ? String(e) : 'inf')).join(','),
    default: undefined,
    defaultText: 'none',
    arg: 'LIST',
    commands: ['simulate'],
    help: 'accuracy versus ε: each --strategy once per ε (> 0, or inf = no DP, e.g. 1,4,8,inf) on the same split and seed, then one table (not with --dp-epsilon)',
    group: 'privacy',
  },
  { key: 'out', flag: 'out', type: 'string', default: undefined, defaultText: 'results/simulate-<strategies>[-<scenario>].json; --attack: results/simulate-attacks.json', arg: 'FILE', commands: ['simulate'], help: 'results JSON', group: 'runtime' },
];
