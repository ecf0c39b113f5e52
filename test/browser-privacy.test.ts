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
  // The join page with a privacy budget: WebCrypto (x25519 keys, sealed shares, the noise) runs in the page.
  await page.goto(`${b.url}/join?id=web-private&shard=2&of=4&model=mlp&epsilon=8&autostart=1#token=${TOKEN}`);
  await roundsDone(b, 1, 150_000);
  const h = b.agg.coordinator.history[0];
  assert.equal(h.status, 'completed', `round 1: ${h.status}; page errors: ${errors.join(' | ')}`);
  assert.equal(h.secureAggregation?.contributors, 3, 'the browser is one of the three contributors to the sum');
  const status = b.agg.coordinator.status();
  assert.equal(status.privacy?.mode, 'distributed');
  // The page shows what its own accountant counted: the same ε as the server's.
  await page.waitForFunction(() => /of 8/.test(document.getElementById('privacy')?.textContent ?? ''), undefined, { timeout: 30_000 });
  const shown = await page.evaluate(() => document.getElementById('privacy')!.textContent!);
  assert.equal(shown, `${status.privacy!.epsilon.toFixed(2)} of 8`);
  const kept = await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('fedistill.privacy.')).length);
  assert.equal(kept, 1, 'the spent budget is kept for a reload');
  assert.deepEqual(errors, []);
});
