import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAggregator } from '../server/app.ts';
import { DEFAULT_CONFIG, type ServerConfig } from '../server/config.ts';
import { epsilonFromRdp, rdpSampledGaussian } from '../shared/privacy/rdp.ts';
import type { PrivacySpend } from '../client/privacy.ts';
import type { FedistillClient } from '../client/client.ts';
import { makeClient, roundsDone, startBench, viewerAuth } from './helpers.ts';

const dp = (p: Partial<ServerConfig['privacy']>): Pick<ServerConfig, 'privacy'> => ({ privacy: { ...DEFAULT_CONFIG.privacy, ...p } });

/** Start clients and collect each one's own privacy reports. */
async function enrol(clients: FedistillClient[]): Promise<Map<string, PrivacySpend[]>> {
  const spends = new Map<string, PrivacySpend[]>();
  for (const c of clients) {
    spends.set(c.clientId, []);
    c.on('privacy', (s) => spends.get(c.clientId)!.push(s));
  }
  await Promise.all(clients.map((c) => c.start()));
  return spends;
}

test('local DP: clients noise their probabilities, both sides count the same ε, and the counts stay private', async (t) => {
  const b = await startBench(3, { ...dp({ epsilon: 6 }), rounds: 2 });
  t.after(() => b.agg.close());
  const clients = [0, 1, 2].map((i) => makeClient(b, i, { privacy: { epsilon: 6 } }));
  t.after(() => clients.forEach((c) => c.stop()));
  const spends = await enrol(clients);
  await roundsDone(b, 2);
  const status = b.agg.coordinator.status();
  assert.equal(status.privacy?.mode, 'local');
  // The calibration spends (almost exactly) the target over the planned 2 uploads, never more.
  assert.ok(status.privacy!.epsilon <= 6 && status.privacy!.epsilon > 5.9, `ε = ${status.privacy!.epsilon}`);
  for (const h of b.agg.coordinator.history) {
    assert.equal(h.status, 'completed');
    assert.ok(h.privacy && h.privacy.epsilonRound > 0);
  }
  for (const c of status.clients) {
    // The server and the client run the same accountant on the same releases.
    const mine = spends.get(c.id)!;
    assert.equal(mine.length, 2);
    assert.ok(Math.abs(mine.at(-1)!.epsilon - c.epsilon!) < 1e-9, `${c.id}: client ${mine.at(-1)!.epsilon} vs server ${c.epsilon}`);
    // Under a DP budget a client says only whether it holds data.
    assert.equal(c.numSamples, 1);
  }
  // One upload alone: the Gaussian mechanism at z/√2 (replace adjacency of clipped probability rows).
  const z = status.privacy!.noiseMultiplier;
  const one = epsilonFromRdp(rdpSampledGaussian(1, z / Math.SQRT2, 1), 1e-5).epsilon;
  assert.ok(Math.abs(status.privacy!.epsilonPerRound - one) < 1e-9);
  // The operator's view: /status carries it, and /metrics has it as gauges.
  const metrics = await (await fetch(`${b.url}/metrics`, { headers: viewerAuth() })).text();
  const eps = Number(/^fedistill_privacy_epsilon (\S+)$/m.exec(metrics)?.[1]);
  assert.ok(Math.abs(eps - status.privacy!.epsilon) < 1e-9, `metrics ε ${eps}`);
  const st = (await (await fetch(`${b.url}/status`, { headers: viewerAuth() })).json()) as { privacy: { epsilon: number }; clients: { epsilon?: number }[] };
  assert.ok(Math.abs(st.privacy.epsilon - status.privacy!.epsilon) < 1e-9);
  assert.ok(st.clients.every((c) => typeof c.epsilon === 'number' && c.epsilon > 0));
});

