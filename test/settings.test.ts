import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { BACKEND_PREFERENCES } from '../shared/compute/backend.ts';
import { AGGREGATORS } from '../shared/distill/aggregators.ts';
import { MODEL_KINDS } from '../shared/protocol/model-kinds.ts';
import { DEFAULT_FRAME_LIMITS } from '../shared/protocol/validate.ts';
import { LOGIT_CODECS, VALUE_CODECS } from '../shared/tensor/logit-codec.ts';
import {
  BACKENDS, checkConfig, COMMANDS, defaultOf, envOf, flagUsage, getPath, readSettings, renderHelp, SCENARIO_NAMES, settingsFor, STRATEGIES,
  UsageError, valueProblem, type Command, type Setting,
} from '../shared/settings/index.ts';
import { SETTINGS } from '../shared/settings/table.ts';
import { readCommandLine } from '../server/command-line.ts';
import { checkServerConfig, DEFAULT_CONFIG, SERVER_CONFIG_SETTINGS } from '../server/config.ts';
import { DEFAULT_SIMULATION, runSimulation } from '../simulations/simulate.ts';
import { SCENARIOS } from '../simulations/continual.ts';
import { runCli } from './helpers.ts';

const BIN = fileURLToPath(new URL('../bin/fedistill.mjs', import.meta.url));
/** What a command needs besides the flag under test (the client needs its data named). */
const BASE: Record<Command, Record<string, string>> = { server: { token: 's3cret' }, client: { 'data-dir': '/nonexistent' }, simulate: {} };
/** The server's ways to authenticate clients exclude each other: a flag of them is tried with what it needs instead of BASE. */
const AUTH_BASE: Record<string, Record<string, string>> = {
  credentials: { 'state-dir': '/var/lib/fedistill' },
  'insecure-no-auth': {},
  'tls-cert': { token: 's3cret', 'tls-key': '/etc/fedistill/key.pem' },
  'tls-key': { token: 's3cret', 'tls-cert': '/etc/fedistill/cert.pem' },
};

/** A valid value for a setting, as typed on the command line, that differs from its default where one exists. */
const SAMPLES: Record<string, string> = {
  url: 'https://fl.example:9443/',
  id: 'alice-01',
  proxy: 'images:/srv/proxy',
  validation: 'idx:/a/images.gz,/a/labels.gz',
  tasks: '0,1;2,3;4,5',
  classes: 'cat,dog,bird',
  fashionMnistPart: '3/10:0.3',
  corsOrigins: 'https://a.example,https://b.example',
  token: 's3cret',
  viewerToken: 'v13wer',
  host: '0.0.0.0',
  stateDir: '/var/lib/fedistill',
  dataDir: '/data/private',
  proxyCache: '/tmp/cache',
  'tls.cert': '/etc/fedistill/cert.pem',
  'tls.key': '/etc/fedistill/key.pem',
  ca: '/etc/fedistill/ca.pem',
  resumeDir: '/tmp/resume',
  out: 'results/x.json',
  dpEpsilons: '1,inf',
};

function sampleFor(s: Setting, command: Command): string {
  if (SAMPLES[s.key] !== undefined) return SAMPLES[s.key];
  const d = defaultOf(s, command);
  switch (s.type) {
    case 'int':
    case 'float': {
      const r = s.range ?? {};
      const lo = r.min === undefined ? 0 : r.minOpen ? r.min + (s.type === 'int' ? 1 : 0.25) : r.min;
      const candidates = [lo, lo + 1, r.max ?? lo + 7].filter((x) => r.max === undefined || (r.maxOpen ? x < r.max : x <= r.max));
      return String(candidates.find((x) => x !== d) ?? candidates[0]);
    }
    case 'enum':
      return s.values.find((x) => x !== d)!;
    case 'list':
      if (s.item.type === 'enum') return s.item.values.slice(0, 2).join(',');
      if (s.item.type === 'string') return 'a,b';
      const lo = s.item.range?.min ?? 0;
      return s.item.range?.max !== undefined ? `${s.item.range.max / 2},${s.item.range.max}` : `${lo},${lo + 2}`;
    default:
      throw new Error(`no sample for ${s.key}`);
  }
}

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof UsageError, `expected a UsageError, got ${e}`);
    assert.equal(e.exitCode, 2);
    return e.message;
  }
  assert.fail('accepted');
}

