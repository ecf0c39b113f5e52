/**
 * Browser benchmark, in real Chromium (Debian's, via playwright-core), against Node in the same run:
 *   - local training speed (samples/s, batch 64, the SDK's own trainSupervised step) of the MLP and the CNN on the
 *     backend the SDK picks in a page like /join, the same in a cross-origin-isolated page (tfjs then loads its
 *     threaded wasm build), on WebGL when the browser has it (forced, even on a software renderer, to show why the
 *     SDK passes it over), and on Node's wasm;
 *   - the SDK bundle's size (what a page downloads: JS modules + the .wasm binary it uses), raw and gzipped;
 *   - the time from opening the join page to its first upload, against a real aggregator.
 *
 *   npm run bench:browser            (CHROMIUM_PATH overrides /usr/bin/chromium)
 *
 * Writes results/bench-browser.json.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { spawnSync } from 'node:child_process';
import Fastify from 'fastify';
import fastifyStatic from '@fastify/static';
import { chromium, type Page } from 'playwright-core';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../shared/compute/backend.ts';
import { buildModel, type ModelKind } from '../shared/models/builders.ts';
import { trainSupervised } from '../shared/models/training.ts';
import { Rng } from '../shared/data/rng.ts';
import type { Dataset } from '../shared/data/dataset.ts';
import { createAggregator } from '../server/app.ts';
import { FASHION_MNIST_CLASSES, loadSubset, resolveRepoPath } from '../datasets/fashion-mnist.ts';
import { BROWSER_DIST } from '../server/routes/browser.ts';
import { demoShard } from '../client/browser-data.ts';

const BATCH = 64;
const SAMPLES: Record<ModelKind, number> = { mlp: 4096, cnn: 2048 };
const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

function randomData(n: number, seed = 1): Dataset {
  const rng = new Rng(`bench/${seed}`);
  const images = Uint8Array.from({ length: n * 784 }, () => Math.floor(rng.next() * 256));
  const labels = Uint8Array.from({ length: n }, () => Math.floor(rng.next() * 10));
  return { images, labels, count: n, shape: [28, 28, 1], numClasses: 10 };
}

/** samples/s of one epoch of trainSupervised (after a warm-up epoch on 256 rows); the same code runs in the page. */
async function nodeSpeed(kind: ModelKind): Promise<number> {
  const data = randomData(SAMPLES[kind]);
  const model = buildModel({ kind, inputShape: [28, 28, 1], numClasses: 10, seed: 1 });
  const opt = tf.train.adam(1e-3);
  const rng = new Rng('order');
  const random = () => rng.next();
  await trainSupervised(model, opt, { ...data, count: 256, images: data.images.subarray(0, 256 * 784), labels: data.labels!.subarray(0, 256) }, { epochs: 1, batchSize: BATCH, random });
  const r = await trainSupervised(model, opt, data, { epochs: 1, batchSize: BATCH, random });
  model.dispose();
  opt.dispose();
  return r.samples / r.seconds;
}

const PAGE_BENCH = `async (cfg) => {
  const sdk = await import('/sdk/fedistill.js');
  const out = { backend: null, device: null, tried: null, speeds: {} };
  let info;
  if (cfg.force) { await sdk.tf.setBackend(cfg.force); await sdk.tf.ready(); info = { name: sdk.tf.getBackend() }; }
  else info = await sdk.initBrowserBackend({ log: () => {} });
  out.backend = info.name; out.device = info.device ?? null; out.tried = info.tried ?? null;
  for (const kind of cfg.kinds) {
    const n = cfg.samples[kind];
    let s = 7;
    const rnd = () => ((s = (s * 16807) % 2147483647) / 2147483647);
    const images = Uint8Array.from({ length: n * 784 }, () => Math.floor(rnd() * 256));
    const labels = Uint8Array.from({ length: n }, () => Math.floor(rnd() * 10));
    const data = { images, labels, count: n, shape: [28, 28, 1], numClasses: 10 };
    const model = sdk.buildModel({ kind, inputShape: [28, 28, 1], numClasses: 10, seed: 1 });
    const opt = sdk.tf.train.adam(1e-3);
    const warm = { ...data, count: 256, images: images.subarray(0, 256 * 784), labels: labels.subarray(0, 256) };
    await sdk.trainSupervised(model, opt, warm, { epochs: 1, batchSize: cfg.batch, random: rnd });
    const r = await sdk.trainSupervised(model, opt, data, { epochs: 1, batchSize: cfg.batch, random: rnd });
    out.speeds[kind] = r.samples / r.seconds;
    model.dispose(); opt.dispose();
  }
  return out;
}`;