test("a client declines a round that would pass its own budget, and one without noise", async (t) => {
  // z = 2 per upload costs ε ≈ 3.2 at δ = 1e-5 (local, replace: z/√2); c0's budget is 1.
  const b = await startBench(2, { ...dp({ noiseMultiplier: 2 }), rounds: 1, roundTimeoutS: 4, quorum: 0.5 });
  t.after(() => b.agg.close());
  const declined: string[] = [];
  const strict = makeClient(b, 0, { privacy: { epsilon: 1 } });
  strict.on('declined', (d) => declined.push(d.reason));
  const other = makeClient(b, 1, { privacy: { epsilon: 100 } });
  t.after(() => [strict, other].forEach((c) => c.stop()));
  await enrol([strict, other]);
  await roundsDone(b, 1, 30_000);
  assert.equal(declined.length, 1);
  assert.match(declined[0], /past this client's budget of 1/);
  const h = b.agg.coordinator.history[0];
  assert.deepEqual(h.dropped, ['c0']);
  assert.equal(h.participants, 1);

  // A server without DP: a client with a budget answers nothing.
  const plain = await startBench(1, { rounds: 1, roundTimeoutS: 3, minClients: 1 });
  t.after(() => plain.agg.close());
  const c = makeClient(plain, 0, { privacy: { epsilon: 10 } });
  t.after(() => c.stop());
  const why: string[] = [];
  c.on('declined', (d) => why.push(d.reason));
  await c.start();
  await roundsDone(plain, 1, 30_000);
  assert.match(why[0] ?? '', /without DP noise/);
  assert.equal(plain.agg.coordinator.history[0].status, 'no-quorum');
});

test('the server stops selecting clients at the budget, and a restart keeps every client\'s ε', async (t) => {
  const stateDir = mkdtempSync(join(tmpdir(), 'fedistill-dp-'));
  t.after(() => rmSync(stateDir, { recursive: true, force: true }));
  const twoUploads = epsilonFromRdp(rdpSampledGaussian(1, 3 / Math.SQRT2, 2), 1e-5).epsilon;
  const config = { ...dp({ noiseMultiplier: 3, budget: twoUploads }), rounds: 3, stateDir };
  const b = await startBench(2, config);
  const clients = [0, 1].map((i) => makeClient(b, i));
  t.after(() => clients.forEach((c) => c.stop()));
  await enrol(clients);
  await roundsDone(b, 2);
  await new Promise((r) => setTimeout(r, 1500));
  const s = b.agg.coordinator.status();
  assert.equal(b.agg.coordinator.round, 2, 'round 3 never opens: both clients are at their budget');
  assert.equal(s.privacy!.exhaustedClients, 2);
  assert.ok(Math.abs(s.privacy!.epsilon - twoUploads) < 1e-9);
  clients.forEach((c) => c.stop());
  await b.agg.close();

  // Same state dir: the ledger comes back with the checkpoint, so nobody gets a fresh budget.
  const again = createAggregator({ proxy: b.proxy, log: () => {}, config: { host: '127.0.0.1', port: 0, token: 'test-token', student: 'mlp', minClients: 2, proxySubset: 200, ...config } });
  t.after(() => again.close());
  await again.coordinator.restore();
  const r = again.coordinator.status();
  assert.ok(Math.abs(r.privacy!.epsilon - twoUploads) < 1e-9, `after restart ε = ${r.privacy!.epsilon}`);
  assert.equal(r.privacy!.exhaustedClients, 2);
});

test('DP-FedAvg: clipped, noised updates; distributed noise under secure aggregation', async (t) => {
  const b = await startBench(2, { ...dp({ epsilon: 8 }), strategy: 'fedavg', rounds: 1 });
  t.after(() => b.agg.close());
  const clients = [0, 1].map((i) => makeClient(b, i, { privacy: { epsilon: 8 } }));
  t.after(() => clients.forEach((c) => c.stop()));
  await enrol(clients);
  await roundsDone(b, 1);
  assert.equal(b.agg.coordinator.history[0].status, 'completed');
  // One upload of the planned one: the update's replace sensitivity is 2S, so z is twice the effective one.
  const p = b.agg.coordinator.status().privacy!;
  assert.ok(Math.abs(p.noiseMultiplier - 2 * p.effectiveNoiseMultiplier) < 1e-12);
  assert.ok(p.epsilon <= 8 && p.epsilon > 7.9);

  const s = await startBench(3, { ...dp({ epsilon: 8 }), secureAggregation: { enabled: true, threshold: 0.5, phaseTimeoutS: 10 }, rounds: 1 });
  t.after(() => s.agg.close());
  const sc = [0, 1, 2].map((i) => makeClient(s, i, { privacy: { epsilon: 8 } }));
  t.after(() => sc.forEach((c) => c.stop()));
  const spends = await enrol(sc);
  await roundsDone(s, 1);
  const h = s.agg.coordinator.history[0];
  assert.equal(h.status, 'completed');
  assert.equal(h.secureAggregation?.contributors, 3);
  const sp = s.agg.coordinator.status().privacy!;
  assert.equal(sp.mode, 'distributed');
  assert.equal(sp.noiseMultiplier, sp.effectiveNoiseMultiplier);
  for (const [, mine] of spends) assert.ok(Math.abs(mine[0].epsilon - sp.epsilon) < 1e-9);
});

test('privacy settings that cannot work are refused with the reason', () => {
  const make = (config: Partial<ServerConfig>) => () => createAggregator({ proxy: { images: new Uint8Array(784), labels: null, count: 1, shape: [28, 28, 1], numClasses: 10 }, log: () => {}, config: { insecureNoAuth: true, ...config } });
  const sa = { secureAggregation: { enabled: true, threshold: 0.5, phaseTimeoutS: 30 } };
  assert.throws(make({ ...sa, strategy: 'fedavg' }), /fedavg's weights are not summed securely/);
  assert.throws(make({ ...sa, aggregator: 'median' }), /mean-probs or confidence/);
  assert.throws(make({ ...dp({ epsilon: 4 }), strategy: 'online' }), /needs rounds/);
  assert.throws(make({ ...dp({ epsilon: 4, noiseMultiplier: 1 }) }), /not both/);
  assert.throws(make({ ...dp({ epsilon: 4 }), rounds: 0 }), /--dp-rounds/);
});
