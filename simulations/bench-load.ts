/**
 * Load benchmark: N honest lightweight clients (protocol-level, precomputed logits, no TensorFlow.js) register with
 * one aggregator (MLP student, ensemble) and complete rounds. Prints numbers, asserts nothing.
 *
 *   npm run bench:load -- [--clients 1000] [--rounds 1] [--client-model cnn|mlp] [--proxy-subset 200]
 *                         [--swarm child|inline] [--idle 0]
 *
 * The aggregator runs in this process (its RSS, heap and event-loop delay are what is measured); the clients run in
 * a child process (--swarm child, default) or in this one (--swarm inline: the two event loops compete, and RSS
 * counts the clients too). --client-model cnn: the clients declare an architecture that is not the student's (what a
 * client with its own model does, docs/protocol.md "Choosing `model`"), so no weights go down; mlp: every selected
 * client is sent the whole student each round (941 KB) and again at the end. --idle N adds N registered clients that
 * never upload. Figures: time to register N clients (swarm start → the round opens with all N), the round from open
 * to every upload in and to aggregated, the `end` (it carries the final student to every client) until all have it,
 * server memory, uplink/downlink bytes, event-loop delay p50/p99/max (perf_hooks.monitorEventLoopDelay, 10 ms
 * resolution) over registration, the rounds and the end.
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { cpus } from 'node:os';
import { createAggregator } from '../server/app.ts';
import { DEFAULT_CONFIG, type ServerConfig } from '../server/config.ts';
import { initBackend } from '../shared/compute/backend.ts';
import { subset } from '../shared/data/dataset.ts';
import { splitForFederation } from '../shared/data/federated-split.ts';
import { loadSubset } from '../datasets/fashion-mnist.ts';
import { nearestMeanLogits, Swarm, SwarmProcess, type GroupReport, type SwarmGroup, type SwarmPlan } from '../test/fixtures/swarm.ts';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : dflt;
};
const N = Number(opt('clients', '1000'));
const ROUNDS = Number(opt('rounds', '1'));
const IDLE = Number(opt('idle', '0'));
const MODEL = opt('client-model', 'cnn') as 'cnn' | 'mlp';
const PROXY_SUBSET = Number(opt('proxy-subset', '200'));
const SWARM = opt('swarm', 'child');
const TEACHERS = 8;
const TOKEN = 'bench-load-token-0123456789';
if (!(N >= 1) || !(ROUNDS >= 1) || !['cnn', 'mlp'].includes(MODEL) || !['child', 'inline'].includes(SWARM)) {
  console.error('usage: bench-load [--clients N] [--rounds R] [--client-model cnn|mlp] [--proxy-subset K] [--swarm child|inline] [--idle N]');
  process.exit(2);
}

const MB = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
const ms = (x: number) => `${x.toFixed(0)} ms`;
const mem = () => {
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, external: m.external + m.arrayBuffers };
};
/**
 * The histogram's figures so far, then reset (one histogram stays enabled), with the longest gap between ticks of a
 * 5 ms interval timer over the same window: a cross-check that catches a single long stall however it falls.
 */
let stall = 0;
let lastTick = performance.now();
const ticker = setInterval(() => {
  const now = performance.now();
  stall = Math.max(stall, now - lastTick - 5);
  lastTick = now;
}, 5);
const window = (h: IntervalHistogram) => {
  const s = `p50 ${(h.percentile(50) / 1e6).toFixed(1)} ms, p99 ${(h.percentile(99) / 1e6).toFixed(1)} ms, max ${(h.max / 1e6).toFixed(1)} ms ` +
    `(longest stall ${Math.max(0, stall).toFixed(0)} ms)`;
  h.reset();
  stall = 0;
  return s;
};

await initBackend({ prefer: 'wasm', log: () => {} });
const { train, test } = await loadSubset();
const split = splitForFederation(train, { proxySize: 1000, numClients: TEACHERS, partition: 'dirichlet', alpha: 0.5, shardsPerClient: 2, seed: 3 });
const proxy = subset(train, split.proxy);
// Eight private partitions, each a nearest-class-mean teacher over the whole proxy set, computed once up front:
// the clients answer any round from these without computing anything.
const teachers = { logits: split.clients.map((rows) => nearestMeanLogits(subset(train, rows), proxy)), cols: proxy.numClasses };

const config: Partial<ServerConfig> = {
  host: '127.0.0.1', port: 0, token: TOKEN, student: 'mlp', strategy: 'ensemble', rounds: ROUNDS, minClients: N + IDLE, fraction: 1,
  quorum: 0.5, roundTimeoutS: 300, proxySubset: PROXY_SUBSET, distillEpochs: 1,
};
// The abuse limits (issue 10) are sized for this federation where they exist: room for every client.
const known = DEFAULT_CONFIG as unknown as Record<string, unknown>;
if ('maxClients' in known) (config as Record<string, unknown>).maxClients = Math.max(N + IDLE, Number(known.maxClients));
const agg = createAggregator({ proxy, validation: subset(test, Uint32Array.from({ length: 500 }, (_, i) => i)), config, log: () => {} });
const url = await agg.start();

const marks: Record<string, number> = {};
const c = agg.coordinator;
c.on('round-start', (round: number) => (marks[`open${round}`] ??= performance.now()));
c.on('phase', (e: { round: number; phase: string }) => (marks[`${e.phase}${e.round}`] ??= performance.now()));
c.on('all-told', () => (marks.allTold ??= performance.now()));
const finished = new Promise<void>((r) => c.once('finished', () => r()));
const allTold = new Promise<void>((r) => c.once('all-told', () => r()));

