/**
 * The student's downlink codecs (shared/models/weight-codec.ts): round-trip error bounds per codec, the protocol's
 * refusals of malformed encoded tensors, and a real federation where the int8 student's round frame is ~4× smaller
 * and the client holds exactly the decoded weights (within s_c/2 of the server's fp32 student).
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { Packr } from 'msgpackr';
import { Rng } from '../shared/data/rng.ts';
import { channelsOf, decodeTensor, decodeWeights, encodeTensor, sizeOf, tensorPayloadBytes } from '../shared/models/weight-codec.ts';
import { applyWireWeights, weightsToWire, wireBytes } from '../shared/models/wire.ts';
import { subset } from '../shared/data/dataset.ts';
import { DEFAULT_CONFIG } from '../server/config.ts';
import { Student } from '../server/strategies/student.ts';
import { encodeFrame } from '../shared/protocol/frame-codec.ts';
import type { EncodedTensor, RoundMsg, WireTensor } from '../shared/protocol/messages.ts';
import { ProtocolError, checkWireTensors, parseClientFrame, parseServerFrame } from '../shared/protocol/validate.ts';
import { buildModel } from '../shared/models/builders.ts';
import { makeClient, startBench, subsetData } from './helpers.ts';

/** Values of very different magnitude per output channel: channel c of a [.., C] tensor has scale 10^(c − 2). */
function tensor(name: string, shape: number[], seed = 1): WireTensor {
  const rng = new Rng(`weight-codec/${name}/${seed}`);
  const c = channelsOf(shape);
  return { name, shape, data: Float32Array.from({ length: sizeOf(shape) }, (_, i) => rng.normal(0, 1) * 10 ** ((i % c) - 2)) };
}

const SHAPES: [string, number[]][] = [
  ['dense/kernel', [7, 5]],
  ['conv/kernel', [3, 3, 2, 4]],
  ['dense/bias', [5]],
  ['scalar', []],
];

/** |x − x̂| ≤ s/2 in exact arithmetic; storing q·s as float32 adds at most |q·s|·2^-24 ≤ 127·s·2^-24. */
const INT8_SLACK = 127 * 2 ** -24;

test('fp32 round-trips exactly; fp16 within half an fp16 ulp; int8 within half a per-channel step', () => {
  for (const [name, shape] of SHAPES) {
    const t = tensor(name, shape);
    const fp32 = decodeTensor(encodeTensor(t, 'fp32'));
    assert.deepEqual(fp32.data, t.data, `${name}: fp32 is lossless`);

    const half = encodeTensor(t, 'fp16');
    assert.equal(half.encoding, 'fp16');
    assert.equal(tensorPayloadBytes(half), 2 * sizeOf(shape));
    const h = decodeTensor(half).data;
    t.data.forEach((x, i) => {
      // Normal fp16 values: relative error ≤ 2^-11; below 2^-14 (subnormal), absolute ≤ 2^-25.
      const bound = Math.max(Math.abs(x) * 2 ** -11, 2 ** -25);
      assert.ok(Math.abs(h[i] - x) <= bound, `${name}[${i}] fp16 ${h[i]} vs ${x}`);
    });

    const q = encodeTensor(t, 'int8');
    const c = channelsOf(shape);
    assert.equal(q.encoding, 'int8');
    assert.equal(q.scales!.length, c);
    assert.equal(tensorPayloadBytes(q), sizeOf(shape) + 4 * c, `${name}: 1 byte per weight + 4 per channel`);
    const d = decodeTensor(q).data;
    t.data.forEach((x, i) => {
      const s = q.scales![i % c];
      assert.ok(Math.abs(d[i] - x) <= s * (0.5 + INT8_SLACK), `${name}[${i}] int8 ${d[i]} vs ${x} (step ${s})`);
    });
    // One step per output channel: the smallest channel (values ~0.01) keeps its values instead of being zeroed by
    // the largest channel's step (values ~100).
    if (c > 2) {
      const small = [...t.data.keys()].filter((i) => i % c === 0);
      assert.ok(small.some((i) => d[i] !== 0), `${name}: the small channel survives`);
      assert.ok(q.scales![0] * 100 < q.scales![c - 1], `${name}: steps differ by channel`);
    }
  }
});