test('the table: flags and keys unique per command, help for every command, defaults valid, lists equal their sources', () => {
  for (const command of COMMANDS) {
    const settings = settingsFor(command);
    const flags = settings.map((s) => s.flag);
    assert.equal(new Set(flags).size, flags.length, `${command}: duplicate flag`);
    assert.ok(!flags.includes('help'));
    for (const s of settings) {
      const help = typeof s.help === 'string' ? s.help : s.help[command];
      assert.ok(help && help.length > 8, `${command} --${s.flag} has no help`);
      const d = defaultOf(s, command);
      if (d !== undefined) assert.equal(valueProblem(s, d), null, `${command} --${s.flag}: default ${JSON.stringify(d)}`);
    }
  }
  assert.equal(new Set(SETTINGS.map((s) => s.key)).size, SETTINGS.length, 'duplicate key');
  const enumValues = (key: string) => (SETTINGS.find((s) => s.key === key) as { values: readonly string[] }).values;
  assert.deepEqual(enumValues('aggregator'), AGGREGATORS);
  assert.deepEqual(enumValues('codec'), LOGIT_CODECS);
  assert.deepEqual(enumValues('consensusCodec'), VALUE_CODECS);
  assert.deepEqual(enumValues('model'), MODEL_KINDS);
  assert.deepEqual(enumValues('student'), MODEL_KINDS);
  assert.deepEqual(enumValues('strategy'), STRATEGIES);
  assert.deepEqual(enumValues('scenario'), SCENARIOS);
  assert.deepEqual([...SCENARIO_NAMES], [...SCENARIOS]);
  assert.deepEqual([...BACKENDS], [...BACKEND_PREFERENCES]);
});

test('DEFAULT_CONFIG and DEFAULT_SIMULATION are the table defaults: the demo the README measured', () => {
  for (const s of SERVER_CONFIG_SETTINGS) assert.deepEqual(getPath(DEFAULT_CONFIG as never, s.key), defaultOf(s, 'server'), s.key);
  assert.deepEqual(DEFAULT_CONFIG.frameLimits, DEFAULT_FRAME_LIMITS);
  for (const s of settingsFor('simulate')) {
    if (s.key in DEFAULT_SIMULATION && defaultOf(s, 'simulate') !== undefined) assert.deepEqual((DEFAULT_SIMULATION as unknown as Record<string, unknown>)[s.key], defaultOf(s, 'simulate'), s.key);
  }
  // The shared knobs default alike in `server` and `simulate`, so server + clients reproduce `npm run demo`.
  for (const k of ['rounds', 'proxySubset', 'bankDecay', 'localEpochs', 'distillEpochs', 'distillBatchSize', 'distillLearningRate', 'uncertainRows', 'temperature', 'aggregator', 'logitAdjust', 'student', 'seed'] as const) {
    assert.deepEqual(DEFAULT_CONFIG[k], DEFAULT_SIMULATION[k], k);
  }
  // README: 10 rounds, 4,500 proxy rows a round as top-3 logits (topk8), three quarters of them where the student is least
  // sure, bank decay 0.8, 2 local epochs, CNN, the student distilled in batches of 32 at Adam's 0.002.
  assert.deepEqual(
    [DEFAULT_CONFIG.rounds, DEFAULT_CONFIG.proxySubset, DEFAULT_CONFIG.uncertainRows, DEFAULT_CONFIG.bankDecay, DEFAULT_CONFIG.localEpochs, DEFAULT_CONFIG.student, DEFAULT_CONFIG.distillBatchSize, DEFAULT_CONFIG.distillLearningRate],
    [10, 4500, 0.75, 0.8, 2, 'cnn', 32, 0.002],
  );
  assert.equal(readSettings('client', BASE.client).values.codec, 'topk8');
  assert.equal(DEFAULT_SIMULATION.codec, 'topk8');
});

