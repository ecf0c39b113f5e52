import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { softmaxRows } from '../shared/distill/aggregators.ts';
import { encodeFixedPoint } from '../shared/secagg/params.ts';
import { decodeMatrix } from '../shared/tensor/logit-codec.ts';
import { DEFAULT_CONFIG } from '../server/config.ts';
import { makeClient, roundsDone, startBench } from './helpers.ts';
import { assertOnlyLogitsOnWire, contains } from './wire.ts';

/** Every byte a client puts on the wire, captured at the engine.io layer (below socket.io and our SDK). */
function recordWire(client: ReturnType<typeof makeClient>): (string | Uint8Array)[] {
  const packets: (string | Uint8Array)[] = [];
  const manager = client.connection!.io;
  manager.on('open', () => {
    (manager as unknown as { engine: { on: (e: string, f: (p: { data?: string | Uint8Array }) => void) => void } }).engine.on('packetCreate', (p) => {
      if (p.data !== undefined) packets.push(p.data);
    });
  });
  return packets;
}

test('a client sends no private sample or label: only proxy logits and metadata', async () => {
  const b = await startBench(2, { rounds: 2, proxySubset: 150 });
  after(() => b.agg.close());
  const clients = [0, 1].map((i) => makeClient(b, i));
  const started = clients.map((c) => c.start());
  const wire = recordWire(clients[0]);
  await Promise.all(started);
  after(() => clients.forEach((c) => c.stop()));
  await roundsDone(b, 2);

  const priv = b.parts[0];
  const size = 28 * 28;
  assert.ok(wire.filter((p) => typeof p !== 'string').length >= 3, 'hello + two logits frames were captured');
  const frames = assertOnlyLogitsOnWire(wire, priv, { proxyRows: 150 });
  assert.equal(frames.filter((f) => f.type === 'logits').length, 2);
  assert.equal(frames.find((f) => f.type === 'hello')!.numSamples, priv.count);
  // The check itself can fire: the proxy images the server serves do appear in its own frame.
  assert.ok(contains(b.proxy.images, b.proxy.images.subarray(0, size)));
});