test('int8 edge cases: a channel of zeros, the extremes, fp16 overflow falls back to fp32, non-finite refused', () => {
  const t: WireTensor = { name: 'k', shape: [2, 3], data: Float32Array.from([0, 1, -3, 0, -1, 3]) };
  const q = encodeTensor(t, 'int8');
  assert.deepEqual(Array.from(q.scales!), [0, Math.fround(1 / 127), Math.fround(3 / 127)]);
  assert.deepEqual(Array.from(new Int8Array(q.bytes!.buffer, q.bytes!.byteOffset, 6)), [0, 127, -127, 0, -127, 127]);
  const d = decodeTensor(q).data;
  d.forEach((v, i) => assert.ok(Math.abs(v - t.data[i]) <= 1e-6, `extreme ${i}: ${v} vs ${t.data[i]}`));

  const big: WireTensor = { name: 'b', shape: [2], data: Float32Array.from([1, 70_000]) };
  const half = encodeTensor(big, 'fp16');
  assert.equal(half.encoding, undefined, 'beyond ±65504 the tensor goes fp32 rather than being clipped');
  assert.deepEqual(decodeTensor(half).data, big.data);

  assert.throws(() => encodeTensor({ name: 'n', shape: [2], data: Float32Array.from([1, NaN]) }, 'int8'), /non-finite value at index 1/);
  assert.throws(() => decodeTensor({ name: 'x', shape: [3], encoding: 'int8', bytes: new Uint8Array(3), scales: Float32Array.from([NaN]) }), /scale 0 must be a finite number/);
});

// ---- the protocol ------------------------------------------------------------------------------------------------

const roundWith = (weights: unknown[]): unknown => ({
  type: 'round', round: 2, strategy: 'ensemble', task: 'logits', indices: Uint32Array.from([1, 2]), localEpochs: 1, batchSize: 8,
  learningRate: 0.001, deadline: 1e13, model: { kind: 'mlp', version: 1, weights },
});
const kernel = tensor('dense/kernel', [4, 3]);
const bias = tensor('dense/bias', [3]);

function refusal(weights: unknown[]): ProtocolError {
  try {
    parseServerFrame('round', encodeFrame(roundWith(weights)));
  } catch (e) {
    assert.ok(e instanceof ProtocolError, `a ProtocolError, got ${e}`);
    return e;
  }
  assert.fail('the frame was accepted');
}