test('every flag of every command parses from argv into its key, typed', () => {
  for (const command of COMMANDS) {
    for (const s of settingsFor(command)) {
      const base = Object.entries(AUTH_BASE[s.flag] ?? BASE[command]).filter(([f]) => f !== s.flag && !(s.flag === 'fashion-mnist-part' && f === 'data-dir'));
      const extra = base.flatMap(([f, v]) => [`--${f}`, v]);
      if (s.type === 'boolean') {
        const d = defaultOf(s, command) as boolean;
        const flip = readCommandLine(command, [...extra, d ? `--no-${s.flag}` : `--${s.flag}`], {});
        assert.equal(flip.values[s.key], !d, `${command} --[no-]${s.flag}`);
        // The last of --x / --no-x wins.
        const last = readCommandLine(command, [...extra, `--no-${s.flag}`, `--${s.flag}`], {});
        assert.equal(last.values[s.key], true);
        continue;
      }
      const raw = sampleFor(s, command);
      const r = readCommandLine(command, [...extra, `--${s.flag}=${raw}`], {});
      assert.ok(r.given.has(s.key), `${command} --${s.flag}`);
      const v = r.values[s.key];
      assert.notDeepEqual(v, undefined, `${command} --${s.flag}=${raw}`);
      if (s.type === 'int' || s.type === 'float') assert.equal(v, Number(raw), `${command} --${s.flag}`);
      else if (s.type === 'list') assert.deepEqual((v as unknown[]).map(String), raw.split(','), `${command} --${s.flag}`);
      else if (s.key === 'tasks') assert.deepEqual(v, [[0, 1], [2, 3], [4, 5]]);
      else if (s.key === 'classes') assert.deepEqual(v, ['cat', 'dog', 'bird']);
      else if (s.key === 'fashionMnistPart') assert.deepEqual(v, { index: 3, of: 10, alpha: 0.3 });
      else if (s.key === 'dpEpsilons') assert.deepEqual(v, [1, Infinity]);
      else assert.equal(v, raw, `${command} --${s.flag}`);
      // The space-separated form reads the same.
      assert.deepEqual(readCommandLine(command, [...extra, `--${s.flag}`, raw], {}).values[s.key], v);
    }
  }
});

test('a flag wins over its env var, which wins over the default; a bad env value names the variable', () => {
  assert.equal(readSettings('server', BASE.server, {}).values.port, 8080);
  assert.equal(readSettings('server', BASE.server, { PORT: '9000' }).values.port, 9000);
  assert.equal(readSettings('server', { ...BASE.server, port: '9100' }, { PORT: '9000' }).values.port, 9100);
  assert.deepEqual(readSettings('server', BASE.server, { FEDISTILL_CORS_ORIGIN: 'https://a.example, https://b.example' }).values.corsOrigins, ['https://a.example', 'https://b.example']);
  assert.equal(readSettings('client', BASE.client, { FEDISTILL_URL: 'http://10.1.2.3:8080' }).values.url, 'http://10.1.2.3:8080');
  assert.equal(readSettings('simulate', {}, {}).values.logLevel, 'silent');
  assert.equal(readSettings('server', BASE.server, { FEDISTILL_LOG_LEVEL: 'debug' }).values.logLevel, 'debug');
  assert.equal(refusal(() => readSettings('server', {}, { PORT: 'http' })), "PORT: 'http' is not an integer");
  // --fashion-mnist-part is parsed once, here; without ALPHA it is simulate's --alpha default.
  assert.deepEqual(readSettings('client', { 'fashion-mnist-part': ' 2/5 ' }).values.fashionMnistPart, { index: 2, of: 5, alpha: defaultOf(SETTINGS.find((s) => s.key === 'alpha')!, 'simulate') });
  assert.equal(refusal(() => readSettings('server', {}, { FEDISTILL_BACKEND: 'cuda' })), "FEDISTILL_BACKEND: 'cuda' is not one of auto, tensorflow-gpu, tensorflow, wasm, cpu");
});

