import { test } from 'node:test';
import assert from 'node:assert/strict';
import { combine } from 'shamir-secret-sharing';
import {
  encodeFixedPoint,
  fixedPointScale,
  SecAggClient,
  SecAggServer,
  type PublicKeys,
  type Reveal,
  type SecAggParams,
  type SealedShare,
} from '../shared/secagg/index.ts';
import { newKeyPair, open, pairwiseSeed, prg, seal, shareAad, shareKey } from '../shared/secagg/crypto.ts';

/** Seeded LCG in [0, 1) and a standard normal from it. */
function rng(seed: number): { u: () => number; g: () => number } {
  let s = seed >>> 0;
  const u = () => (s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32;
  return { u, g: () => Math.sqrt(-2 * Math.log(u() + 1e-12)) * Math.cos(2 * Math.PI * u()) };
}

const IDS = ['alice', 'bob', 'carol', 'dave', 'erin'];

function paramsFor(length: number, bound: number, session = 'round-1', threshold = 3, n = IDS.length): SecAggParams {
  return { session, threshold, scale: fixedPointScale({ contributors: n, bound }), bound, length };
}

/** Half of the clients send probability-like values in [0, 1], half noisy logits with negatives and a few clipped. */
function inputs(n: number, length: number, seed: number): Float64Array[] {
  const r = rng(seed);
  return Array.from({ length: n }, (_, k) =>
    Float64Array.from({ length }, (_, i) => (k % 2 === 0 ? r.u() : i % 97 === 0 ? -50 : 3 * r.g())),
  );
}

function clip(x: number, bound: number): number {
  return Math.min(bound, Math.max(-bound, x));
}

interface Session {
  params: SecAggParams;
  clients: Map<string, SecAggClient>;
  server: SecAggServer;
}

/** AdvertiseKeys and ShareKeys for `sharing` (default: everyone); returns after the server has fixed U2. */
async function throughShareKeys(params: SecAggParams, ids = IDS, sharing = ids): Promise<Session> {
  const server = new SecAggServer(params, ids);
  const clients = new Map(ids.map((id) => [id, new SecAggClient(id, params)]));
  for (const c of clients.values()) server.addKeys(c.advertise());
  const roster = server.roster();
  for (const id of sharing) server.addShares(id, await clients.get(id)!.shareKeys(roster));
  const u2 = server.u2();
  for (const id of u2) clients.get(id)!.receiveShares(u2, server.sharesFor(id));
  return { params, clients, server };
}

/** The whole protocol; `noMask` drop after ShareKeys, `noReveal` drop after sending their masked input. */
async function run(
  s: Session,
  xs: Map<string, ArrayLike<number>>,
  o: { noMask?: string[]; noReveal?: string[] } = {},
): Promise<{ sum: Float64Array; count: number }> {
  const masked = new Map<string, Uint32Array>();
  for (const id of s.server.u2()) {
    if (o.noMask?.includes(id)) continue;
    const y = s.clients.get(id)!.mask(xs.get(id)!);
    masked.set(id, y);
    s.server.addMasked(id, y);
  }
  const req = s.server.unmaskRequest();
  for (const id of req.survivors) {
    if (o.noReveal?.includes(id)) continue;
    s.server.addReveal(id, s.clients.get(id)!.reveal(req));
  }
  return s.server.unmask();
}

/** Σ over `ids` of the clipped inputs, and the sum of their fixed-point codes decoded (what unmask must equal exactly). */
function expectedSums(xs: Map<string, ArrayLike<number>>, ids: string[], params: SecAggParams): { real: Float64Array; coded: Float64Array } {
  const real = new Float64Array(params.length);
  const coded = new Float64Array(params.length);
  for (const id of ids) {
    const x = xs.get(id)!;
    const code = encodeFixedPoint(x, params);
    for (let i = 0; i < params.length; i++) {
      real[i] += clip(x[i], params.bound);
      coded[i] += (code[i] | 0) / params.scale;
    }
  }
  return { real, coded };
}

/** Checks the unmasked sum; returns the largest error against the real (unrounded, clipped) sum. */
function assertSum(got: { sum: Float64Array; count: number }, xs: Map<string, ArrayLike<number>>, ids: string[], params: SecAggParams): number {
  assert.equal(got.count, ids.length);
  const { real, coded } = expectedSums(xs, ids, params);
  const tol = (ids.length * 0.5) / params.scale;
  let worst = 0;
  for (let i = 0; i < params.length; i++) {
    worst = Math.max(worst, Math.abs(got.sum[i] - real[i]));
    // Fixed point is exact once encoded: the sum mod 2^32 decodes to the sum of the codes, to float rounding.
    assert.ok(Math.abs(got.sum[i] - coded[i]) <= 1e-9 * (1 + Math.abs(coded[i])), `entry ${i}: ${got.sum[i]} ≠ ${coded[i]}`);
  }
  assert.ok(worst <= tol, `max error ${worst} exceeds ${tol}`);
  return worst;
}

test('fixedPointScale: the largest power of 2 with n·bound·scale < 2^31, refusing scales below 2^8', () => {
  for (const [n, bound] of [[5, 1], [1, 1], [10, 50], [100, 0.3], [255, 1], [3, 2 ** 20]] as const) {
    const scale = fixedPointScale({ contributors: n, bound });
    assert.equal(Math.log2(scale) % 1, 0, `power of 2 for n=${n}, bound=${bound}`);
    assert.ok(n * bound * scale < 2 ** 31, `no wrap for n=${n}, bound=${bound}`);
    assert.ok(n * bound * scale * 2 >= 2 ** 31, `largest for n=${n}, bound=${bound}`);
  }
  assert.equal(fixedPointScale({ contributors: 5, bound: 1 }), 2 ** 28);
  assert.equal(fixedPointScale({ contributors: 1, bound: 1 }), 2 ** 30); // 2^31 itself would wrap: strict inequality
  assert.throws(() => fixedPointScale({ contributors: 100, bound: 2 ** 17 }), /precision/);
  assert.throws(() => fixedPointScale({ contributors: 0, bound: 1 }), /contributors/);
  assert.throws(() => fixedPointScale({ contributors: 3, bound: Number.NaN }), /bound/);
  // A scale too large for the session's clients is refused where it would make the sum wrap.
  assert.throws(() => new SecAggServer({ ...paramsFor(4, 1), scale: 2 ** 30 }, IDS), /wrap/);
});

test('5 clients, t = 3: the unmasked sum equals Σ x_u to fixed-point precision (probabilities and noisy logits)', async () => {
  const params = paramsFor(1000, 8);
  const xs = new Map(inputs(5, params.length, 7).map((x, k) => [IDS[k], x]));
  const s = await throughShareKeys(params);
  const got = await run(s, xs);
  // Random inputs are not multiples of 1/scale: some rounding error must show (else the tolerance check is vacuous).
  assert.ok(assertSum(got, xs, IDS, params) > 0);
  // Clipping happened (the −50s) and the bound holds in the sum.
  assert.ok(got.sum[0] >= -5 * params.bound && got.sum[0] < 0);
});

test('a client that drops after ShareKeys (in U2, no masked input) is recovered from the shares of its mask key', async () => {
  const params = paramsFor(500, 4);
  const xs = new Map(inputs(5, params.length, 11).map((x, k) => [IDS[k], x]));
  const s = await throughShareKeys(params);
  const got = await run(s, xs, { noMask: ['carol'] });
  assertSum(got, xs, ['alice', 'bob', 'dave', 'erin'], params);
});

test('a client that drops after sending its masked input (no reveal) is summed while ≥ t others reveal', async () => {
  const params = paramsFor(500, 4);
  const xs = new Map(inputs(5, params.length, 13).map((x, k) => [IDS[k], x]));
  const s = await throughShareKeys(params);
  const got = await run(s, xs, { noReveal: ['bob'] });
  assertSum(got, xs, IDS, params);
  assert.equal(s.server.reveals, 0, 'reveals are dropped once unmasked');
});

test('dropouts at every step at once: one never shares keys, one never masks, one never reveals', async () => {
  const params = paramsFor(300, 2, 'round-1', 2);
  const xs = new Map(inputs(5, params.length, 17).map((x, k) => [IDS[k], x]));
  const s = await throughShareKeys(params, IDS, ['alice', 'bob', 'dave', 'erin']); // carol: keys only (not in U2)
  assert.deepEqual(s.server.u2(), ['alice', 'bob', 'dave', 'erin']);
  const got = await run(s, xs, { noMask: ['erin'], noReveal: ['alice'] });
  assertSum(got, xs, ['alice', 'bob', 'dave'], params);
});

test('fewer than t at any step throws clearly', async () => {
  const params = paramsFor(10, 1);
  const few = new SecAggServer(params, IDS);
  few.addKeys(new SecAggClient('alice', params).advertise());
  few.addKeys(new SecAggClient('bob', params).advertise());
  assert.throws(() => few.roster(), /only 2 clients advertised keys, fewer than the threshold 3/);

  const s1 = await throughShareKeys(params, IDS, ['alice', 'bob', 'carol']);
  assert.deepEqual(s1.server.u2(), ['alice', 'bob', 'carol']);
  const s2 = new SecAggServer(params, IDS);
  const cs = IDS.map((id) => new SecAggClient(id, params));
  for (const c of cs) s2.addKeys(c.advertise());
  const roster = s2.roster();
  for (const c of cs.slice(0, 2)) s2.addShares(c.clientId, await c.shareKeys(roster));
  assert.throws(() => s2.u2(), /only 2 clients shared keys/);

  const xs = new Map(IDS.map((id) => [id, new Float64Array(10).fill(0.5)]));
  const s3 = await throughShareKeys(params);
  for (const id of ['alice', 'bob']) s3.server.addMasked(id, s3.clients.get(id)!.mask(xs.get(id)!));
  assert.throws(() => s3.server.unmaskRequest(), /only 2 masked inputs arrived, fewer than the threshold 3/);
  // A client refuses to reveal when told fewer than t survived.
  const tooFew = { survivors: ['alice', 'bob'], dropped: ['carol', 'dave', 'erin'] };
  assert.throws(() => s3.clients.get('alice')!.reveal(tooFew), /2 survivors, fewer than the threshold 3/);

  const s4 = await throughShareKeys(params);
  for (const id of IDS) s4.server.addMasked(id, s4.clients.get(id)!.mask(xs.get(id)!));
  const req = s4.server.unmaskRequest();
  for (const id of ['alice', 'bob']) s4.server.addReveal(id, s4.clients.get(id)!.reveal(req));
  await assert.rejects(s4.server.unmask(), /only 2 clients revealed shares, fewer than the threshold 3/);
  // More reveals arrive, and the session still completes from the intact masked sum.
  s4.server.addReveal('carol', s4.clients.get('carol')!.reveal(req));
  assertSum(await s4.server.unmask(), xs, IDS, params);
});

test('a masked input looks uniform, and with b_u removed the pairwise masks still hide x_u', async () => {
  const params = paramsFor(10_000, 1);
  const xs = new Map(inputs(5, params.length, 23).map((x, k) => [IDS[k], x.map((v) => Math.abs(v) % 1)]));
  const s = await throughShareKeys(params);
  const masked = new Map<string, Uint32Array>();
  for (const id of IDS) {
    const y = s.clients.get(id)!.mask(xs.get(id)!);
    masked.set(id, y);
    s.server.addMasked(id, y);
  }
  const y = masked.get('bob')!;
  const code = encodeFixedPoint(xs.get('bob')!, params);
  const differs = (a: Uint32Array, b: Uint32Array) => a.reduce((n, v, i) => n + (v !== b[i] ? 1 : 0), 0) / a.length;
  assert.ok(differs(y, code) > 0.999, 'masked input differs from the encoded input almost everywhere');
  // Uniform on Z_2^32: mean 2^31, standard error 2^32/√(12·10⁴) ≈ 1.2e7; the encoded input has mean ≈ 0.5·2^28.
  const mean = y.reduce((a, v) => a + v, 0) / y.length;
  assert.ok(Math.abs(mean - 2 ** 31) < 6e7, `mean ${mean} far from 2^31`);
  const codeMean = code.reduce((a, v) => a + v, 0) / code.length;
  assert.ok(Math.abs(codeMean - 2 ** 31) > 1e9, 'the unmasked code would fail the same uniformity check');

  // What the server could do with every survivor's b_u revealed: strip bob's self mask. Pairwise masks remain.
  const req = s.server.unmaskRequest();
  const reveals = ['alice', 'carol', 'dave'].map((id) => s.clients.get(id)!.reveal(req));
  const bShares = reveals.map((rs) => rs.find((r) => r.of === 'bob' && r.kind === 'b')!.share);
  const bBob = await combine(bShares);
  const self = prg(bBob, params.length);
  const unselfed = y.map((v, i) => v - self[i]);
  assert.ok(differs(unselfed, code) > 0.999, 'y_u − PRG(b_u) still differs from x_u almost everywhere');
  // …while the full protocol recovers the sum: the b shares were the right ones.
  for (const [k, id] of ['alice', 'carol', 'dave'].entries()) s.server.addReveal(id, reveals[k]);
  assertSum(await s.server.unmask(), xs, IDS, params);
});

test('reveal refusal rules: never both secrets of a client, never before masking, never "dropped" for oneself', async () => {
  const params = paramsFor(20, 1);
  const xs = new Map(IDS.map((id) => [id, new Float64Array(20).fill(0.25)]));
  const s = await throughShareKeys(params);
  const alice = s.clients.get('alice')!;
  const erin = s.clients.get('erin')!;
  const full = { survivors: ['alice', 'bob', 'carol', 'dave'], dropped: ['erin'] };
  assert.throws(() => alice.reveal(full), /not sent its masked input yet/);
  alice.mask(xs.get('alice')!);
  erin.mask(xs.get('erin')!);

  // Both kinds for one client in one request.
  assert.throws(() => alice.reveal({ survivors: ['alice', 'bob', 'carol', 'dave', 'erin'], dropped: ['erin'] }), /both as survivor and as dropped/);
  // A request that does not account for all of U2, or names strangers.
  assert.throws(() => alice.reveal({ survivors: ['alice', 'bob', 'carol'], dropped: ['erin'] }), /"dave" listed neither/);
  assert.throws(() => alice.reveal({ survivors: ['alice', 'bob', 'carol', 'dave', 'mallory'], dropped: ['erin'] }), /not in U2/);
  // Told it dropped after it sent its masked input.
  assert.throws(() => erin.reveal({ survivors: ['alice', 'bob', 'carol', 'dave'], dropped: ['erin'] }), /listed as dropped/);

  // s of erin first; then b of erin is refused (and the refused request reveals nothing else either).
  const first = alice.reveal(full);
  assert.deepEqual(first.map((r) => `${r.of}:${r.kind}`).sort(), ['alice:b', 'bob:b', 'carol:b', 'dave:b', 'erin:s']);
  assert.ok(first.every((r) => r.share.length === 33));
  assert.throws(() => alice.reveal({ survivors: IDS, dropped: [] }), /"erin"'s mask key was already revealed/);
  // The same request again (a retry) is fine and gives the same shares.
  assert.deepEqual(alice.reveal(full), first);

  // And the other way round: b of erin first, then s of erin is refused.
  erin.reveal({ survivors: IDS, dropped: [] });
  const aliceDropped = { survivors: ['bob', 'carol', 'dave', 'erin'], dropped: ['alice'] };
  assert.throws(() => erin.reveal(aliceDropped), /"alice"'s self-mask seed was already revealed/);
});

test('sealed shares: a tampered, re-addressed or other-session ciphertext fails authentication', async () => {
  const params = paramsFor(8, 1, 'round-7');
  const server = new SecAggServer(params, IDS);
  const clients = IDS.map((id) => new SecAggClient(id, params));
  for (const c of clients) server.addKeys(c.advertise());
  const roster = server.roster();
  const all = new Map<string, SealedShare[]>();
  for (const c of clients) {
    const sealed = await c.shareKeys(roster);
    all.set(c.clientId, sealed);
    server.addShares(c.clientId, sealed);
  }
  const u2 = server.u2();
  const forBob = server.sharesFor('bob');
  assert.equal(forBob.length, 4);

  const flipped = forBob.map((x) => ({ ...x, ciphertext: x.ciphertext.slice() }));
  flipped[1].ciphertext[20] ^= 1;
  assert.throws(() => clients[1].receiveShares(u2, flipped), new RegExp(`from "${flipped[1].from}" failed authentication`));
  // Carol's share for dave, handed to bob as if it were his.
  const forDaveFromCarol = all.get('carol')!.find((x) => x.to === 'dave')!;
  const readdressed = forBob.map((x) => (x.from === 'carol' ? { ...forDaveFromCarol, to: 'bob' } : x));
  assert.throws(() => clients[1].receiveShares(u2, readdressed), /from "carol" failed authentication/);
  // Nothing was kept from the failed attempts: the genuine shares still go through.
  clients[1].receiveShares(u2, forBob);

  // The same key pairs in another session (primitives directly: the API makes fresh keys per session) derive other
  // keys and AAD, so a ciphertext or mask from one round is useless in the next.
  const [a, b] = [newKeyPair(), newKeyPair()];
  const sealKeyR7 = shareKey('round-7', a.secretKey, b.publicKey, 'alice', 'bob', 'bob');
  const sealedR7 = seal(sealKeyR7, shareAad('round-7', 'alice', 'bob'), new Uint8Array(66));
  const keyR7 = shareKey('round-7', b.secretKey, a.publicKey, 'alice', 'bob', 'alice');
  assert.equal(open(keyR7, shareAad('round-7', 'alice', 'bob'), sealedR7).length, 66);
  assert.throws(() => open(shareKey('round-8', b.secretKey, a.publicKey, 'alice', 'bob', 'alice'), shareAad('round-8', 'alice', 'bob'), sealedR7));
  assert.throws(() => open(keyR7, shareAad('round-8', 'alice', 'bob'), sealedR7));
  // The reverse direction of the same pair has its own key.
  assert.throws(() => open(shareKey('round-7', b.secretKey, a.publicKey, 'bob', 'alice', 'alice'), shareAad('round-7', 'alice', 'bob'), sealedR7));
  // Pairwise seeds: symmetric within a session, different across sessions.
  const seed7 = pairwiseSeed('round-7', a.secretKey, b.publicKey, 'alice', 'bob');
  assert.deepEqual(pairwiseSeed('round-7', b.secretKey, a.publicKey, 'bob', 'alice'), seed7);
  assert.notDeepEqual(pairwiseSeed('round-8', a.secretKey, b.publicKey, 'alice', 'bob'), seed7);
});

test('wrong ids, lengths, keys and orders throw with clear messages', async () => {
  const params = paramsFor(16, 1);
  const server = new SecAggServer(params, IDS);
  const clients = IDS.map((id) => new SecAggClient(id, params));
  assert.throws(() => new SecAggServer(params, ['a', 'a', 'b']), /lists "a" twice/);
  assert.throws(() => new SecAggServer(params, ['a', 'b']), /cannot meet the threshold/);
  assert.throws(() => new SecAggServer({ ...params, threshold: 1 }, IDS), /threshold/);
  assert.throws(() => new SecAggClient('', params), /clientId/);
  assert.throws(() => server.addKeys(new SecAggClient('mallory', params).advertise()), /not selected/);
  assert.throws(() => server.addKeys({ ...clients[0].advertise(), cPk: new Uint8Array(31) }), /32 bytes/);
  assert.throws(() => server.addShares('alice', []), /not reached that step/);
  for (const c of clients) server.addKeys(c.advertise());
  assert.throws(() => server.addKeys(clients[0].advertise()), /already/);
  const roster = server.roster();
  assert.throws(() => server.addKeys(clients[0].advertise()), /roster is already out/);

  // Roster checks on the client.
  const fresh = new SecAggClient('alice', params);
  await assert.rejects(fresh.shareKeys(roster), /not the ones it advertised/);
  await assert.rejects(clients[0].shareKeys(roster.filter((k) => k.clientId !== 'alice')), /does not include this client/);
  await assert.rejects(clients[0].shareKeys([...roster, roster[1]]), /twice/);
  await assert.rejects(clients[0].shareKeys(roster.slice(0, 2)), /fewer than the threshold/);
  const lowOrder: PublicKeys[] = roster.map((k) => (k.clientId === 'bob' ? { ...k, cPk: new Uint8Array(32) } : k));
  await assert.rejects(clients[0].shareKeys(lowOrder), /key agreement with "?bob"? failed|invalid public key/);

  const sealed = new Map<string, SealedShare[]>();
  // A second call while the first is still splitting is refused too (two different self-mask seeds would be shared).
  const pending = clients[0].shareKeys(roster);
  await assert.rejects(clients[0].shareKeys(roster), /out of order/);
  sealed.set('alice', await pending);
  for (const c of clients.slice(1)) sealed.set(c.clientId, await c.shareKeys(roster));
  await assert.rejects(clients[0].shareKeys(roster), /out of order/);
  assert.throws(() => server.addShares('mallory', sealed.get('alice')!), /not in the roster/);
  assert.throws(() => server.addShares('alice', sealed.get('bob')!), /claims to come from "bob"/);
  assert.throws(() => server.addShares('alice', sealed.get('alice')!.slice(1)), /expected one for each of the 4/);
  assert.throws(() => server.addShares('alice', [...sealed.get('alice')!, sealed.get('alice')![0]]), /two sealed shares addressed/);
  for (const [id, sh] of sealed) server.addShares(id, sh);
  assert.throws(() => server.addShares('alice', sealed.get('alice')!), /already sent/);
  const u2 = server.u2();
  assert.throws(() => server.sharesFor('mallory'), /not in U2/);
  assert.throws(() => clients[0].receiveShares(u2, server.sharesFor('bob')), /addressed to "bob"/);
  assert.throws(() => clients[0].receiveShares(u2, server.sharesFor('alice').slice(1)), /no sealed share from U2 member/);
  assert.throws(() => clients[0].receiveShares(['bob', 'carol', 'dave'], server.sharesFor('alice')), /U2 does not include this client/);
  for (const c of clients) c.receiveShares(u2, server.sharesFor(c.clientId));

  assert.throws(() => clients[0].mask(new Float64Array(15)), /length 15, expected 16/);
  assert.throws(() => clients[0].mask(new Float64Array(16).fill(Number.NaN)), /input\[0\] is not a number/);
  const y = clients[0].mask(new Float64Array(16).fill(0.5));
  assert.throws(() => clients[0].mask(new Float64Array(16)), /out of order/);
  assert.throws(() => server.addMasked('alice', y.subarray(1)), /length 15, expected 16/);
  assert.throws(() => server.addMasked('alice', Float32Array.from(y) as unknown as Uint32Array), /Uint32Array/);
  assert.throws(() => server.addMasked('mallory', y), /not in U2/);
  server.addMasked('alice', y);
  assert.throws(() => server.addMasked('alice', y), /already sent its masked input/);
  for (const c of clients.slice(1)) server.addMasked(c.clientId, c.mask(new Float64Array(16).fill(-0.25)));

  const req = server.unmaskRequest();
  assert.throws(() => server.addMasked('bob', y), /unmask request is already out/);
  const r = clients[0].reveal(req);
  assert.throws(() => server.addReveal('mallory', r), /not a survivor/);
  assert.throws(() => server.addReveal('alice', r.slice(1)), /missing/);
  const wrongKind: Reveal[] = r.map((x) => (x.of === 'bob' ? { ...x, kind: 's' } : x));
  assert.throws(() => server.addReveal('alice', wrongKind), /only 'b' was asked for/);
  assert.throws(() => server.addReveal('alice', r.map((x) => ({ ...x, share: x.share.subarray(1) }))), /33 bytes/);
  server.addReveal('alice', r);
  assert.throws(() => server.addReveal('alice', r), /already revealed/);
  for (const c of clients.slice(1, 3)) server.addReveal(c.clientId, c.reveal(req));
  const out = await server.unmask();
  assert.equal(out.count, 5);
  assert.ok(Math.abs(out.sum[0] - (0.5 - 4 * 0.25)) <= 2.5 / params.scale);
  await assert.rejects(server.unmask(), /already ran/);
  server.dispose();
  assert.throws(() => server.u2(), /disposed/);
});

test('the server never holds a single client input: only the running masked sum, and nothing after unmask', async () => {
  const params = paramsFor(2000, 1);
  const xs = new Map(inputs(5, params.length, 31).map((x, k) => [IDS[k], x.map((v) => Math.abs(v) % 1)]));
  const codes = IDS.map((id) => encodeFixedPoint(xs.get(id)!, params));
  const s = await throughShareKeys(params);

  /** Every typed array reachable from the server object. */
  const arrays = (root: unknown): ArrayBufferView[] => {
    const seen = new Set<unknown>();
    const out: ArrayBufferView[] = [];
    const walk = (v: unknown): void => {
      if (v === null || typeof v !== 'object' || seen.has(v)) return;
      seen.add(v);
      if (ArrayBuffer.isView(v)) return void out.push(v);
      const values = v instanceof Map ? [...v.keys(), ...v.values()] : v instanceof Set ? [...v] : Object.values(v);
      values.forEach(walk);
    };
    walk(root);
    return out;
  };
  const holdsAnInput = () =>
    arrays(s.server).some((a) => {
      if (a.byteLength !== params.length * 4) return false;
      const w = new Uint32Array(a.buffer, a.byteOffset, params.length);
      return codes.some((c) => c.every((v, i) => v === w[i]));
    });

  for (const id of IDS) {
    s.server.addMasked(id, s.clients.get(id)!.mask(xs.get(id)!));
    assert.ok(!holdsAnInput(), `after ${id}'s masked input`);
  }
  const vectorsHeld = () => arrays(s.server).filter((a) => a.byteLength >= params.length * 4).length;
  assert.equal(vectorsHeld(), 1, 'only the running sum of masked inputs is kept');
  const req = s.server.unmaskRequest();
  for (const id of ['alice', 'bob', 'carol']) s.server.addReveal(id, s.clients.get(id)!.reveal(req));
  const got = await s.server.unmask();
  assertSum(got, xs, IDS, params);
  assert.equal(vectorsHeld(), 0, 'nothing of vector size is kept after unmask');
  s.server.dispose();
  assert.equal(arrays(s.server).length, 0, 'dispose drops all key material and shares');
});

test('every byte field may arrive as a Node Buffer (how msgpack bins decode): keys, sealed shares, reveals', async () => {
  const params = paramsFor(64, 1, 'round-buffers');
  const xs = new Map(IDS.map((id, k) => [id, inputs(IDS.length, 64, 40 + k)[k]]));
  const server = new SecAggServer(params, IDS);
  const clients = new Map(IDS.map((id) => [id, new SecAggClient(id, params)]));
  const buf = (b: Uint8Array) => Buffer.from(b);
  for (const c of clients.values()) {
    const k = c.advertise();
    server.addKeys({ clientId: k.clientId, cPk: buf(k.cPk), sPk: buf(k.sPk) });
  }
  const roster = server.roster().map((k) => ({ ...k, cPk: buf(k.cPk), sPk: buf(k.sPk) }));
  for (const [id, c] of clients) server.addShares(id, (await c.shareKeys(roster)).map((s) => ({ ...s, ciphertext: buf(s.ciphertext) })));
  const u2 = server.u2();
  for (const id of u2) clients.get(id)!.receiveShares(u2, server.sharesFor(id).map((s) => ({ ...s, ciphertext: buf(s.ciphertext) })));
  for (const id of u2) server.addMasked(id, clients.get(id)!.mask(xs.get(id)!));
  const req = server.unmaskRequest();
  for (const id of req.survivors) server.addReveal(id, clients.get(id)!.reveal(req).map((r) => ({ ...r, share: buf(r.share) })));
  assertSum(await server.unmask(), xs, IDS, params);
});