test('the schema accepts every encoding (and old fp32 tensors), and refuses malformed ones with a clear error', () => {
  for (const codec of ['fp32', 'fp16', 'int8'] as const) {
    const sent = [encodeTensor(kernel, codec), encodeTensor(bias, codec)];
    const msg = parseServerFrame('round', encodeFrame(roundWith(sent))) as RoundMsg;
    const got = decodeWeights(msg.model!.weights);
    assert.deepEqual(got.map((w) => w.data), decodeWeights(sent).map((w) => w.data), `${codec} survives the wire bit for bit`);
  }
  // A peer's typed-array extension of the encoding's element type is read as its bytes.
  const moreTypes = new Packr({ useRecords: false, moreTypes: true, mapsAsObjects: true, structuredClone: false });
  const q = encodeTensor(kernel, 'int8');
  const asInt8 = { ...q, bytes: new Int8Array(q.bytes!.buffer, q.bytes!.byteOffset, q.bytes!.byteLength) };
  const viaExt = parseServerFrame('round', moreTypes.pack(roundWith([asInt8]))) as RoundMsg;
  assert.deepEqual(decodeWeights(viaExt.model!.weights)[0].data, decodeTensor(q).data);
  // Byte arrays as plain msgpack `bin` (a server packing Buffers, or msgpackr without moreTypes): msgpackr hands every
  // bin out as a view into the one frame buffer, and a model of several tensors must still be accepted.
  const plain = new Packr({ useRecords: false, mapsAsObjects: true, structuredClone: false });
  const asBin = (t: EncodedTensor) => ({ ...t, bytes: Buffer.from(t.bytes!), scales: t.scales && Buffer.from(t.scales.buffer, t.scales.byteOffset, t.scales.byteLength) });
  const viaBin = parseServerFrame('round', plain.pack(roundWith([asBin(q), asBin(encodeTensor(bias, 'int8'))]))) as RoundMsg;
  assert.deepEqual(decodeWeights(viaBin.model!.weights).map((w) => w.data), [decodeTensor(q).data, decodeTensor(encodeTensor(bias, 'int8')).data]);

  const int8 = encodeTensor(kernel, 'int8') as Required<EncodedTensor>;
  const cases: [string, unknown, string, RegExp][] = [
    ['unknown encoding', { ...int8, encoding: 'int4' }, 'bad-message', /encoding' must be one of fp32, fp16, int8/],
    ['int8 without scales', { ...int8, scales: undefined }, 'bad-message', /scales' must be present for encoding 'int8'/],
    ['fp16 with scales', { ...encodeTensor(kernel, 'fp16'), scales: Float32Array.of(1) }, 'bad-message', /scales' must be absent for encoding 'fp16'/],
    ['int8 with fp32 data too', { ...int8, data: kernel.data }, 'bad-message', /data' must be absent for encoding 'int8'/],
    ['fp32 without data', { name: 'k', shape: [2] }, 'bad-message', /data' must be present for encoding 'fp32'/],
    ['int8 bytes too short', { ...int8, bytes: int8.bytes.slice(1) }, 'bad-shape', /int8 needs 12 bytes for shape \[4,3\], got 11/],
    ['fp16 bytes of int8 length', { ...encodeTensor(kernel, 'fp16'), bytes: new Uint8Array(12) }, 'bad-shape', /fp16 needs 24 bytes/],
    ['one scale for a kernel', { ...int8, scales: Float32Array.of(0.1) }, 'bad-shape', /needs 3 scales \(one per output channel, the last axis\), got 1/],
    ['NaN scale', { ...int8, scales: Float32Array.of(0.1, NaN, 0.1) }, 'non-finite', /scale 1 must be a finite number ≥ 0, got NaN/],
    ['negative scale', { ...int8, scales: Float32Array.of(0.1, -1, 0.1) }, 'non-finite', /scale 1 must be a finite number ≥ 0, got -1/],
    ['a scale that decodes to infinity', { ...int8, scales: Float32Array.of(0.1, 3e38, 0.1) }, 'non-finite', /scale 1 is 3\.0000000\d*e\+38: times 128 it is non-finite in float32/],
    ['fp16 infinity', { name: 'h', shape: [2], encoding: 'fp16', bytes: Uint8Array.of(0, 0x3c, 0, 0x7c) }, 'non-finite', /non-finite fp16 value at index 1/],
    ['fp32 NaN', { name: 'f', shape: [2], data: Float32Array.of(1, NaN) }, 'non-finite', /non-finite value at index 1/],
  ];
  for (const [what, t, code, message] of cases) {
    const e = refusal([t]);
    assert.equal(e.code, code, `${what}: ${e.message}`);
    assert.match(e.message, message, what);
  }
  // Two tensors reading the same bytes would let a small message stand for a large model; views into one buffer that
  // do not overlap (how a decoder hands out `bin`) are fine.
  const shared = new Uint8Array(24);
  const apart = [{ ...int8, bytes: shared.subarray(0, 12) }, { ...int8, bytes: shared.subarray(12), scales: int8.scales.slice() }];
  assert.equal(checkWireTensors(apart, 'model.weights').length, 2);
  const aliased = [{ ...int8, bytes: shared.subarray(0, 12) }, { ...int8, bytes: shared.subarray(6, 18), scales: int8.scales.slice() }];
  assert.throws(() => checkWireTensors(aliased, 'model.weights'), /model\.weights\[1\] \('dense\/kernel'\) shares its data/);
});

test('uploaded weights stay fp32: an encoded upload is refused naming the field', () => {
  const frame = encodeFrame({ type: 'weights', round: 1, numSamples: 5, weights: [encodeTensor(kernel, 'int8')], stats: {} });
  assert.throws(() => parseClientFrame('weights', frame), (e: unknown) => e instanceof ProtocolError && /weights\[0\]\.encoding' must be 'fp32'/.test(e.message));
  const fine = encodeFrame({ type: 'weights', round: 1, numSamples: 5, weights: [kernel], stats: {} });
  assert.equal(parseClientFrame('weights', fine).type, 'weights');
});

// ---- a real federation ----------------------------------------------------------------------------------------------

/**
 * One round with one client. A learning rate of 1e-30 makes local training move no weight of magnitude above ~1e-22
 * (w + 1e-30 rounds back to w in float32), so after the round the client's model is what it loaded from the task.
 */
async function oneRound(t: TestContext, codec: 'fp32' | 'int8') {
  const b = await startBench(1, { rounds: 1, studentCodec: codec, learningRate: 1e-30, ntdBeta: 0.5 });
  t.after(() => b.agg.close());
  const client = makeClient(b, 0);
  t.after(() => client.stop());
  let sent: RoundMsg | null = null;
  let serverStudent: WireTensor[] = [];
  client.on('round-start', (r) => {
    sent = r;
    // The round can't aggregate before this client uploads: the server's student is still the one the task carries.
    serverStudent = weightsToWire(b.agg.coordinator.strategy.model).map((w) => ({ ...w, data: w.data.slice() }));
  });
  await client.start();
  await client.finished();
  const round = b.agg.coordinator.history.find((h) => h.round === 1)!;
  const held = weightsToWire(client.model);
  const anchor = weightsToWire((client as unknown as { anchorModel: Parameters<typeof weightsToWire>[0] }).anchorModel);
  return { sent: sent! as RoundMsg, serverStudent, held, anchor, downlinkBytes: round.downlinkBytes };
}

test('int8 downlink: the round frame is ~4× smaller and the client trains from the decoded weights', { timeout: 120_000 }, async (t) => {
  await subsetData();
  const full = await oneRound(t, 'fp32');
  const small = await oneRound(t, 'int8');
  const ratio = full.downlinkBytes / small.downlinkBytes;
  assert.ok(ratio > 3.5 && ratio < 4.1, `downlink fp32 ${full.downlinkBytes} B vs int8 ${small.downlinkBytes} B (×${ratio.toFixed(2)})`);

  // fp32: the task carries the server's student exactly; int8: per-channel codes and steps.
  full.sent.model!.weights.forEach((w, i) => assert.deepEqual(w.data, full.serverStudent[i].data));
  const encoded = small.sent.model!.weights;
  assert.ok(encoded.every((w) => w.encoding === 'int8'));
  const decoded = decodeWeights(encoded);
  let differs = 0;
  decoded.forEach((w, k) => {
    const c = channelsOf(w.shape);
    const fp32 = small.serverStudent[k].data;
    w.data.forEach((v, i) => {
      // Decoded student vs the server's fp32 student: within half of its channel's step.
      const s = encoded[k].scales![i % c];
      assert.ok(Math.abs(v - fp32[i]) <= s * (0.5 + INT8_SLACK), `${w.name}[${i}]: ${v} vs ${fp32[i]} (step ${s})`);
      if (Math.abs(v - fp32[i]) > 1e-7) differs++;
      // The client's model and its NTD anchor are the decoded weights (the model up to the 1e-30 steps).
      assert.equal(small.anchor[k].data[i], v, `${w.name}[${i}]: the anchor holds the decoded value`);
      assert.ok(Math.abs(small.held[k].data[i] - v) <= 1e-20, `${w.name}[${i}]: the client trained from ${v}, holds ${small.held[k].data[i]}`);
    });
  });
  assert.ok(differs > 1000, `the client got int8 weights, not the fp32 student (${differs} values differ)`);

  // A model loaded with the int8 task's weights equals one loaded with the decoded fp32 tensors, bit for bit.
  const { train } = await subsetData();
  const m = buildModel({ kind: 'mlp', inputShape: train.shape, numClasses: train.numClasses });
  t.after(() => m.dispose());
  applyWireWeights(m, encoded);
  weightsToWire(m).forEach((w, k) => assert.deepEqual(w.data, decoded[k].data));
});

test('the server compresses the student only for clients whose hello lists the encoding; checkpoints stay fp32', async (t) => {
  const { train } = await subsetData();
  const proxy = subset(train, Uint32Array.from({ length: 50 }, (_, i) => i));
  const student = new Student({ ...DEFAULT_CONFIG, student: 'mlp', studentCodec: 'int8' }, proxy, 'hash');
  t.after(() => student.model.dispose());
  const forRound = student.downlink();
  const legacy = forRound({});
  const fp16Only = forRound({ weightEncodings: ['fp16'] });
  const int8 = forRound({ weightEncodings: ['fp16', 'int8'] });
  assert.ok(legacy.weights.every((w) => w.encoding === undefined && w.data), 'no weightEncodings: fp32');
  assert.equal(fp16Only, legacy, 'a client that does not list --student-codec gets fp32');
  assert.ok(int8.weights.every((w) => w.encoding === 'int8'));
  assert.equal(forRound({ weightEncodings: ['int8'] }), int8, 'encoded once per round');
  assert.ok(wireBytes(int8.weights) < wireBytes(legacy.weights) / 3.9);
  const checkpoint = await student.exportState();
  assert.ok(checkpoint.model.weights.every((w) => w.encoding === undefined && w.data), 'checkpoints are lossless fp32');
  assert.ok(checkpoint.optimizer.every((w) => w.data instanceof Float32Array));
});
