/** What a client may put on the wire, checked frame by frame: used by the Node and the browser privacy tests. */
import assert from 'node:assert/strict';
import type { Dataset } from '../shared/data/dataset.ts';
import { decodeFrame } from '../shared/protocol/frame-codec.ts';

export function contains(hay: Uint8Array, needle: Uint8Array): boolean {
  return Buffer.from(hay.buffer, hay.byteOffset, hay.byteLength).indexOf(Buffer.from(needle.buffer, needle.byteOffset, needle.byteLength)) >= 0;
}

const ALLOWED: Record<string, string[]> = {
  // weightEncodings, rowEncodings: what the client decodes (capabilities, nothing about its data).
  hello: ['type', 'protocol', 'clientId', 'model', 'numSamples', 'classCounts', 'codec', 'resumeToken', 'backend', 'weightEncodings', 'rowEncodings'],
  logits: ['type', 'round', 'proxyHash', 'logits', 'stats', 'values'],
  decline: ['type', 'round', 'reason'],
  // Secure aggregation: public keys, sealed shares, the masked vector, and shares of other clients' mask secrets.
  'sa-keys': ['type', 'round', 'session', 'cPk', 'sPk'],
  'sa-shares': ['type', 'round', 'session', 'shares'],
  'sa-masked': ['type', 'round', 'session', 'proxyHash', 'masked', 'stats'],
  'sa-reveal': ['type', 'round', 'session', 'reveals'],
};

/**
 * Every engine.io packet a client sent (text packets as strings, binary attachments as bytes): each event is ours,
 * each frame decodes to an allowed message with only allowed fields, and no private image (as bytes or as
 * normalised float32) nor the label sequence appears anywhere. Returns the decoded frames.
 */
export function assertOnlyLogitsOnWire(wire: (string | Uint8Array)[], priv: Dataset, o: { proxyRows?: number } = {}): Record<string, any>[] {
  const size = priv.shape[0] * priv.shape[1] * priv.shape[2];
  const binary = wire.filter((p): p is Uint8Array => typeof p !== 'string');
  for (const t of wire.filter((p): p is string => typeof p === 'string')) {
    const m = /^\d+(?:\d+-)?(\[.*\])?$/.exec(t.replace(/^4/, ''));
    if (m?.[1]) assert.match(JSON.parse(m[1])[0], /^(hello|logits|weights|decline|sa-keys|sa-shares|sa-masked|sa-reveal)$/);
  }
  const frames = binary.map((f) => decodeFrame(f) as Record<string, any>);
  for (const f of frames) {
    assert.ok(ALLOWED[f.type], `unexpected message type ${f.type}`);
    for (const k of Object.keys(f)) assert.ok(ALLOWED[f.type].includes(k), `field ${k} in ${f.type}`);
    if (f.type === 'logits') {
      // All three, or none (under DP the client keeps figures computed on its data to itself).
      const keys = Object.keys(f.stats).filter((k) => k !== 'evalAccuracy').sort();
      assert.ok(keys.length === 0 || keys.join() === 'trainAccuracy,trainLoss,trainSeconds', `stats fields ${keys}`);
      if (o.proxyRows !== undefined) assert.equal(f.logits.rows, o.proxyRows); // one row per proxy row asked for
      assert.equal(f.logits.cols, priv.numClasses);
    }
    if (f.type === 'hello') assert.ok(f.numSamples <= priv.count);
  }
  for (const frame of binary) {
    for (let i = 0; i < priv.count; i++) assert.ok(!contains(frame, priv.images.subarray(i * size, (i + 1) * size)), `private image ${i} on the wire`);
    for (let i = 0; i < 20; i++) {
      const f32 = Float32Array.from(priv.images.subarray(i * size, (i + 1) * size), (v) => v / 255);
      assert.ok(!contains(frame, new Uint8Array(f32.buffer).subarray(4 * 300, 4 * 400)), `private image ${i} as floats on the wire`);
    }
    assert.ok(!contains(frame, priv.labels!.subarray(0, 32)), 'private labels on the wire');
  }
  return frames;
}
