/**
 * The README's "your own data" walk-through with real processes, as a user types it: `fedistill split` writes client
 * folders and a proxy folder, then `fedistill server --proxy images:…/proxy` and two `fedistill client --data-dir
 * …/client-<i>` run a 2-round federation (MLP, small proxy). Every process must exit 0.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveRepoPath } from '../datasets/fashion-mnist.ts';

const BIN = resolveRepoPath('bin', 'fedistill.mjs');
const TOKEN = 'two-terminal-token';
const running = new Set<ChildProcess>();
after(() => {
  for (const p of running) p.kill('SIGKILL');
});

interface Run {
  proc: ChildProcess;
  output: () => string;
  exit: Promise<number | null>;
}

/** `fedistill <args>` in its own process, from `cwd`, on a machine without the full Fashion-MNIST or a network. */
function fedistill(args: string[], cwd: string): Run {
  const proc = spawn(process.execPath, [BIN, ...args], {
    cwd,
    env: { ...process.env, FEDISTILL_OFFLINE: '1', FEDISTILL_SYSTEM_DATA_DIRS: '', XDG_CACHE_HOME: join(cwd, 'cache'), FEDISTILL_DATA_DIR: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(proc);
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exit = new Promise<number | null>((resolve) =>
    proc.on('exit', (code) => {
      running.delete(proc);
      resolve(code);
    }),
  );
  return { proc, output: () => out, exit };
}

/** Resolves with the first match of `re` in the process's output; rejects if it exits first. */
function waitFor(run: Run, re: RegExp, what: string): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    const check = () => {
      const m = re.exec(run.output());
      if (m) {
        clearInterval(t);
        resolve(m);
      }
    };
    const t = setInterval(check, 100);
    void run.exit.then((code) => {
      clearInterval(t);
      const m = re.exec(run.output());
      if (m) resolve(m);
      else reject(new Error(`${what}: exited (${code}) before printing ${re}:\n${run.output()}`));
    });
  });
}

test('split, then a server and two clients on the split folders, as the README shows', { timeout: 300_000 }, async () => {
  const cwd = await mkdtemp(join(tmpdir(), 'fedistill-two-terminal-'));
  after(() => rm(cwd, { recursive: true, force: true }));

  // 1. fedistill split (no full Fashion-MNIST here: the committed subset, said loudly).
  const split = fedistill(['split', '--clients', '2', '--proxy-size', '400', '--seed', '3', '--out', './fl-data'], cwd);
  assert.equal(await split.exit, 0, split.output());
  assert.match(split.output(), /SUBSET/);
  assert.match(split.output(), /fedistill server --proxy images:fl-data\/proxy --validation images:fl-data\/validation/);
  const manifest = JSON.parse(readFileSync(join(cwd, 'fl-data', 'federation.json'), 'utf8'));
  assert.equal(manifest.proxy.count, 400);
  assert.equal(manifest.clients.length, 2);

  // 2. The server, on the proxy and validation folders split wrote.
  const server = fedistill(
    ['server', '--port', '0', '--token', TOKEN, '--proxy', 'images:./fl-data/proxy', '--validation', 'images:./fl-data/validation',
      '--rounds', '2', '--min-clients', '2', '--student', 'mlp', '--proxy-subset', '200', '--local-epochs', '1', '--distill-epochs', '1'],
    cwd,
  );
  const [, url] = await waitFor(server, /listening on (http:\/\/[\d.]+:\d+)/, 'server');
  assert.match(server.output(), /proxy: 400 unlabelled images \(28×28×1\)/);

  // 3. Two clients, one per split folder.
  const clients = [0, 1].map((i) =>
    fedistill(['client', '--url', url, '--token', TOKEN, '--id', `c${i}`, '--model', 'mlp', '--data-dir', `./fl-data/client-${i}`], cwd),
  );
  const codes = await Promise.all(clients.map((c) => c.exit));
  for (const [i, c] of clients.entries()) {
    assert.equal(codes[i], 0, `client ${i}:\n${c.output()}`);
    assert.match(c.output(), /class sub-folders of images/);
    assert.match(c.output(), new RegExp(`private data: ${manifest.clients[i].count} labelled samples`));
    // The student was scored on the validation folder, and the client was told so.
    assert.match(c.output(), /federation complete after round 2: student accuracy \d+\.\d\d%/);
  }
  // The server is a job too: after the last round it tells the clients, saves and exits 0 by itself.
  assert.equal(await server.exit, 0, server.output());
  assert.match(server.output(), /federation complete; exiting/);
});