test('secure aggregation: no single client\'s teacher is on the wire, in the journal, the checkpoints or the log', async (t) => {
  const stateDir = mkdtempSync(join(tmpdir(), 'fedistill-secagg-'));
  t.after(() => rmSync(stateDir, { recursive: true, force: true }));
  const logs: string[] = [];
  const files = (dir: string): Uint8Array[] =>
    readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => new Uint8Array(readFileSync(join(e.parentPath, e.name))));
  const run = async (secure: boolean, dir: string) => {
    const b = await startBench(3, {
      rounds: 2,
      proxySubset: 150,
      stateDir: dir,
      aggregator: 'mean-probs',
      secureAggregation: { enabled: secure, threshold: 0.5, phaseTimeoutS: 10 },
    }, (m) => logs.push(typeof m === 'string' ? m : JSON.stringify(m)));
    t.after(() => b.agg.close());
    // What each client contributed, in every form it could be stored in: its probabilities (float32, as the strategy
    // would hold them), their fixed-point codes (what it masks), and its raw logits.
    const forms: Uint8Array[] = [];
    // What the server has on disk at every accepted upload (the journal is compacted at each checkpoint).
    const snapshots: Uint8Array[] = [];
    b.agg.coordinator.on('upload', () => snapshots.push(...files(dir)));
    const clients = [0, 1, 2].map((i) => makeClient(b, i, {
      codec: 'fp32',
      outbound: {
        upload: (draft, ctx) => {
          if (draft.task !== 'logits') return draft;
          const sa = ctx.round.secagg;
          const n = ctx.round.indices!.length;
          const p = softmaxRows(draft.logits, n, draft.numClasses, sa?.temperature ?? 2);
          const window = (a: Float32Array | Uint32Array, at: number) => new Uint8Array(a.buffer, a.byteOffset + 4 * at, 4 * 16);
          for (const at of [0, 40 * draft.numClasses]) {
            forms.push(window(p, at), window(draft.logits, at));
            if (sa) forms.push(window(encodeFixedPoint(p, sa), at));
          }
          return draft;
        },
      },
    }));
    const started = clients.map((c) => c.start());
    const wire = recordWire(clients[0]);
    await Promise.all(started);
    t.after(() => clients.forEach((c) => c.stop()));
    await roundsDone(b, 2);
    clients.forEach((c) => c.stop());
    return { forms, wire, b, snapshots };
  };

  const secure = await run(true, stateDir);
  assert.equal(secure.forms.length, 3 * 2 * 2 * 3, 'three forms, two windows, three clients, two rounds');
  const stored = [...files(stateDir), ...secure.snapshots];
  assert.ok(secure.snapshots.length >= 6, 'the state dir was read at every upload');
  const frames = assertOnlyLogitsOnWire(secure.wire, secure.b.parts[0]);
  assert.ok(frames.some((f) => f.type === 'sa-masked') && !frames.some((f) => f.type === 'logits'), 'the upload went masked');
  for (const f of frames.filter((x) => x.type === 'sa-masked')) assert.deepEqual(f.stats, {}, 'no figures about the private data beside the masked vector');
  const text = new TextEncoder().encode(logs.join('\n'));
  for (const [k, form] of secure.forms.entries()) {
    for (const bytes of stored) assert.ok(!contains(bytes, form), `form ${k} of a client's upload is in the server's state`);
    assert.ok(!contains(text, form), `form ${k} is in the log`);
    for (const w of secure.wire) if (typeof w !== 'string') assert.ok(!contains(w, form), `form ${k} went over the wire in the clear`);
  }

  // The check can fire: without secure aggregation the journal holds the logits themselves.
  const plainDir = mkdtempSync(join(tmpdir(), 'fedistill-plain-'));
  t.after(() => rmSync(plainDir, { recursive: true, force: true }));
  const plain = await run(false, plainDir);
  assert.ok(plain.forms.some((form) => plain.snapshots.some((bytes) => contains(bytes, form))), 'a plain round journals uploads the check finds');
});

test('with a DP budget a client sends no counts and no clean teacher: only noisy probabilities', async (t) => {
  const b = await startBench(2, { rounds: 1, proxySubset: 150, privacy: { ...DEFAULT_CONFIG.privacy, epsilon: 4 } });
  t.after(() => b.agg.close());
  const clean: Float32Array[] = [];
  const clients = [0, 1].map((i) => makeClient(b, i, {
    privacy: { epsilon: 4 },
    outbound: { upload: (draft) => (draft.task === 'logits' && i === 0 && clean.push(softmaxRows(draft.logits, 150, draft.numClasses, 1)), draft) },
  }));
  const started = clients.map((c) => c.start());
  const wire = recordWire(clients[0]);
  await Promise.all(started);
  t.after(() => clients.forEach((c) => c.stop()));
  await roundsDone(b, 1);
  const frames = assertOnlyLogitsOnWire(wire, b.parts[0], { proxyRows: 150 });
  const hello = frames.find((f) => f.type === 'hello')!;
  assert.equal(hello.numSamples, 1, 'only whether it holds data');
  assert.equal(hello.classCounts, undefined, 'no label histogram');
  const up = frames.find((f) => f.type === 'logits')!;
  assert.equal(up.values, 'probs');
  assert.deepEqual(up.stats, {}, 'no loss, accuracy or training time: all computed on private data');
  const sent = decodeMatrix(up.logits);
  // σ = z·C·√150 per entry: the sent rows are nowhere near the clean ones (and the clean ones are nowhere on the wire).
  let far = 0;
  for (let i = 0; i < sent.length; i++) if (Math.abs(sent[i] - clean[0][i]) > 0.5) far++;
  assert.ok(far > 0.9 * sent.length, `${far} of ${sent.length} entries moved by more than 0.5`);
  for (const w of wire) if (typeof w !== 'string') assert.ok(!contains(w, new Uint8Array(clean[0].buffer, 0, 64)), 'clean probabilities on the wire');
});
