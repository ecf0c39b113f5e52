/**
 * A third-party client written from docs/protocol.md alone (test/fixtures/foreign-client.ts) takes part in an
 * `ensemble` federation next to an SDK client, against a real server, to the end.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { ForeignClient } from './fixtures/foreign-client.ts';
import { TOKEN, makeClient, startBench } from './helpers.ts';

test('the foreign client imports only socket.io-client, msgpackr and node: modules', async () => {
  const src = await readFile(new URL('./fixtures/foreign-client.ts', import.meta.url), 'utf8');
  const imports = [...src.matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+['"]([^'"]+)['"]/gm)].map((m) => m[1]);
  assert.ok(imports.length >= 3);
  for (const spec of imports) assert.ok(spec === 'socket.io-client' || spec === 'msgpackr' || spec.startsWith('node:'), `imports ${spec}`);
  assert.doesNotMatch(src, /new (Packr|Unpackr)\(/, 'msgpackr with default options only');
  assert.doesNotMatch(src, /import\(/, 'no dynamic imports');
});

test('a client written from the protocol doc completes an ensemble federation next to an SDK client', async () => {
  const b = await startBench(2, { strategy: 'ensemble', rounds: 2, minClients: 2, proxySubset: 100 });
  after(() => b.agg.close());

  // A wrong token is refused at the handshake with a message that says what to do.
  const intruder = new ForeignClient({ url: b.url, token: 'wrong', clientId: 'x', images: new Uint8Array(0), labels: new Uint8Array(0), codecs: ['fp16'] });
  await assert.rejects(intruder.connect(), /unauthorized: pass the server token as auth.token/);
  intruder.close();

  const sdk = makeClient(b, 0);
  after(() => sdk.stop());
  const part = b.parts[1];
  const foreign = new ForeignClient({ url: b.url, token: TOKEN, clientId: 'foreign-1', images: part.images, labels: part.labels!, codecs: ['fp16', 'int8'] });
  after(() => foreign.close());
  await foreign.connect();
  const [run] = await Promise.all([foreign.run(180_000), sdk.start()]);

  assert.equal(run.welcome.protocol, 1);
  assert.equal(run.welcome.strategy, 'ensemble');
  assert.deepEqual(run.proxy, { count: 400, hashVerified: true, notModifiedOnRevalidate: true });
  assert.deepEqual(run.errors, []);
  assert.deepEqual(run.rounds.map((r) => [r.round, r.task, r.indices.length]), [[1, 'logits', 100], [2, 'logits', 100]]);
  assert.deepEqual(run.acks.map((a) => a.round), [1, 2]);
  assert.deepEqual(run.results.map((r) => [r.round, r.participants]), [[1, 2], [2, 2]]);
  // Both uploads (one fp16, one int8 — both hand-encoded) were aggregated with the SDK client's.
  assert.deepEqual(b.agg.coordinator.history.map((h) => [h.round, h.status, h.participants]), [[1, 'completed', 2], [2, 'completed', 2]]);
  // The end of the federation: the final student goes to every client.
  assert.equal(run.end.reason, 'completed');
  assert.equal(run.end.round, 2);
  assert.equal(run.end.model?.kind, 'mlp');
  assert.ok(run.end.model.weights.length > 0);
});