test('nonsense is refused, naming the flag, the value and what is allowed', () => {
  const cases: [Command, string[], string][] = [
    ['server', ['--fraction=-1'], '--fraction: -1 is not in (0, 1]'],
    ['server', ['--fraction', '0'], '--fraction: 0 is not in (0, 1]'],
    ['server', ['--min-clients', '0'], '--min-clients: 0 is not in [1, ∞)'],
    ['server', ['--rounds=-3'], '--rounds: -3 is not in [0, ∞)'],
    ['server', ['--rounds', '2.5'], "--rounds: '2.5' is not an integer"],
    ['server', ['--quorum', '1.5'], '--quorum: 1.5 is not in (0, 1]'],
    ['server', ['--port', '70000'], '--port: 70000 is not in [0, 65535]'],
    ['server', ['--bank-decay', '0'], '--bank-decay: 0 is not in (0, 1]'],
    ['server', ['--temperature', 'hot'], "--temperature: 'hot' is not a number"],
    ['server', ['--strategy', 'gossip'], "--strategy: 'gossip' is not one of ensemble, mutual, online, fedavg"],
    ['server', ['--proxy', 'fashion-mnist:0'], "--proxy: 'fashion-mnist:0' is not fashion-mnist[:N] (N ≥ 1), images:DIR or idx:FILE"],
    ['server', ['--proxy', 'fashion-mnist:500', '--proxy-subset', '600'], '--proxy-subset: 600 is more than the 500 rows of --proxy fashion-mnist:500'],
    ['server', ['--validation', 'idx:only-one-file'], "--validation: 'idx:only-one-file' is not fashion-mnist, images:DIR, idx:IMAGES,LABELS or none"],
    ['server', ['--tasks', '0,1;x'], "--tasks: '0,1;x' is not groups of class indices like 0,1;2,3"],
    ['server', ['--classes', 'a,a'], "--classes: 'a,a' names 'a' twice"],
    ['server', ['--max-logits-bytes', '10'], '--max-logits-bytes: 10 is not in [1024, ∞)'],
    ['server', ['--fraktion', '1'], "Unknown option '--fraktion'"],
    ['server', ['--rounds'], "Option '--rounds <value>' argument missing"],
    ['server', ['extra'], "Unexpected argument 'extra'"],
    ['client', ['--codec', 'zip', '--data-dir', 'x'], "--codec: 'zip' is not one of fp32, fp16, int8, topk"],
    ['client', ['--fashion-mnist-part', '10/10'], "--fashion-mnist-part: '10/10': client index 10 is not in [0, 9]"],
    ['client', ['--fashion-mnist-part', '1/10', '--data-dir', 'x'], 'give --data-dir or --fashion-mnist-part, not both'],
    ['client', [], 'give --data-dir DIR (your private data) or --fashion-mnist-part I/N'],
    ['client', ['--give-up-after=-5', '--data-dir', 'x'], '--give-up-after: -5 is not in [0, ∞)'],
    ['client', ['--url', 'localhost:8080', '--data-dir', 'x'], "--url: 'localhost:8080' is not an http:// or https:// URL"],
    ['simulate', ['--clients', '0'], '--clients: 0 is not in [1, ∞)'],
    ['simulate', ['--proxy-size', '1000', '--proxy-subset', '1500'], '--proxy-subset: 1500 is more than --proxy-size 1000'],
    ['simulate', ['--targets', '0.7,1.5'], '--targets: 1.5 is not in (0, 1]'],
    ['simulate', ['--topk', '2', '--codec', 'fp16'], '--topk: applies to --codec topk or topk8, not fp16'],
    ['client', ['--topk', '1', '--codec', 'int8', '--data-dir', 'x'], '--topk: applies to --codec topk or topk8, not int8'],
    ['simulate', ['--models', 'cnn,resnet'], "--models: 'resnet' is not one of mlp, cnn"],
    ['simulate', ['--strategy', 'online', '--scenario', 'drift'], '--scenario drift counts its tasks in rounds; --strategy online has none (use ensemble, mutual or fedavg)'],
  ];
  for (const [command, argv, message] of cases) {
    assert.ok(refusal(() => readCommandLine(command, argv, {})).startsWith(message), `${command} ${argv.join(' ')}: ${refusal(() => readCommandLine(command, argv, {}))}`);
  }
  // Every bounded number of every command: just outside its range is refused with the range in the message.
  for (const command of COMMANDS) {
    for (const s of settingsFor(command)) {
      if ((s.type !== 'int' && s.type !== 'float') || !s.range) continue;
      const r = s.range;
      const outside = [r.min === undefined ? null : r.minOpen ? r.min : r.min - 1, r.max === undefined ? null : r.maxOpen ? r.max : r.max + 1];
      for (const x of outside) {
        if (x === null) continue;
        const base = Object.entries(BASE[command]).flatMap(([f, v]) => [`--${f}`, v]);
        const m = refusal(() => readCommandLine(command, [...base, `--${s.flag}=${x}`], {}));
        assert.match(m, new RegExp(`^--${s.flag}: ${x} is not in [\\[(]`), m);
      }
    }
  }
});

