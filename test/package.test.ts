/**
 * fedistill as a user gets it: `npm pack` (which runs the build), the tarball installed into a scratch project without
 * the network, then used the way the README says — plain JS importing every entry and running a round, TypeScript
 * with node16 resolution type-checking against the shipped declarations, the `fedistill` bin (version, a simulation
 * whose client workers run from dist/lib, the server), and the README's "Use it as a library" snippets as written.
 *
 * Offline install: the repository's package-lock.json has no `resolved` URLs, so npm would ask the registry for each
 * package's metadata. The scratch project gets its own lockfile instead — the tarball's dependency closure, walked
 * through the repository's lockfile the way Node resolves (nested node_modules first), with registry URLs added — and
 * `npm ci --offline` then takes every tarball from the npm cache that the repository's own `npm ci` filled.
 * Walking the closure from the packed package.json (not copying every package) means a runtime dependency that is
 * only a devDependency (tsx, typescript) is missing here, as it would be for a user.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const REPO = fileURLToPath(new URL('..', import.meta.url));
const PKG = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as PackageJson;
const HAS_DATASETS = existsSync(join(REPO, 'datasets', 'index.ts'));
const TOKEN = 'package-test-token';
const VIEWER = 'package-test-viewer-token';

interface PackageJson {
  name?: string;
  version: string;
  license?: string;
  engines?: Record<string, string>;
  bin?: Record<string, string>;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
  resolved?: string;
  dev?: boolean;
  devOptional?: boolean;
}

let dir = '';
let scratch = '';
let pkgDir = '';
let tarballFiles: string[] = [];
const children = new Set<ChildProcess>();

// npm run from `npm test` carries the outer npm's settings in npm_* variables (its prefix, its lifecycle event): the
// scratch project's npm gets only the cache and registry from them.
const env: NodeJS.ProcessEnv = Object.fromEntries(
  Object.entries(process.env).filter(([k]) => !k.startsWith('npm_') || /^npm_config_(cache|registry|userconfig)$/.test(k)),
);

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fedistill-package-'));
  scratch = join(dir, 'project');
  mkdirSync(scratch);
  // npm pack runs `prepare` (the whole build: dist/lib, the isomorphic check, dist/browser), so the tarball is what
  // the sources say now; a failing build fails here.
  await run('npm', ['pack', '--pack-destination', dir, '--loglevel=error'], { cwd: REPO, env, maxBuffer: 64 << 20 }).catch((e) => {
    throw new Error(`npm pack (the build) failed:\n${String(e.stdout).slice(-4000)}\n${e.stderr}`);
  });
  const tgz = `${PKG.name}-${PKG.version}.tgz`;
  tarballFiles = (await run('tar', ['-tzf', join(dir, tgz)], { maxBuffer: 16 << 20 })).stdout.split('\n').filter(Boolean).map((f) => f.replace(/^package\//, ''));

  const registry = (env.npm_config_registry ?? 'https://registry.npmjs.org/').replace(/\/?$/, '/');
  const lock = JSON.parse(readFileSync(join(REPO, 'package-lock.json'), 'utf8')) as { packages: Record<string, PackageJson> };
  const project = { name: 'scratch', version: '1.0.0', private: true, type: 'module', dependencies: { fedistill: `file:../${tgz}` } };
  writeFileSync(join(scratch, 'package.json'), JSON.stringify(project, null, 2));
  writeFileSync(join(scratch, 'package-lock.json'), JSON.stringify(scratchLock(lock.packages, project, `file:../${tgz}`, registry), null, 2));
  await run('npm', ['ci', '--offline', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: scratch, env, maxBuffer: 64 << 20 }).catch((e) => {
    throw new Error(`offline install of the tarball failed (the npm cache is filled by \`npm ci\` in the repository): ${e.stderr || e.message}`);
  });
  pkgDir = join(scratch, 'node_modules', 'fedistill');
  prepareData();
}, { timeout: 120_000 });

after(() => {
  for (const c of children) c.kill('SIGKILL');
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('the tarball holds the compiled library, the browser bundle and the Fashion-MNIST subset, and nothing else', () => {
  for (const f of ['package.json', 'bin/fedistill.mjs', 'dist/lib/server/index.js', 'dist/lib/server/index.d.ts', 'dist/lib/client/index.js',
    'dist/lib/client/node/index.js', 'dist/lib/shared/protocol/index.js', 'dist/lib/simulations/client-worker.js', 'dist/lib/server/strategies/distill-worker.js', 'dist/browser/fedistill.js',
    'dist/browser/join.html', 'dist/browser/tfjs-backend-wasm-simd.wasm', 'data/fashion-mnist-subset/train-images-idx3-ubyte.gz']) {
    assert.ok(tarballFiles.includes(f), `the tarball holds ${f}`);
  }
  if (HAS_DATASETS) assert.ok(tarballFiles.includes('dist/lib/datasets/index.js'));
  const unwanted = tarballFiles.filter((f) => /^(test|results|state|test-output|scripts|docs|\.fedistill|\.scratch)\//.test(f) || (f.endsWith('.ts') && !f.endsWith('.d.ts')) || f.endsWith('.map'));
  assert.deepEqual(unwanted, [], 'no tests, sources, local state, results or source maps');
  // Each entry of the exports map points at a shipped file.
  for (const [entry, target] of Object.entries(PKG_EXPORTS())) {
    for (const file of typeof target === 'string' ? [target] : Object.values(target)) assert.ok(tarballFiles.includes(file.replace(/^\.\//, '')), `${entry} → ${file}`);
  }
  assert.ok(!existsSync(join(scratch, 'node_modules', 'tsx')) && !existsSync(join(scratch, 'node_modules', 'typescript')), 'no tsx or TypeScript installed for the user');
});

test('plain JS imports every entry and runs a round: an aggregator from fedistill, two clients from fedistill/client', { timeout: 90_000 }, async () => {
  writeFileSync(join(scratch, 'flow.mjs'), FLOW);
  const { stdout, stderr } = await run(process.execPath, ['flow.mjs'], { cwd: scratch, env: { ...env, HAS_DATASETS: HAS_DATASETS ? '1' : '' }, timeout: 80_000, maxBuffer: 16 << 20 });
  const line = stdout.split('\n').find((l) => l.startsWith('RESULT '));
  assert.ok(line, `flow.mjs reported a result:\n${stdout.slice(-2000)}${stderr.slice(-2000)}`);
  const r = JSON.parse(line.slice('RESULT '.length));
  assert.deepEqual(r.round, { round: 1, status: 'completed', participants: 2 }, `the clients said:\n${stderr.slice(-3000)}`);
  assert.deepEqual(r.clientRounds, [1, 1], 'each client finished round 1');
  assert.equal(r.proxyCached, 1, 'the Node file cache from fedistill/client/node holds the proxy set');
  assert.equal(r.sdkBundle, 200, 'the installed aggregator serves the browser bundle from its dist/browser');
  assert.equal(r.demoData, 200, 'and the committed subset for the join page');
  assert.equal(r.frameRoundTrip, true);
  assert.match(r.badFrame, /.+/, 'the protocol validator refuses a bad frame with a message');
  assert.ok(r.strategies.includes('ensemble'));
});

test('TypeScript with node16 resolution type-checks against the shipped declarations', { timeout: 60_000 }, async () => {
  writeFileSync(join(scratch, 'check.ts'), TYPES_CHECK);
  writeFileSync(join(scratch, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      target: 'ES2022', module: 'node16', moduleResolution: 'node16', strict: true, noEmit: true, skipLibCheck: true,
      // @types/node is the repository's (a devDependency, so not in the scratch install).
      types: ['node'], typeRoots: [join(REPO, 'node_modules', '@types')],
    },
    files: ['check.ts'],
  }));
  const tsc = join(REPO, 'node_modules', '.bin', 'tsc');
  const r = await run(tsc, ['-p', 'tsconfig.json'], { cwd: scratch, env }).catch((e) => e);
  assert.equal(r.code ?? 0, 0, `tsc failed:\n${r.stdout}${r.stderr}`);
  // The @ts-expect-error lines prove the types are real: had an entry resolved to `any`, they would be unused errors.
  writeFileSync(join(scratch, 'check.ts'), `${TYPES_CHECK}\nexport const broken: number = 'not a number';\n`);
  const bad = await run(tsc, ['-p', 'tsconfig.json'], { cwd: scratch, env }).catch((e) => e);
  assert.match(`${bad.stdout}`, /check\.ts\(\d+,\d+\): error TS2322/, 'the check does fail on a type error');
});

test('the installed bin: --version, and a simulation whose client workers run from dist/lib', { timeout: 90_000 }, async () => {
  for (const flag of ['--version', '-v']) {
    const { stdout } = await run('npx', ['--offline', 'fedistill', flag], { cwd: scratch, env });
    assert.equal(stdout.trim(), PKG.version);
  }
  const out = join(scratch, 'sim.json');
  const bin = join(scratch, 'node_modules', '.bin', 'fedistill');
  const sim = await run(bin, ['simulate', '--clients', '2', '--rounds', '1', '--workers', '1', '--models', 'mlp', '--student', 'mlp', '--proxy-size', '1000',
    '--proxy-subset', '200', '--local-epochs', '1', '--distill-epochs', '1', '--distill-threads', '2', '--backend', 'wasm', '--data-dir', subsetDir(), '--out', out],
    { cwd: scratch, env: { ...env, FEDISTILL_VERBOSE: '1' }, timeout: 80_000, maxBuffer: 16 << 20 });
  // The student distilled on a worker thread run from dist/lib too (a failed one is reported in the server's log).
  assert.doesNotMatch(sim.stdout + sim.stderr, /distillation worker thread|distilling on 1 thread/);
  const result = JSON.parse(readFileSync(out, 'utf8'));
  const rounds = (result.runs?.[0] ?? result).rounds;
  assert.equal(rounds.length, 1);
  assert.equal(rounds[0].participants, 2, 'both clients (in a worker process started without tsx) took part');
});

test('the README\'s "Use it as a library" snippets run as written against the installed package', { timeout: 120_000 }, async () => {
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  const snippets = [...readme.matchAll(/<!-- library-snippet -->\s*```js\n([\s\S]*?)```/g)].map((m) => m[1]);
  assert.equal(snippets.length, 2, 'the README has the service snippet and the client snippet');
  // The env points the dataset finder at the package's subset (fast, no download) and the file cache at the scratch dir.
  const snippetEnv = { ...env, PORT: '0', FEDISTILL_DATA_DIR: subsetDir(), HOME: scratch, XDG_CACHE_HOME: join(scratch, '.cache') };

  // 1. The service: an aggregator and two clients in one process; it ends by itself after its rounds.
  writeFileSync(join(scratch, 'service.mjs'), snippets[0]);
  const service = await run(process.execPath, ['service.mjs'], { cwd: scratch, env: snippetEnv, timeout: 90_000, maxBuffer: 16 << 20 });
  assert.match(service.stdout, /round 1: 2 clients, student accuracy 0\.\d+/);
  assert.match(service.stdout, /round 2: 2 clients, student accuracy 0\.\d+/);

  // 2. The client, against `fedistill server` from the installed bin, with its URL and token substituted.
  const server = start(join(scratch, 'node_modules', '.bin', 'fedistill'), ['server', '--port', '0', '--token', TOKEN, '--rounds', '1', '--min-clients', '1',
    '--student', 'mlp', '--proxy', 'fashion-mnist:1000', '--proxy-subset', '200', '--local-epochs', '1', '--distill-epochs', '1', '--backend', 'wasm',
    '--keep-serving', '--viewer-token', VIEWER], snippetEnv); // keeps /status up after its one round, for the check below
  const url = (await server.waitFor(/listening on (http:\/\/[0-9.]+:\d+)/, 60_000))[1];
  writeFileSync(join(scratch, 'client.mjs'), snippets[1].replaceAll('http://127.0.0.1:8080', url).replaceAll('s3cret', TOKEN));
  const client = start(process.execPath, ['client.mjs'], snippetEnv);
  await client.waitFor(/round 1: \d+ bytes of logits sent/, 60_000);
  const status = await poll(async () => {
    const s = (await (await fetch(`${url}/status`, { headers: { authorization: `Bearer ${VIEWER}` } })).json()) as { lastRound?: { round: number; status: string; participants: number } | null };
    return s.lastRound?.round === 1 ? s.lastRound : null;
  }, 30_000);
  assert.equal(status.status, 'completed');
  assert.equal(status.participants, 1);
  assert.ok(readdirSync(join(scratch, '.cache', 'fedistill', 'proxy')).some((f) => f.endsWith('.msgpack')), 'the file proxy cache wrote under HOME');
  client.kill();
  server.kill();
});

function PKG_EXPORTS(): Record<string, string | Record<string, string>> {
  return (JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as { exports: Record<string, string | Record<string, string>> }).exports;
}

function subsetDir(): string {
  return join(pkgDir, 'data', 'fashion-mnist-subset');
}

/** The client snippet's private data: 600 rows of the subset as idx files in ./my-data (gzip-free). */
function prepareData(): void {
  // Written by a tiny script run with the installed package, so it also goes through fedistill's exports.
  mkdirSync(join(scratch, 'my-data'));
  writeFileSync(join(scratch, 'prepare-data.mjs'), `
import { readFileSync, writeFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { datasetFromIdx, datasetToIdx, subset } from 'fedistill';
const read = (f) => gunzipSync(readFileSync(new URL('./node_modules/fedistill/data/fashion-mnist-subset/' + f, import.meta.url)));
const all = datasetFromIdx(read('train-images-idx3-ubyte.gz'), read('train-labels-idx1-ubyte.gz'));
const idx = datasetToIdx(subset(all, Array.from({ length: 600 }, (_, i) => 5000 + i)));
writeFileSync('my-data/train-images-idx3-ubyte', idx.images);
writeFileSync('my-data/train-labels-idx1-ubyte', idx.labels);
`);
  const r = spawnSync(process.execPath, ['prepare-data.mjs'], { cwd: scratch, env, encoding: 'utf8' });
  assert.equal(r.status, 0, `prepare-data.mjs failed: ${r.stderr}`);
}