async function pageSpeed(page: Page, cfg: { force?: string; kinds: ModelKind[]; samples: Record<string, number> }) {
  return page.evaluate(`(${PAGE_BENCH})(${JSON.stringify({ ...cfg, batch: BATCH })})`) as Promise<{ backend: string; device: string | null; tried: unknown; speeds: Record<string, number> }>;
}

function bundleSize(): { files: string[]; raw: number; gzip: number; wasm: string; wasmRaw: number; wasmGzip: number } {
  const dist = BROWSER_DIST();
  const meta = JSON.parse(readFileSync(`${dist}/meta.json`, 'utf8')) as { outputs: Record<string, { imports: { path: string; kind: string }[] }> };
  const seen = new Set<string>();
  const visit = (p: string) => {
    if (seen.has(p) || !meta.outputs[p]) return;
    seen.add(p);
    for (const i of meta.outputs[p].imports) visit(i.path);
  };
  visit(Object.keys(meta.outputs).find((k) => k.endsWith('/fedistill.js'))!);
  const files = [...seen];
  const bytes = files.map((f) => readFileSync(resolveRepoPath(f)));
  const wasm = 'tfjs-backend-wasm-simd.wasm';
  const w = readFileSync(`${dist}/${wasm}`);
  return { files: files.map((f) => f.split('/').pop()!), raw: bytes.reduce((n, b) => n + b.length, 0), gzip: bytes.reduce((n, b) => n + gzipSync(b).length, 0), wasm, wasmRaw: w.length, wasmGzip: gzipSync(w).length };
}

