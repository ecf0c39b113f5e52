import { test, after } from 'node:test';
import assert from 'node:assert/strict';
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