/**
 * The scratch project's lockfile: the tarball as `node_modules/fedistill` and the closure of its dependencies taken
 * from the repository's lockfile (where the repository root plays fedistill's part), each with its registry URL.
 */
function scratchLock(repo: Record<string, PackageJson>, project: { name: string; version: string; dependencies: Record<string, string> }, tarball: string, registry: string) {
  const packages: Record<string, unknown> = {
    '': { name: project.name, version: project.version, dependencies: project.dependencies },
    'node_modules/fedistill': { version: PKG.version, resolved: tarball, license: PKG.license, dependencies: PKG.dependencies, bin: PKG.bin, engines: PKG.engines },
  };
  const visit = (from: string, p: PackageJson) => {
    const optional = new Set([...Object.keys(p.optionalDependencies ?? {}), ...Object.keys(p.peerDependenciesMeta ?? {}).filter((n) => p.peerDependenciesMeta![n].optional)]);
    for (const name of Object.keys({ ...p.dependencies, ...p.optionalDependencies, ...p.peerDependencies })) {
      // Node's lookup: this package's own node_modules, then each enclosing one, up to the top.
      let base = from;
      let found: string | null = null;
      for (;;) {
        const path = `${base ? `${base}/` : ''}node_modules/${name}`;
        if (repo[path]) {
          found = path;
          break;
        }
        if (!base) break;
        const i = base.lastIndexOf('/node_modules/');
        base = i < 0 ? '' : base.slice(0, i);
      }
      if (!found) {
        if (optional.has(name)) continue;
        throw new Error(`${name}, needed by ${from || 'fedistill'}, is not in package-lock.json`);
      }
      if (packages[found]) continue;
      const { dev: _d, devOptional: _o, ...entry } = repo[found];
      const pkgName = found.slice(found.lastIndexOf('node_modules/') + 'node_modules/'.length);
      packages[found] = { ...entry, resolved: entry.resolved ?? `${registry}${pkgName}/-/${pkgName.split('/').pop()}-${entry.version}.tgz` };
      visit(found, repo[found]);
    }
  };
  visit('', PKG);
  return { name: project.name, version: project.version, lockfileVersion: 3, requires: true, packages };
}

