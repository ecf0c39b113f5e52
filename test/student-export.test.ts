import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { subset } from '../shared/data/dataset.ts';
import { buildModel } from '../shared/models/builders.ts';
import { evaluatePerClass } from '../shared/models/training.ts';
import { main as exportMain } from '../server/export-cli.ts';
import { FileCheckpointStore } from '../server/state/checkpoint-store.ts';
import { releaseStudent } from '../server/state/student-release.ts';
import { StudentShelf } from '../server/state/student-shelf.ts';
import { silentLogger } from '../server/logger.ts';
import type { CoordinatorState, StoredClient } from '../server/coordinator.ts';
import { makeClient, startBench, TOKEN } from './helpers.ts';

const VIEWER = 'viewer-secret-42';

/** A directory written by `fedistill export` (or the server), loaded the way a user would without HTTP. */
async function loadDir(dir: string): Promise<tf.LayersModel> {
  const json = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')) as tf.io.ModelJSON;
  const paths = json.weightsManifest.flatMap((g) => g.paths);
  const weights = paths.map((p) => new Uint8Array(readFileSync(join(dir, p))));
  const weightData = tf.io.concatenateArrayBuffers(weights.map((w) => w.slice().buffer));
  return tf.loadLayersModel(tf.io.fromMemory({ modelTopology: json.modelTopology, weightSpecs: json.weightsManifest.flatMap((g) => g.weights), weightData }));
}

