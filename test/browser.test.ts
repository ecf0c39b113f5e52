/**
 * The browser, in real Chromium (Debian's, driven by playwright-core): pages join from the aggregator's /join with
 * their own demo shards next to a Node client, a reload mid-round rejoins and counts once, a closed tab is a dropout
 * the round survives, the dashboard shows it all, and the README's embedding snippet works from another origin.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import Fastify from 'fastify';
import type { Browser } from 'playwright-core';
import { launchChromium, recordWire } from './chromium.ts';
import { demoShard } from '../client/browser-data.ts';
import { resolveRepoPath } from '../datasets/fashion-mnist.ts';
import { makeClient, roundsDone, startBench, subsetData, TOKEN, VIEWER_TOKEN, type Bench } from './helpers.ts';
import { assertOnlyLogitsOnWire } from './wire.ts';
import { taskAccuracy } from '../shared/metrics.ts';

const OUT = process.env.FEDISTILL_TEST_OUTPUT ?? resolveRepoPath('test-output');
let browser: Browser;

before(async () => {
  mkdirSync(OUT, { recursive: true });
  browser = await launchChromium();
});
after(() => browser?.close());

const joinUrl = (b: Bench, id: string, shard: number, model: string) => `${b.url}/join?id=${id}&shard=${shard}&of=4&model=${model}&autostart=1#token=${TOKEN}`;

test('two browser pages and a Node client federate; a reload mid-round counts once; a closed tab is a dropout', { timeout: 240_000 }, async () => {
  const tasks = [[0, 1, 2], [3, 4, 5, 6, 7, 8, 9]];
  const b = await startBench(3, { rounds: 3, minClients: 3, localEpochs: 3, proxySubset: 200, quorum: 0.5, tasks });
  after(() => b.agg.close());
  const uploads: { clientId: string; round: number }[] = [];
  b.agg.coordinator.on('upload', (u: { clientId: string; round: number }) => uploads.push(u));

  // Two devices: a browser context each (their own IndexedDB and storage), wire recorders on both.
  const wire = new Map<string, (string | Uint8Array)[]>();
  const proxyDownloads = new Map<string, number>();
  const [ca, cb] = [await browser.newContext(), await browser.newContext()];
  after(() => Promise.all([ca.close(), cb.close()]));
  for (const [ctx, id] of [[ca, 'web-a'], [cb, 'web-b']] as const) {
    await recordWire(ctx, wire);
    ctx.on('request', (r) => {
      if (new URL(r.url()).pathname.startsWith('/proxy/')) proxyDownloads.set(id, (proxyDownloads.get(id) ?? 0) + 1);
    });
  }
  const node = makeClient(b, 0);
  after(() => node.stop());
  await node.start();

  // CNN pages (MLP student): heterogeneous clients, and local steps long enough to interrupt.
  const [pa, pb] = [await ca.newPage(), await cb.newPage()];
  const errors: string[] = [];
  for (const p of [pa, pb]) p.on('pageerror', (e) => errors.push(e.message));
  const opened = Date.now();
  await pa.goto(joinUrl(b, 'web-a', 0, 'cnn'));
  await pb.goto(joinUrl(b, 'web-b', 1, 'cnn'));

  await roundsDone(b, 1, 20_000).catch(async (e) => {
    for (const p of [pa, pb]) console.log(await p.evaluate(() => `${document.body.dataset.state}: ${document.getElementById('log')!.textContent}`));
    throw e;
  });
  const firstUploadMs = await pa.evaluate(() => (window as unknown as { __join: { firstUploadMs: number } }).__join.firstUploadMs);
  assert.equal(b.agg.coordinator.history[0].participants, 3, 'round 1: both pages and the Node client uploaded');
  assert.deepEqual(new Set(uploads.filter((u) => u.round === 1).map((u) => u.clientId)), new Set(['c0', 'web-a', 'web-b']));
  const status = b.agg.coordinator.status();
  const backends = Object.fromEntries(status.clients.map((c) => [c.id, c.backend]));
  assert.match(String(backends['web-a']), /^(webgpu|webgl|wasm)$/, 'the page said which backend it trains on, and it is not cpu');
  console.log(`# page open → first upload ${firstUploadMs?.toFixed(0)} ms (test clock ${(Date.now() - opened) / 1000} s to round 1); page backend ${backends['web-a']}`);

  // Round 2: reload page B while it trains; it must rejoin (same id, resume token) and its upload count once.
  await pb.waitForFunction(() => document.body.dataset.state === 'training' && document.getElementById('round')!.textContent === '2', null, { timeout: 60_000, polling: 20 });
  assert.ok(!uploads.some((u) => u.round === 2 && u.clientId === 'web-b'), 'reloaded before its round-2 upload');
  await pb.reload();
  await roundsDone(b, 2, 90_000);
  const r2 = b.agg.coordinator.history[1];
  assert.equal(r2.status, 'completed');
  assert.equal(r2.participants, 3);
  assert.equal(uploads.filter((u) => u.round === 2 && u.clientId === 'web-b').length, 1, 'the reloaded page uploaded round 2 exactly once');
  assert.equal(proxyDownloads.get('web-b'), 1, 'the proxy set came from IndexedDB after the reload');
  await pb.waitForFunction(() => Number(document.body.dataset.uploads ?? 0) >= 1, null, { timeout: 10_000 });

  // Round 3: close page A's tab mid-step; the round completes with the others (quorum) and lists it as dropped.
  await pa.screenshot({ path: `${OUT}/join.png`, fullPage: true });
  await pa.waitForFunction(() => document.body.dataset.state === 'training' && document.getElementById('round')!.textContent === '3', null, { timeout: 60_000, polling: 20 });
  await pa.close();
  await roundsDone(b, 3, 90_000);
  const r3 = b.agg.coordinator.history[2];
  assert.equal(r3.status, 'completed');
  assert.equal(r3.participants, 2);
  assert.deepEqual(r3.dropped, ['web-a']);
  assert.deepEqual(errors, [], 'no uncaught errors in the pages');

  // What the pages put on the wire: hello and logits only, no private pixel or label.
  const { train } = await subsetData();
  for (const [id, shard] of [['web-a', 0], ['web-b', 1]] as const) {
    const frames = assertOnlyLogitsOnWire(wire.get(id) ?? [], demoShard(train, { shard, of: 4 }), { proxyRows: 200 });
    assert.ok(frames.filter((f) => f.type === 'logits').length >= 2, `${id} sent logits`);
  }

  // The dashboard shows the completed rounds in its plot data and the clients with their architecture and backend.
  const dash = await cb.newPage();
  await dash.setViewportSize({ width: 1400, height: 1000 });
  await dash.goto(`${b.url}/#viewer=${VIEWER_TOKEN}`); // the link the server prints for a viewer token it made
  // The data hooks update at once, the DOM on the next animation frame: wait for both.
  await dash.waitForFunction(() => document.body.dataset.round === '3' && document.querySelectorAll('#clients tr[data-client-id]').length >= 3, null, { timeout: 15_000 });
  const d = await dash.evaluate(() => {
    const w = (window as unknown as { __dashboard: { rounds: number[]; studentAccuracy: (number | null)[]; tasks: { accuracy: (number | null)[] }[] } }).__dashboard;
    const rows = Array.from(document.querySelectorAll('#clients tr[data-client-id]')).map((tr) => ({ id: (tr as HTMLElement).dataset.clientId, text: tr.textContent ?? '' }));
    return { rounds: w.rounds, acc: w.studentAccuracy, rows, tasks: w.tasks.map((t) => t.accuracy) };
  });
  assert.deepEqual(d.rounds, [1, 2, 3]);
  assert.ok(d.acc.every((a) => typeof a === 'number' && a > 0), 'student accuracy plotted for every round');
  assert.deepEqual(d.acc.map((a) => a!.toFixed(6)), b.agg.coordinator.history.map((h) => h.studentAccuracy!.toFixed(6)));
  for (const id of ['c0', 'web-a', 'web-b']) assert.ok(d.rows.some((r) => r.id === id), `dashboard lists ${id}`);
  // Per-task accuracy by the continual report's rule: classes weighted by their rows in the server's validation set.
  const valRows = Array.from({ length: 10 }, (_, j) => b.test.labels!.subarray(0, 500).filter((y) => y === j).length); // startBench's validation set
  const want = tasks.map((classes) => b.agg.coordinator.history.map((h) => taskAccuracy(h.studentPerClassAccuracy!, classes, valRows)));
  assert.deepEqual(d.tasks.map((t) => t.map((a) => a!.toFixed(6))), want.map((t) => t.map((a) => a.toFixed(6))));
  assert.match(d.rows.find((r) => r.id === 'web-b')!.text, /cnn/);
  assert.match(d.rows.find((r) => r.id === 'web-b')!.text, new RegExp(String(backends['web-b'])));
  await dash.screenshot({ path: `${OUT}/dashboard.png`, fullPage: true });
});

test("the README's embedding snippet works from another origin, and only from allowed ones", { timeout: 120_000 }, async () => {
  const readme = readFileSync(resolveRepoPath('README.md'), 'utf8');
  const m = /<!-- embed-snippet -->\s*```html\n([\s\S]*?)```/.exec(readme);
  assert.ok(m, 'README has the embed snippet');

  // The embedding site: its own server on another port; 'localhost' is allowed by the aggregator, '127.0.0.1' not.
  const site = Fastify();
  let html = '';
  site.get('/', async (_req, reply) => reply.type('text/html').send(html));
  await site.listen({ host: '127.0.0.1', port: 0 });
  after(() => site.close());
  const port = (site.server.address() as { port: number }).port;
  const b = await startBench(1, { rounds: 1, minClients: 1, corsOrigins: [`http://localhost:${port}`] });
  after(() => b.agg.close());
  html = m[1].replaceAll('http://127.0.0.1:8080', b.url).replaceAll('s3cret', TOKEN);

  const ctx = await browser.newContext();
  after(() => ctx.close());
  const page = await ctx.newPage();
  const logs: string[] = [];
  page.on('console', (c) => logs.push(c.text()));
  page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
  await page.goto(`http://localhost:${port}/`);
  await roundsDone(b, 1, 60_000);
  assert.equal(b.agg.coordinator.history[0].participants, 1);
  assert.ok(b.agg.coordinator.status().clients.some((c: { id: string }) => c.id === 'shop-visitor-1'));
  for (let i = 0; i < 100 && !logs.some((l) => /bytes of logits sent/.test(l)); i++) await page.waitForTimeout(100);
  assert.ok(logs.some((l) => /round 1: \d+ bytes of logits sent/.test(l)), `snippet logged its upload: ${logs.join(' | ')}`);

  const blocked = await ctx.newPage();
  const blockedLogs: string[] = [];
  blocked.on('console', (c) => blockedLogs.push(c.text()));
  blocked.on('pageerror', (e) => blockedLogs.push(e.message));
  await blocked.goto(`http://127.0.0.1:${port}/`);
  await blocked.waitForTimeout(1500);
  assert.ok(blockedLogs.some((l) => /CORS|Failed to fetch|dynamically imported module/i.test(l)), `a page on an origin not allowed cannot load the SDK: ${blockedLogs.join(' | ')}`);
});
