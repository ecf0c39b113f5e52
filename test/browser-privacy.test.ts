import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser } from 'playwright-core';
import { DEFAULT_CONFIG } from '../server/config.ts';
import { launchChromium } from './chromium.ts';
import { makeClient, roundsDone, startBench, TOKEN } from './helpers.ts';

let browser: Browser;
before(async () => {
  browser = await launchChromium();
});
after(() => browser?.close());

test('a browser client takes part in a secure, differentially private round next to Node clients', { timeout: 180_000 }, async () => {
  const b = await startBench(3, {
    rounds: 1,
    aggregator: 'mean-probs',
    privacy: { ...DEFAULT_CONFIG.privacy, epsilon: 8 },
    secureAggregation: { enabled: true, threshold: 0.5, phaseTimeoutS: 30 },
  });
  after(() => b.agg.close());
  const nodes = [0, 1].map((i) => makeClient(b, i, { privacy: { epsilon: 8 } }));
  after(() => nodes.forEach((c) => c.stop()));
  await Promise.all(nodes.map((c) => c.start()));

  const ctx = await browser.newContext();
  after(() => ctx.close());
  const page = await ctx.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  // Same origin as the SDK the server serves; WebCrypto (x25519 keys, sealed shares, noise) runs in the page.
  await page.goto(`${b.url}/healthz`);
  const spent = page.evaluate(async ({ url, token }) => {
    const { FedistillClient, fetchDemoShard, initBrowserBackend } = await import(`${url}/sdk/fedistill.js`);
    await initBrowserBackend({ allowCpu: true });
    const data = await fetchDemoShard({ baseUrl: url, shard: 2, of: 4 });
    const client = new FedistillClient({ url, token, clientId: 'web-private', model: 'mlp', data, privacy: { epsilon: 8 } });
    const eps = new Promise<number>((resolve) => client.on('privacy', (p: { epsilon: number }) => resolve(p.epsilon)));
    await client.start();
    return eps;
  }, { url: b.url, token: TOKEN });
  await roundsDone(b, 1, 150_000);
  const h = b.agg.coordinator.history[0];
  assert.equal(h.status, 'completed', `round 1: ${h.status}; page errors: ${errors.join(' | ')}`);
  assert.equal(h.secureAggregation?.contributors, 3, 'the browser is one of the three contributors to the sum');
  const status = b.agg.coordinator.status();
  assert.equal(status.privacy?.mode, 'distributed');
  const browserEps = await spent;
  assert.ok(Math.abs(browserEps - status.privacy!.epsilon) < 1e-9, `the page counted ε = ${browserEps}, the server ${status.privacy!.epsilon}`);
  assert.deepEqual(errors, []);
});