test('a config built in code meets the same ranges (createAggregator, runSimulation)', async () => {
  assert.throws(() => checkServerConfig({ fraction: -1 }), /server setting fraction \(--fraction\): -1 is not in \(0, 1\]/);
  assert.throws(() => checkServerConfig({ frameLimits: { hello: 10, logits: 1 << 20, weights: 1 << 20 } }), /frameLimits\.hello \(--max-hello-bytes\): 10 is not in \[1024, ∞\)/);
  assert.throws(() => checkServerConfig({ strategy: 'gossip' as never }), /'gossip' is not one of/);
  assert.doesNotThrow(() => checkServerConfig({ ...DEFAULT_CONFIG, token: 's3cret' }));
  assert.throws(() => checkServerConfig(DEFAULT_CONFIG), /no client authentication: give --token T/, 'an empty token is not "no auth"');
  assert.throws(() => checkConfig('simulate', { proxySize: 100, proxySubset: 200 }), /--proxy-subset: 200 is more than --proxy-size 100/);
  await assert.rejects(runSimulation({ clients: 0 }), /simulate setting clients \(--clients\): 0 is not in \[1, ∞\)/);
});

test('--help lists every flag of the command, with its default', () => {
  for (const command of COMMANDS) {
    const help = renderHelp(command, `fedistill ${command}`).replace(/\s+/g, ' ');
    for (const s of settingsFor(command)) {
      assert.ok(help.includes(flagUsage(s)), `${command} --help lacks ${flagUsage(s)}`);
      const env = envOf(s, command);
      if (env) assert.ok(help.includes(`env ${env}`), `${command} --help lacks ${env}`);
    }
  }
  // Read by the Fashion-MNIST finder: shown where --data-dir means Fashion-MNIST, not as the client's private data.
  const entry = (command: Command, flag: string) => {
    const lines = renderHelp(command, '').split('\n');
    const at = lines.findIndex((l) => l.startsWith(`  --${flag} `));
    const end = lines.findIndex((l, i) => i > at && (l.startsWith('  -') || l.trim() === ''));
    return lines.slice(at, end).join(' ').replace(/\s+/g, ' ');
  };
  for (const command of ['server', 'simulate'] as const) assert.match(entry(command, 'data-dir'), /\(env FEDISTILL_DATA_DIR\)/);
  assert.doesNotMatch(entry('client', 'data-dir'), /FEDISTILL_DATA_DIR/);
  assert.equal(readSettings('server', BASE.server, { FEDISTILL_DATA_DIR: '/srv/fm' }).values.dataDir, '/srv/fm');
  assert.equal(readSettings('client', { 'fashion-mnist-part': '1/3' }, { FEDISTILL_DATA_DIR: '/srv/fm' }).values.dataDir, undefined);
  assert.ok(renderHelp('server', '').includes('--bank-decay D'));
  assert.ok(renderHelp('server', '').includes('[0.8]'));
  assert.equal(readCommandLine('server', ['--help'], {}).help, true);
});