const groups: SwarmGroup[] = [{ kind: 'light', count: N, idPrefix: 'light-', model: MODEL }];
if (IDLE) groups.push({ kind: 'idle', count: IDLE, idPrefix: 'idle-', model: MODEL });
const plan: SwarmPlan = { url, token: TOKEN, groups, teachers, concurrency: 64 };

global.gc?.();
const before = mem();
const peak = { ...before };
const sampler = setInterval(() => {
  const m = mem();
  peak.rss = Math.max(peak.rss, m.rss);
  peak.heapUsed = Math.max(peak.heapUsed, m.heapUsed);
  peak.external = Math.max(peak.external, m.external);
}, 50);
const eld = monitorEventLoopDelay({ resolution: 10 });
eld.enable();
const delays: Record<string, string> = {};
let doneMem = before;
c.on('phase', (e: { round: number; phase: string }) => {
  if (e.phase !== 'done' || e.round !== ROUNDS) return;
  delays.rounds = window(eld);
  doneMem = mem();
});

const t0 = performance.now();
let child: SwarmProcess | null = null;
let inline: Swarm | null = null;
let swarmReports: () => Promise<{ reports: GroupReport[]; rssBytes?: number }>;
if (SWARM === 'child') {
  child = new SwarmProcess();
  void child.start(plan, 600_000);
  swarmReports = () => child!.report();
} else {
  inline = new Swarm(plan);
  void inline.start();
  swarmReports = async () => ({ reports: inline!.reports });
}
await new Promise<void>((r) => c.once('round-start', () => r()));
delays.register = window(eld);
const registered = mem();
await finished;
const afterRound = mem();
await Promise.race([allTold, new Promise((r) => setTimeout(r, 60_000))]);
// 'all-told' means written to the sockets; the clients have it once their reports say so (bounded wait).
let got = await swarmReports();
while (got.reports[0].ended + (got.reports[1]?.ended ?? 0) < N + IDLE && performance.now() - marks.allTold < 120_000) {
  await new Promise((r) => setTimeout(r, 100));
  got = await swarmReports();
}
marks.endReceived = performance.now();
delays.end = window(eld);
eld.disable();
clearInterval(ticker);
clearInterval(sampler);
const { reports, rssBytes: swarmRss } = got;
const history = c.history;

const light = reports[0];
console.log(`bench-load: ${N} lightweight clients${IDLE ? ` + ${IDLE} registered-idle` : ''} (hello.model ${MODEL}) against one aggregator (ensemble, mlp student), ` +
  `${ROUNDS} round(s) of ${PROXY_SUBSET} proxy rows × 10 classes fp16; swarm ${SWARM === 'child' ? 'in a child process' : 'in the server process'}; ` +
  `${cpus().length} CPUs, node ${process.version}`);
console.log(`  register ${N + IDLE} clients (swarm start → round 1 opens with all): ${ms(marks.open1 - t0)}`);
for (const h of history) {
  const open = marks[`open${h.round}`];
  console.log(
    `  round ${h.round}: ${h.status}, ${h.participants}/${h.selected} uploads; open → all uploads in ${ms(marks[`closed${h.round}`] - open)}, ` +
      `→ aggregated ${ms(marks[`aggregate${h.round}`] !== undefined ? marks[`evaluate${h.round}`] - open : NaN)}, → done ${ms(marks[`done${h.round}`] - open)} ` +
      `(aggregate+distill ${h.aggregateSeconds.toFixed(2)} s); uplink ${MB(h.uplinkBytes)} (${(h.uplinkBytes / Math.max(1, h.participants)).toFixed(0)} B/client), downlink ${MB(h.downlinkBytes)}`,
  );
}
console.log(`  end (the final student, to every client): written ${ms(marks.allTold - marks[`done${ROUNDS}`])} and received by all ${ms(marks.endReceived - marks[`done${ROUNDS}`])} after the last round was done`);
console.log(`  server memory: before RSS ${MB(before.rss)} heap ${MB(before.heapUsed)} | registered RSS ${MB(registered.rss)} heap ${MB(registered.heapUsed)} | ` +
  `round done RSS ${MB(doneMem.rss)} heap ${MB(doneMem.heapUsed)} | end sent RSS ${MB(afterRound.rss)} | ` +
  `peak RSS ${MB(peak.rss)}, heap ${MB(peak.heapUsed)}, buffers ${MB(peak.external)}`);
console.log(`  server event-loop delay while registering: ${delays.register}; during the rounds (distillation runs on this loop): ` +
  `${delays.rounds}; sending the end: ${delays.end}`);
console.log(`  clients: ${light.welcomed} welcomed, ${light.acked} uploads acked (${light.duplicateAcks} twice), ${light.ended} told end; ` +
  `received ${MB(light.bytesIn)} (${light.roundsWithModel} rounds with the student, ${MB(light.modelBytes)}), sent ${MB(light.bytesOut)}` +
  (Object.keys(light.refused).length ? `; refused: ${JSON.stringify(light.refused)}` : '') +
  (Object.keys(light.received).some((k) => k.startsWith('error')) ? `; received: ${JSON.stringify(light.received)}` : '') +
  (swarmRss ? `; swarm process RSS ${MB(swarmRss)}` : ''));
if (reports[1]) console.log(`  idle: ${reports[1].welcomed} welcomed, ${reports[1].roundsWithModel} rounds with the student (${MB(reports[1].modelBytes)}), closed by server ${reports[1].closedByServer}`);

await child?.close();
inline?.close();
await agg.close();
process.exit(0);