async function main(): Promise<void> {
  if (!existsSync(chromiumPath)) throw new Error(`no Chromium at ${chromiumPath}: apt-get install chromium, or set CHROMIUM_PATH`);
  if (!existsSync(`${BROWSER_DIST()}/meta.json`)) spawnSync(process.execPath, [resolveRepoPath('scripts', 'build.mjs')], { stdio: 'inherit' });
  await initBackend({ prefer: 'wasm', log: () => {} });

  // A bare page server: /iso is cross-origin isolated (like /join), /plain is not.
  const site = Fastify();
  await site.register(fastifyStatic, { root: BROWSER_DIST(), prefix: '/sdk/', setHeaders: (r) => r.setHeader('cross-origin-resource-policy', 'same-origin') });
  site.get('/iso', async (_q, r) => r.header('cross-origin-opener-policy', 'same-origin').header('cross-origin-embedder-policy', 'require-corp').type('text/html').send('<!doctype html><title>bench</title>'));
  site.get('/plain', async (_q, r) => r.type('text/html').send('<!doctype html><title>bench</title>'));
  await site.listen({ host: '127.0.0.1', port: 0 });
  const base = `http://127.0.0.1:${(site.server.address() as { port: number }).port}`;
  const browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox'], headless: true });
  const version = browser.version();
  const rows: { where: string; backend: string; mlp?: number; cnn?: number; note?: string }[] = [];
  try {
    const node = { mlp: await nodeSpeed('mlp'), cnn: await nodeSpeed('cnn') };
    rows.push({ where: 'Node 20 (this process)', backend: 'wasm (patched kernels)', ...node });
    for (const [where, path] of [['Chromium, SDK choice (like /join)', '/plain'], ['Chromium, SDK choice, cross-origin-isolated page', '/iso']] as const) {
      const page = await browser.newPage();
      await page.goto(base + path);
      const r = await pageSpeed(page, { kinds: ['mlp', 'cnn'], samples: SAMPLES });
      rows.push({ where, backend: `${r.backend}${r.device ? ` (${r.device})` : ''}`, mlp: r.speeds.mlp, cnn: r.speeds.cnn, note: path === '/plain' ? JSON.stringify(r.tried) : undefined });
      await page.close();
    }
    const gl = await browser.newPage();
    await gl.goto(base + '/plain');
    const hasGl = await gl.evaluate(() => !!document.createElement('canvas').getContext('webgl2'));
    if (hasGl) {
      const r = await pageSpeed(gl, { force: 'webgl', kinds: ['mlp', 'cnn'], samples: { mlp: 1024, cnn: 512 } });
      const renderer = await gl.evaluate(() => {
        const c = document.createElement('canvas').getContext('webgl2')!;
        const d = c.getExtension('WEBGL_debug_renderer_info');
        return String(c.getParameter(d ? d.UNMASKED_RENDERER_WEBGL : c.RENDERER)).slice(0, 60);
      });
      rows.push({ where: 'Chromium, WebGL forced', backend: `webgl (${renderer})`, mlp: r.speeds.mlp, cnn: r.speeds.cnn });
    }
    await gl.close();

    // Page open → first upload, against a real aggregator (MLP student, the committed subset's test split as proxy).
    const { train, test } = await loadSubset();
    const firstUpload: Record<string, number> = {};
    for (const model of ['mlp', 'cnn'] as const) {
      const agg = createAggregator({ proxy: test, proxyId: 'bench', classNames: [...FASHION_MNIST_CLASSES], log: () => {}, config: { host: '127.0.0.1', port: 0, rounds: 1, minClients: 1, student: 'mlp', insecureNoAuth: true } });
      const url = await agg.start();
      const ctx = await browser.newContext();
      const page = await ctx.newPage();
      const uploaded = new Promise<number>((resolve) => agg.coordinator.once('upload', () => resolve(performance.now())));
      const t0 = performance.now();
      await page.goto(`${url}/join?id=bench-${model}&shard=0&of=4&model=${model}&autostart=1`);
      firstUpload[model] = ((await uploaded) - t0) / 1000;
      await ctx.close();
      await agg.close();
    }
    const shardRows = demoShard(train, { shard: 0, of: 4 }).count;
    const size = bundleSize();

    const f = (x?: number) => (x === undefined ? '—' : Math.round(x).toLocaleString('en-US'));
    console.log(`\nChromium ${version} (headless), batch ${BATCH}, samples/s of trainSupervised (one epoch after a warm-up):\n`);
    console.log('| where | backend | MLP train | CNN train | MLP vs Node | CNN vs Node |');
    console.log('|---|---|---:|---:|---:|---:|');
    for (const r of rows) console.log(`| ${r.where} | ${r.backend} | ${f(r.mlp)} | ${f(r.cnn)} | ${(r.mlp! / rows[0].mlp!).toFixed(2)}× | ${(r.cnn! / rows[0].cnn!).toFixed(2)}× |`);
    console.log(`\nbundle: ${size.files.length} JS modules ${(size.raw / 1024).toFixed(0)} KiB (${(size.gzip / 1024).toFixed(0)} KiB gzipped) + ${size.wasm} ${(size.wasmRaw / 1024).toFixed(0)} KiB (${(size.wasmGzip / 1024).toFixed(0)} KiB gzipped)`);
    console.log(`join page open → first upload (demo shard 0 of 4: ${shardRows} images, less 15% held out; server defaults: 2 local epochs, 1,000 proxy rows): MLP ${firstUpload.mlp.toFixed(1)} s, CNN ${firstUpload.cnn.toFixed(1)} s`);
    for (const r of rows) if (r.note) console.log(`SDK backend chain: ${r.note}`);
    mkdirSync(resolveRepoPath('results'), { recursive: true });
    writeFileSync(resolveRepoPath('results', 'bench-browser.json'), JSON.stringify({ chromium: version, batch: BATCH, rows, bundle: size, firstUploadSeconds: firstUpload }, null, 2));
  } finally {
    await browser.close();
    await site.close();
  }
}

await main();
process.exit(0);