test('the real CLI refuses nonsense with exit status 2 before anything starts, and prints --help', async () => {
  const [fraction, clientCodec, simClients, envPort, help] = await Promise.all([
    runCli(['server', '--fraction=-1']),
    runCli(['client', '--codec', 'zip', '--data-dir', '/nonexistent']),
    runCli(['simulate', '--clients', '0']),
    runCli(['server'], { PORT: 'eighty' }),
    runCli(['server', '--help']),
  ]);
  assert.equal(fraction.code, 2);
  assert.match(fraction.stderr, /^fedistill server: --fraction: -1 is not in \(0, 1\]/);
  assert.equal(fraction.stdout, '', 'nothing started, nothing logged');
  assert.equal(clientCodec.code, 2);
  assert.match(clientCodec.stderr, /--codec: 'zip' is not one of fp32, fp16, int8, topk/);
  assert.equal(simClients.code, 2);
  assert.match(simClients.stderr, /--clients: 0 is not in \[1, ∞\)/);
  assert.equal(envPort.code, 2);
  assert.match(envPort.stderr, /PORT: 'eighty' is not an integer/);
  assert.equal(help.code, 0);
  for (const s of settingsFor('server')) assert.ok(help.stdout.includes(flagUsage(s)), `server --help lacks ${flagUsage(s)}`);
});

test('fedistill server: flags reach the config and the data loaders; JSON log lines; SIGTERM stops it', async () => {
  const args = [
    'server', '--port', '0', '--token', 's3cret', '--viewer-token', 'v13wer', '--log-format', 'json', '--proxy', 'fashion-mnist:300', '--validation', 'none', '--rounds', '3',
    '--min-clients', '4', '--bank-decay', '0.5', '--ntd-beta', '0.25', '--no-logit-adjust', '--distill-batch-size', '48',
    '--max-logits-bytes', '2000000', '--proxy-subset', '200', '--student', 'mlp', '--classes', 'a,b,c,d,e,f,g,h,i,j', '--backend', 'wasm',
  ];
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FEDISTILL_LOG_LEVEL: '' } });
  const lines: Record<string, unknown>[] = [];
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no start line in 60 s: ${JSON.stringify(lines)} ${stderr}`)), 60_000);
      let buf = '';
      child.stdout.on('data', (d) => {
        buf += d;
        for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          const rec = JSON.parse(line) as Record<string, unknown>; // every stdout line is one JSON record
          lines.push(rec);
          if (typeof rec.url === 'string' && /^listening on /.test(String(rec.msg))) (clearTimeout(t), resolve(rec.url));
        }
      });
      child.once('exit', (code) => reject(new Error(`server exited with ${code}: ${stderr}`)));
    });
    const start = lines.find((l) => String(l.msg).startsWith('listening on'))!;
    assert.equal(start.level, 30);
    assert.match(String(start.msg), /waiting for 4 clients to run 3 rounds/);
    assert.ok(lines.every((l) => typeof l.level === 'number' && typeof l.time === 'number' && typeof l.msg === 'string'));

    const viewer = { headers: { authorization: 'Bearer v13wer' } };
    const status = (await (await fetch(`${url}/status`, viewer)).json()) as { config: Record<string, unknown>; proxy: { count: number }; validation: unknown };
    assert.equal(status.config.bankDecay, 0.5);
    assert.equal(status.config.ntdBeta, 0.25);
    assert.equal(status.config.logitAdjust, false);
    assert.equal(status.config.distillBatchSize, 48);
    assert.equal(status.config.minClients, 4);
    assert.equal(status.config.proxySubset, 200);
    assert.deepEqual(status.config.frameLimits, { ...DEFAULT_FRAME_LIMITS, logits: 2_000_000 });
    assert.equal(status.proxy.count, 300, '--proxy fashion-mnist:300 reached the loader');
    assert.equal(status.validation, null, '--validation none reached the loader');
    const federation = (await (await fetch(`${url}/federation`)).json()) as { classNames: string[] };
    assert.deepEqual(federation.classNames, ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j']);
    const metrics = await fetch(`${url}/metrics`, viewer);
    assert.equal(metrics.status, 200);
    assert.match(await metrics.text(), /# TYPE fedistill_rounds_total counter/);
  } finally {
    child.kill('SIGTERM');
  }
  assert.equal(await exited, 0, stderr);
  assert.ok(lines.some((l) => /SIGTERM: shutting down/.test(String(l.msg))), JSON.stringify(lines.slice(-3)));
});
