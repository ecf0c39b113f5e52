import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { decodeFrame } from '../shared/protocol/frame-codec.ts';
import { makeClient, roundsDone, startBench } from './helpers.ts';

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

function contains(hay: Uint8Array, needle: Uint8Array): boolean {
  return Buffer.from(hay.buffer, hay.byteOffset, hay.byteLength).indexOf(Buffer.from(needle.buffer, needle.byteOffset, needle.byteLength)) >= 0;
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
  const binary = wire.filter((p): p is Uint8Array => typeof p !== 'string');
  const text = wire.filter((p): p is string => typeof p === 'string');
  assert.ok(binary.length >= 3, 'hello + two logits frames were captured');

  // 1. Structure: every event is ours, every frame decodes to an allowed message with only allowed fields.
  for (const t of text) {
    const m = /^\d+(?:\d+-)?(\[.*\])?$/.exec(t.replace(/^4/, ''));
    if (m?.[1]) assert.match(JSON.parse(m[1])[0], /^(hello|logits|weights)$/);
  }
  const allowed: Record<string, string[]> = {
    hello: ['type', 'protocol', 'clientId', 'model', 'numSamples', 'classCounts', 'codec', 'resumeToken', 'backend'],
    logits: ['type', 'round', 'proxyHash', 'logits', 'stats'],
  };
  const frames = binary.map((f) => decodeFrame(f) as Record<string, any>);
  for (const f of frames) {
    assert.ok(allowed[f.type], `unexpected message type ${f.type}`);
    for (const k of Object.keys(f)) assert.ok(allowed[f.type].includes(k), `field ${k} in ${f.type}`);
    if (f.type === 'logits') {
      assert.deepEqual(Object.keys(f.stats).sort(), ['trainAccuracy', 'trainLoss', 'trainSeconds']);
      assert.equal(f.logits.rows, 150); // one row per proxy row asked for, not per private sample
      assert.equal(f.logits.cols, 10);
    }
    if (f.type === 'hello') assert.equal(f.numSamples, priv.count);
  }
  assert.equal(frames.filter((f) => f.type === 'logits').length, 2);

  // 2. Content: no private image appears in any frame, as bytes or as normalised float32; nor the label sequence.
  for (const frame of binary) {
    for (let i = 0; i < priv.count; i++) assert.ok(!contains(frame, priv.images.subarray(i * size, (i + 1) * size)), `private image ${i} on the wire`);
    for (let i = 0; i < 20; i++) {
      const f32 = Float32Array.from(priv.images.subarray(i * size, (i + 1) * size), (v) => v / 255);
      assert.ok(!contains(frame, new Uint8Array(f32.buffer).subarray(4 * 300, 4 * 400)), `private image ${i} as floats on the wire`);
    }
    assert.ok(!contains(frame, priv.labels!.subarray(0, 32)), 'private labels on the wire');
  }
  // The check itself can fire: the proxy images the server serves do appear in its own frame.
  assert.ok(contains(b.proxy.images, b.proxy.images.subarray(0, size)));
});