/** A child process whose output is searched as it comes (and echoed on failure); killed at the end of the test file. */
function start(cmd: string, args: string[], childEnv: NodeJS.ProcessEnv) {
  const child = spawn(cmd, args, { cwd: scratch, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let output = '';
  const waiters: (() => void)[] = [];
  const onData = (b: Buffer) => {
    output += b.toString();
    for (const w of waiters.splice(0)) w();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  return {
    waitFor(re: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`${args[0]}: no ${re} in ${timeoutMs} ms:\n${output.slice(-3000)}`)), timeoutMs);
        const check = () => {
          const m = re.exec(output);
          if (m) return clearTimeout(t), resolve(m);
          if (child.exitCode !== null) return clearTimeout(t), reject(new Error(`${args[0]} exited (${child.exitCode}) before ${re}:\n${output.slice(-3000)}`));
          waiters.push(check);
        };
        child.once('exit', () => waiters.splice(0).forEach((w) => w()));
        check();
      });
    },
    kill() {
      child.kill('SIGKILL');
      children.delete(child);
    },
  };
}

async function poll<T>(f: () => Promise<T | null>, timeoutMs: number): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await f().catch(() => null);
    if (v) return v;
    if (Date.now() > until) throw new Error(`not reached in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

// ---------------- what the scratch project runs ----------------

const FLOW = `
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import * as server from 'fedistill';
import * as sdk from 'fedistill/client';
import * as clientNode from 'fedistill/client/node';
import * as protocol from 'fedistill/protocol';

const { createAggregator, datasetFromIdx, datasetToIdx, initBackend, splitForFederation, subset, STRATEGIES } = server;
await initBackend({ prefer: 'wasm', log: () => {} });
let train;
if (process.env.HAS_DATASETS) {
  const datasets = await import('fedistill/datasets');
  ({ train } = await datasets.loadSubset()); // finds the subset inside the installed package
} else {
  const read = (f) => gunzipSync(readFileSync(new URL('./node_modules/fedistill/data/fashion-mnist-subset/' + f, import.meta.url)));
  train = datasetFromIdx(read('train-images-idx3-ubyte.gz'), read('train-labels-idx1-ubyte.gz'));
}
const split = splitForFederation(train, { proxySize: 400, numClients: 2, partition: 'dirichlet', alpha: 0.5, seed: 3 });
const token = 'flow-token';
const aggregator = createAggregator({
  proxy: { ...subset(train, split.proxy), labels: null },
  validation: subset(train, Array.from({ length: 300 }, (_, i) => 5500 + i)),
  config: { host: '127.0.0.1', port: 0, token, student: 'mlp', rounds: 1, minClients: 2, proxySubset: 200, localEpochs: 1, distillEpochs: 1, roundTimeoutS: 240 },
});
const url = await aggregator.start();

// Each client's private data: idx files in its own directory, read back with fedistill/client/node.
const clients = [];
for (const [i, rows] of split.clients.entries()) {
  const dir = 'private-' + i;
  mkdirSync(dir, { recursive: true });
  const idx = datasetToIdx(subset(train, rows.slice(0, 400)));
  writeFileSync(dir + '/train-images-idx3-ubyte', idx.images);
  writeFileSync(dir + '/train-labels-idx1-ubyte', idx.labels);
  // The class count is the federation's: idx labels alone can't tell a class nobody here holds, so ask the server.
  const { train: data } = await clientNode.loadPrivateData(dir, { serverUrl: url });
  clients.push(new sdk.FedistillClient({ url, token, clientId: 'c' + i, model: 'mlp', data, proxyCache: new clientNode.FileProxyCache('proxy-cache'), log: (m) => console.error('[c' + i + '] ' + m) }));
}
const clientRounds = [0, 0];
clients.forEach((c, i) => c.on('round-done', (r) => (clientRounds[i] = r.round)));
const finished = new Promise((resolve) => aggregator.coordinator.once('finished', resolve));
await Promise.all(clients.map((c) => c.start()));
await finished;
const h = aggregator.coordinator.history[0];

const sdkBundle = (await fetch(url + '/sdk/fedistill.js')).status;
const demoData = (await fetch(url + '/demo-data/fashion-mnist-subset/train-labels-idx1-ubyte.gz')).status;
const frame = protocol.encodeFrame({ type: 'ack', round: 1 });
let badFrame = '';
try {
  protocol.parseClientFrame('hello', protocol.encodeFrame({ type: 'hello', protocolVersion: 'x' }));
} catch (e) {
  badFrame = e.message;
}
for (const c of clients) c.stop();
await aggregator.close();
console.log('RESULT ' + JSON.stringify({
  round: { round: h.round, status: h.status, participants: h.participants },
  clientRounds,
  proxyCached: readdirSync('proxy-cache').filter((f) => f.endsWith('.msgpack')).length,
  sdkBundle,
  demoData,
  frameRoundTrip: protocol.decodeFrame(frame).round === 1,
  badFrame,
  strategies: STRATEGIES,
}));
process.exit(0);
`;

const TYPES_CHECK = `
import { createAggregator, DEFAULT_CONFIG, STRATEGIES, type Aggregator, type AggregatorOptions, type ServerConfig, type StrategyName } from 'fedistill';
import { FedistillClient, MemoryProxyCache, type ClientOptions, type RoundDone } from 'fedistill/client';
import { FileProxyCache, loadPrivateData } from 'fedistill/client/node';
import { decodeFrame, encodeFrame, PROTOCOL_VERSION, type HelloMsg } from 'fedistill/protocol';
import type { FedistillClient as BundleClient } from 'fedistill/browser';
${HAS_DATASETS ? "import * as datasets from 'fedistill/datasets';\nexport const loaders: object = datasets;" : ''}

export function serve(proxy: AggregatorOptions['proxy']): Aggregator {
  const strategy: StrategyName = STRATEGIES[0];
  const config: Partial<ServerConfig> = { ...DEFAULT_CONFIG, rounds: 1, strategy };
  // @ts-expect-error rounds is a number: the config is typed, not any
  const wrong: Partial<ServerConfig> = { rounds: 'one' };
  void wrong;
  return createAggregator({ proxy, config });
}

export function join(o: ClientOptions): FedistillClient {
  const c = new FedistillClient({ ...o, proxyCache: new FileProxyCache('cache') });
  c.on('round-done', (r: RoundDone) => {
    const bytes: number = r.uploadBytes;
    void bytes;
  });
  // @ts-expect-error the SDK's events are typed
  c.on('no-such-event', () => {});
  return c;
}

export const hello: HelloMsg['type'] = 'hello';
// @ts-expect-error PROTOCOL_VERSION is a number
export const version: string = PROTOCOL_VERSION;
export const frame: Uint8Array = encodeFrame({ type: 'ack' });
export const decoded: unknown = decodeFrame(frame);
export const load: (dir: string) => Promise<{ train: unknown }> = loadPrivateData;
export const memory = new MemoryProxyCache();
export type InTheBundle = BundleClient;
`;