/** Every file under a directory, recursively. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => (statSync(join(dir, n)).isDirectory() ? filesUnder(join(dir, n)) : [join(dir, n)]));
}

test('the student is a standard tfjs LayersModel: served over HTTP, written to the state dir, exported; tokens stay apart', async () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'fedistill-student-'));
  const b = await startBench(2, { rounds: 2, stateDir, viewerToken: VIEWER });
  after(() => b.agg.close());
  const clients = [0, 1].map((i) => makeClient(b, i));
  after(() => clients.forEach((c) => c.stop()));
  await Promise.all(clients.map((c) => c.start()));
  const tokens = clients.map((c) => c.resumeToken!);
  await Promise.all(clients.map((c) => c.finished()));
  const validation = subset(b.test, Uint32Array.from({ length: 500 }, (_, i) => i)); // the server's (startBench)
  const reported = b.agg.coordinator.history.map((h) => h.studentAccuracy!);
  assert.equal(reported.length, 2);

  // With both tokens set the routes take either as a bearer token; tf.loadLayersModel passes it through requestInit.
  const denied = await fetch(`${b.url}/student/model.json`);
  assert.equal(denied.status, 401);
  assert.match((await denied.json()).message, /server \(client\) token or the viewer token/);
  assert.equal((await fetch(`${b.url}/student/model.json`, { headers: { authorization: 'Bearer nope' } })).status, 401);
  // A client fetches end.studentPath with the token it connects with, as protocol.md says.
  const asClient = await tf.loadLayersModel(`${b.url}/student/model.json`, { requestInit: { headers: { authorization: `Bearer ${TOKEN}` } } });
  assert.equal((await evaluatePerClass(asClient, validation)).accuracy, reported[1], 'the client token opens /student');
  const requestInit = { headers: { authorization: `Bearer ${VIEWER}` } };
  const latest = await tf.loadLayersModel(`${b.url}/student/model.json`, { requestInit });
  assert.equal((await evaluatePerClass(latest, validation)).accuracy, reported[1], 'the served student scores what the server reported');
  const v1 = await tf.loadLayersModel(`${b.url}/student/v/1/model.json`, { requestInit });
  assert.equal((await evaluatePerClass(v1, validation)).accuracy, reported[0], 'a kept older version too');

  const card = await (await fetch(`${b.url}/student/model-card.json`, requestInit)).json();
  assert.equal(card.version, 2);
  assert.equal(card.round, 2);
  assert.equal(card.strategy, 'ensemble');
  assert.equal(card.architecture.kind, 'mlp');
  assert.deepEqual(card.input.shape, [28, 28, 1]);
  assert.equal(card.input.scale, 1 / 255);
  assert.match(card.input.normalisation, /^x = pixel \/ 255 on one grey channel/);
  assert.match(card.input.preparation, /prepareImage .*letterboxed into 28×28 .*area resampling.*grey = round\(0\.299·R.*inverted .* when the outermost ring/);
  assert.equal(card.output.kind, 'logits');
  assert.equal(card.output.classNames.length, 10);
  assert.equal(card.evaluation.studentAccuracy, reported[1]);
  assert.equal(card.evaluation.validationSize, 500);
  assert.equal(card.parameters, latest.countParams());
  const gone = await fetch(`${b.url}/student/v/7/model.json`, requestInit);
  assert.equal(gone.status, 404);
  assert.match((await gone.json()).message, /student v7 is not kept: the server keeps the newest 5 versions \(now v1, v2\)/);

  // The same files on disk: student/latest and student/v<N>.
  for (const [dir, acc] of [['latest', reported[1]], ['v1', reported[0]], ['v2', reported[1]]] as const) {
    const m = await loadDir(join(stateDir, 'student', dir));
    assert.equal((await evaluatePerClass(m, validation)).accuracy, acc, `student/${dir}`);
  }

  // fedistill export: the newest checkpoint, and a given version.
  for (const [version, acc] of [[undefined, reported[1]], [1, reported[0]]] as const) {
    const out = mkdtempSync(join(tmpdir(), 'fedistill-export-'));
    await exportMain(['--state-dir', stateDir, '--out', out, ...(version ? ['--version', String(version)] : [])]);
    assert.deepEqual(readdirSync(out).sort(), ['model-card.json', 'model.json', 'weights.bin']);
    const m = await loadDir(out);
    assert.equal((await evaluatePerClass(m, validation)).accuracy, acc, `export of v${version ?? 'latest'}`);
    assert.equal(JSON.parse(readFileSync(join(out, 'model-card.json'), 'utf8')).evaluation.studentAccuracy, acc);
  }
  await assert.rejects(exportMain(['--state-dir', stateDir, '--out', stateDir, '--version', '9']), /student v9 is not in the kept checkpoints/);

  // Secrets apart: no resume token anywhere in what the server wrote; the checkpoint has their hashes only.
  for (const file of filesUnder(stateDir)) {
    const bytes = readFileSync(file);
    for (const t of tokens) assert.equal(bytes.includes(Buffer.from(t)), false, `${file} holds a resume token`);
  }
  const ck = (await new FileCheckpointStore(stateDir).loadLatest())!.state as CoordinatorState;
  const sha = (t: string) => createHash('sha256').update(t).digest('hex');
  assert.deepEqual((ck.clients as StoredClient[]).map((c) => c.resumeTokenHash).sort(), tokens.map(sha).sort());
});

test('/student auth: public only with insecureNoAuth and no viewer token; otherwise the client or the viewer token, else 401', async () => {
  const get = (url: string, token?: string) =>
    fetch(`${url}/student/versions`, { headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });
  const open = await startBench(1, { rounds: 1, minClients: 2, token: '', insecureNoAuth: true, viewerToken: '' });
  after(() => open.agg.close());
  const clientOnly = await startBench(1, { rounds: 1, minClients: 2 });
  after(() => clientOnly.agg.close());
  const viewerOnly = await startBench(1, { rounds: 1, minClients: 2, token: '', insecureNoAuth: true, viewerToken: VIEWER });
  after(() => viewerOnly.agg.close());

  // No token configured: anyone (no student yet, so model.json is a 404, not a 401).
  assert.equal((await get(open.url)).status, 200);
  assert.equal((await fetch(`${open.url}/student/model.json`)).status, 404);
  assert.equal((await get(open.url)).headers.get('cache-control'), 'no-cache');
  // --token alone: the student is no longer public; the client token opens it, nothing else does.
  const refused = await get(clientOnly.url);
  assert.equal(refused.status, 401);
  assert.deepEqual(Object.keys(await refused.json()).sort(), ['error', 'message']);
  assert.equal((await get(clientOnly.url, 'wrong')).status, 401);
  assert.equal((await get(clientOnly.url, VIEWER)).status, 401);
  assert.equal((await get(clientOnly.url, TOKEN)).status, 200);
  assert.match((await (await fetch(`${clientOnly.url}/student/model.json`)).json()).message, /server \(client\) token/);
  assert.equal((await fetch(`${clientOnly.url}/student/model.json`, { headers: { authorization: `Bearer ${TOKEN}` } })).status, 404);
  // --viewer-token alone: that token.
  assert.equal((await get(viewerOnly.url)).status, 401);
  assert.equal((await get(viewerOnly.url, TOKEN)).status, 401);
  assert.equal((await get(viewerOnly.url, VIEWER)).status, 200);
});

test('student shelf: keeps the newest versions in memory and on disk, latest/ is the newest', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fedistill-shelf-'));
  const shelf = new StudentShelf(dir, silentLogger, 2);
  const model = buildModel({ kind: 'mlp', inputShape: [28, 28, 1], numClasses: 10 });
  const meta = { kind: 'mlp' as const, round: 0, strategy: 'ensemble', inputShape: [28, 28, 1], classNames: [...'0123456789'], validationSize: 0, serverVersion: 'test' };
  for (const version of [1, 2, 3]) await shelf.put(await releaseStudent(model, { ...meta, version, round: version }));
  assert.deepEqual(shelf.versions(), [2, 3]);
  assert.deepEqual(readdirSync(dir).sort(), ['latest', 'v2', 'v3']);
  assert.equal(JSON.parse(readFileSync(join(dir, 'latest', 'model-card.json'), 'utf8')).version, 3);
  // A restarted server serves what the last run kept.
  const again = new StudentShelf(dir, silentLogger, 2);
  await again.load();
  assert.deepEqual(again.versions(), [2, 3]);
  assert.deepEqual(again.latest()!.weights, shelf.latest()!.weights);
});

test("the model card's input text follows the input's channels: grey for one, R, G, B for three", async () => {
  const meta = { kind: 'mlp' as const, version: 1, round: 1, strategy: 'ensemble', classNames: ['a', 'b'], validationSize: 0, serverVersion: 'test' };
  const colour = await releaseStudent(buildModel({ kind: 'mlp', inputShape: [32, 24, 3], numClasses: 2 }), { ...meta, inputShape: [32, 24, 3] });
  assert.deepEqual(colour.card.input.shape, [32, 24, 3]);
  assert.match(colour.card.input.normalisation, /^x = pixel \/ 255 on each of R, G, B \(last axis, in that order\)/);
  assert.doesNotMatch(colour.card.input.normalisation, /grey/);
  assert.match(colour.card.input.preparation, /become 32×24×3 bytes .*letterboxed into 32×24 .*R, G, B each rounded to 8 bits/);
  assert.doesNotMatch(colour.card.input.preparation, /grey/);
  const grey = await releaseStudent(buildModel({ kind: 'mlp', inputShape: [28, 28, 1], numClasses: 2 }), { ...meta, inputShape: [28, 28, 1] });
  assert.match(grey.card.input.normalisation, /one grey channel: 8-bit levels 0\.\.255 \(0 = black\)/);
  assert.match(grey.card.input.preparation, /become 28×28×1 bytes .*grey = round\(0\.299·R \+ 0\.587·G \+ 0\.114·B\)/);
});
