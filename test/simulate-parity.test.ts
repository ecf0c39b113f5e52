/**
 * `fedistill server` + `fedistill client --fashion-mnist-part I/N` processes are the simulation run by hand (README:
 * "The demo with separate processes"): with the same settings and simulate's client ids they must give exactly the
 * per-round student accuracy and mean client accuracy that runSimulation gives. Anything the two paths set apart —
 * the split, a client's seeds (derived from its id), its eval rows, the proxy rows, a default of either command —
 * shows up here as a different number.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveRepoPath } from '../datasets/fashion-mnist.ts';
import { runSimulation } from '../simulations/simulate.ts';

const BIN = resolveRepoPath('bin', 'fedistill.mjs');
const CLIENTS = 2;
/** The settings both runs share (small: an MLP, one local and one distillation epoch, 300 proxy rows a round). */
const SHARED = { rounds: 2, student: 'mlp', localEpochs: 1, distillEpochs: 1, proxySubset: 300 } as const;
const running = new Set<ChildProcess>();
after(() => {
  for (const p of running) p.kill('SIGKILL');
});

interface RoundNumbers {
  round: number;
  studentAccuracy: number | undefined;
  meanClientEvalAccuracy: number | undefined;
}

/** Neither the Debian copy nor a download: the committed subset, in this process and in the spawned ones. */
function offlineEnv(cache: string): Record<string, string> {
  return { FEDISTILL_OFFLINE: '1', FEDISTILL_SYSTEM_DATA_DIRS: '', FEDISTILL_DATA_DIR: '', XDG_CACHE_HOME: cache };
}

function fedistill(args: string[], env: Record<string, string>): { output: () => string; exit: Promise<number | null> } {
  const proc = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(proc);
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exit = new Promise<number | null>((resolve) => proc.on('exit', (code) => (running.delete(proc), resolve(code))));
  return { output: () => out, exit };
}

test('server + CLI clients give exactly the per-round accuracies of simulate', { timeout: 240_000 }, async () => {
  const tmp = await mkdtemp(join(tmpdir(), 'fedistill-parity-'));
  after(() => rm(tmp, { recursive: true, force: true }));
  const env = offlineEnv(join(tmp, 'xdg'));

  // (a) The simulation, in this process (its clients in one worker process).
  const saved = Object.keys(env).map((k) => [k, process.env[k]] as const);
  Object.assign(process.env, env);
  let simulated: RoundNumbers[];
  try {
    const r = await runSimulation({ ...SHARED, clients: CLIENTS, models: ['mlp'], workers: 1, log: () => {} });
    simulated = r.rounds.map(({ round, studentAccuracy, meanClientEvalAccuracy }) => ({ round, studentAccuracy, meanClientEvalAccuracy }));
  } finally {
    for (const [k, v] of saved) v === undefined ? delete process.env[k] : (process.env[k] = v);
  }
  assert.equal(simulated.length, SHARED.rounds);
  for (const r of simulated) {
    assert.equal(typeof r.studentAccuracy, 'number');
    assert.equal(typeof r.meanClientEvalAccuracy, 'number');
  }

  // (b) The same federation as separate processes: what the README's two-terminal demo does.
  const server = fedistill(
    ['server', '--port', '0', '--token', 'parity-token', '--log-format', 'json', '--min-clients', String(CLIENTS), '--rounds', String(SHARED.rounds), '--student', SHARED.student,
      '--local-epochs', String(SHARED.localEpochs), '--distill-epochs', String(SHARED.distillEpochs), '--proxy-subset', String(SHARED.proxySubset)],
    env,
  );
  const url = await new Promise<string>((resolve, reject) => {
    const t = setInterval(() => {
      const m = /listening on (http:\/\/[\d.]+:\d+)/.exec(server.output());
      if (m) (clearInterval(t), resolve(m[1]));
    }, 100);
    void server.exit.then((code) => (clearInterval(t), reject(new Error(`server exited (${code}) before listening:\n${server.output()}`))));
  });
  const clients = Array.from({ length: CLIENTS }, (_, i) =>
    fedistill(
      // simulate names its clients client-00, client-01, …: a client's model init and shuffles are seeded by its id.
      ['client', '--url', url, '--token', 'parity-token', '--id', `client-${String(i).padStart(2, '0')}`, '--model', 'mlp', '--fashion-mnist-part', `${i}/${CLIENTS}`,
        '--proxy-cache', join(tmp, 'proxy-cache')],
      env,
    ),
  );
  const codes = await Promise.all(clients.map((c) => c.exit));
  codes.forEach((code, i) => assert.equal(code, 0, `client ${i}:\n${clients[i].output()}`));
  assert.equal(await server.exit, 0, server.output());

  // The server's JSON log line for each completed round carries the numbers unrounded.
  const processes: RoundNumbers[] = server
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { msg?: string } & RoundNumbers)
    .filter((e) => /^round \d+\/\d+ completed/.test(e.msg ?? ''))
    .map(({ round, studentAccuracy, meanClientEvalAccuracy }) => ({ round, studentAccuracy, meanClientEvalAccuracy }));
  assert.deepEqual(processes, simulated);
});
