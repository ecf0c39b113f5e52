/**
 * The server's side of secure aggregation, one instance per session. It routes public keys and sealed shares, and
 * holds only the running sum of masked inputs — never one client's vector, masked or not — then unmasks the sum:
 *   Σ_{u∈U3} y_u = Σ x_u + Σ_{u∈U3} PRG(b_u) + (pairwise terms between survivors and dropped clients; the ones between
 *   two survivors cancel). t shares of each survivor's b_u remove the self masks; t shares of each dropped d's s_d^sk
 *   let the server recompute s_du = KDF(x25519(s_d^sk, s_u^pk)) and remove every pairwise term that involves d.
 */
import { combine } from 'shamir-secret-sharing';
import { addPrg, pairwiseSeed, publicKeyOf } from './crypto.ts';
import { decodeFixedPoint, validateParams, type SecAggParams } from './params.ts';
import type { PublicKeys, Reveal, SealedShare, UnmaskRequest } from './types.ts';
import { byId, checkBytes, checkId, checkIdList, checkPublicKeys, sameBytes, SHARE_BYTES, sortedIds } from './validate.ts';

type Phase = 'keys' | 'shares' | 'masked' | 'reveals' | 'unmasking' | 'done' | 'disposed';

/** A sealed share carries two 33-byte shares, two framed ids (≤ 256 UTF-16 units each) and 28 bytes of AEAD. */
const MAX_CIPHERTEXT_BYTES = 4096;

export class SecAggServer {
  readonly params: SecAggParams;
  private readonly selected: Set<string>;
  private phase: Phase = 'keys';
  private keys = new Map<string, PublicKeys>();
  private u1: PublicKeys[] = [];
  private sealed = new Map<string, SealedShare[]>();
  private u2List: string[] = [];
  /** Σ y_u mod 2^32 over the masked inputs received so far; single inputs are never kept. */
  private maskedSum: Uint32Array | null = null;
  private maskedFrom = new Set<string>();
  private request: UnmaskRequest | null = null;
  /** revealer → (of → share). */
  private revealsBy = new Map<string, Map<string, Uint8Array>>();

  constructor(params: SecAggParams, selected: string[]) {
    const ids = checkIdList(selected, 'selected');
    validateParams(params, ids.size);
    this.params = { ...params };
    this.selected = ids;
  }

  /** Round 0: a selected client's two public keys, once. */
  addKeys(k: PublicKeys): void {
    this.expectPhase('keys', 'addKeys', 'the roster is already out');
    const keys = checkPublicKeys(k, 'public keys');
    if (!this.selected.has(keys.clientId)) throw new Error(`secagg: ${JSON.stringify(keys.clientId)} is not selected for this session`);
    if (this.keys.has(keys.clientId)) throw new Error(`secagg: ${JSON.stringify(keys.clientId)} already advertised its keys`);
    this.keys.set(keys.clientId, keys);
  }

  /** U1, sorted by id; freezes it (later keys are refused). Throws if fewer than t clients advertised keys. */
  roster(): PublicKeys[] {
    if (this.phase === 'keys') {
      if (this.keys.size < this.params.threshold) {
        throw new Error(`secagg: only ${this.keys.size} clients advertised keys, fewer than the threshold ${this.params.threshold}`);
      }
      this.u1 = [...this.keys.values()].sort(byId);
      this.phase = 'shares';
    }
    this.expectNotDisposed();
    return this.u1.map((k) => ({ clientId: k.clientId, cPk: k.cPk.slice(), sPk: k.sPk.slice() }));
  }

  /** Round 1: `from`'s sealed shares, exactly one for every other U1 member. */
  addShares(from: string, sealed: SealedShare[]): void {
    this.expectPhase('shares', 'addShares', 'U2 is already fixed');
    checkId(from, 'from');
    if (!this.isInU1(from)) throw new Error(`secagg: ${JSON.stringify(from)} is not in the roster (U1)`);
    if (this.sealed.has(from)) throw new Error(`secagg: ${JSON.stringify(from)} already sent its shares`);
    if (!Array.isArray(sealed)) throw new Error('secagg: sealed shares must be an array');
    const to = new Set<string>();
    const copies: SealedShare[] = [];
    for (const [i, item] of sealed.entries()) {
      if (typeof item !== 'object' || item === null) throw new Error(`secagg: sealed share ${i} must be an object`);
      if (item.from !== from) {
        throw new Error(`secagg: sealed share ${i} claims to come from ${JSON.stringify(item.from)}, not ${JSON.stringify(from)}`);
      }
      checkId(item.to, `sealed share ${i}.to`);
      if (item.to === from || !this.isInU1(item.to)) {
        throw new Error(`secagg: sealed share ${i} is addressed to ${JSON.stringify(item.to)}, not another U1 member`);
      }
      if (to.has(item.to)) throw new Error(`secagg: two sealed shares addressed to ${JSON.stringify(item.to)}`);
      if (!(item.ciphertext instanceof Uint8Array) || item.ciphertext.length === 0 || item.ciphertext.length > MAX_CIPHERTEXT_BYTES) {
        throw new Error(`secagg: sealed share ${i}.ciphertext must be a Uint8Array of 1..${MAX_CIPHERTEXT_BYTES} bytes`);
      }
      to.add(item.to);
      copies.push({ from, to: item.to, ciphertext: item.ciphertext.slice() });
    }
    if (to.size !== this.u1.length - 1) {
      throw new Error(`secagg: ${to.size} sealed shares, expected one for each of the ${this.u1.length - 1} other U1 members`);
    }
    this.sealed.set(from, copies);
  }

  /** U2 (who sent their shares), sorted; freezes it. Throws if fewer than t. */
  u2(): string[] {
    if (this.phase === 'shares') {
      if (this.sealed.size < this.params.threshold) {
        throw new Error(`secagg: only ${this.sealed.size} clients shared keys, fewer than the threshold ${this.params.threshold}`);
      }
      this.u2List = sortedIds(this.sealed.keys());
      this.phase = 'masked';
    }
    this.expectAtLeast('masked', 'u2');
    return [...this.u2List];
  }

  /** The ciphertexts addressed to a U2 member, from every other U2 member (call after u2()). */
  sharesFor(clientId: string): SealedShare[] {
    this.expectPhase('masked', 'sharesFor', 'masked inputs are closed');
    if (!this.u2List.includes(clientId)) throw new Error(`secagg: ${JSON.stringify(clientId)} is not in U2`);
    const out: SealedShare[] = [];
    for (const from of this.u2List) {
      if (from === clientId) continue;
      const s = this.sealed.get(from)!.find((x) => x.to === clientId)!;
      out.push({ from, to: clientId, ciphertext: s.ciphertext.slice() });
    }
    return out;
  }

  /** Round 2: a U2 member's masked input, once; it goes straight into the running sum and is not kept. */
  addMasked(clientId: string, y: Uint32Array): void {
    this.expectPhase('masked', 'addMasked', 'the unmask request is already out');
    checkId(clientId, 'clientId');
    if (!this.u2List.includes(clientId)) throw new Error(`secagg: ${JSON.stringify(clientId)} is not in U2`);
    if (this.maskedFrom.has(clientId)) throw new Error(`secagg: ${JSON.stringify(clientId)} already sent its masked input`);
    if (!(y instanceof Uint32Array)) throw new Error('secagg: masked input must be a Uint32Array');
    if (y.length !== this.params.length) throw new Error(`secagg: masked input has length ${y.length}, expected ${this.params.length}`);
    this.maskedSum ??= new Uint32Array(this.params.length);
    const acc = this.maskedSum;
    for (let i = 0; i < acc.length; i++) acc[i] = acc[i] + y[i];
    this.maskedFrom.add(clientId);
  }

  /** Round 3: U3 and U2 \ U3; freezes U3 (no masked input after this). Throws if |U3| < t. */
  unmaskRequest(): UnmaskRequest {
    if (this.phase === 'masked') {
      if (this.maskedFrom.size < this.params.threshold) {
        throw new Error(`secagg: only ${this.maskedFrom.size} masked inputs arrived, fewer than the threshold ${this.params.threshold}`);
      }
      this.request = {
        survivors: sortedIds(this.maskedFrom),
        dropped: this.u2List.filter((id) => !this.maskedFrom.has(id)),
      };
      this.sealed.clear(); // nobody can join any more, so nobody needs them
      this.phase = 'reveals';
    }
    this.expectAtLeast('reveals', 'unmaskRequest');
    return { survivors: [...this.request!.survivors], dropped: [...this.request!.dropped] };
  }

  /** A survivor's reveals, once: exactly a 'b' share of every survivor and an 's' share of every dropped client. */
  addReveal(from: string, reveals: Reveal[]): void {
    this.expectPhase('reveals', 'addReveal', 'unmasking has started');
    checkId(from, 'from');
    const req = this.request!;
    if (!req.survivors.includes(from)) throw new Error(`secagg: ${JSON.stringify(from)} is not a survivor (U3) and cannot reveal`);
    if (this.revealsBy.has(from)) throw new Error(`secagg: ${JSON.stringify(from)} already revealed its shares`);
    if (!Array.isArray(reveals)) throw new Error('secagg: reveals must be an array');
    const expected = new Map<string, 'b' | 's'>([
      ...req.survivors.map((u) => [u, 'b'] as [string, 'b']),
      ...req.dropped.map((u) => [u, 's'] as [string, 's']),
    ]);
    const shares = new Map<string, Uint8Array>();
    for (const [i, r] of reveals.entries()) {
      if (typeof r !== 'object' || r === null) throw new Error(`secagg: reveal ${i} must be an object { of, kind, share }`);
      checkId(r.of, `reveal ${i}.of`);
      const kind = expected.get(r.of);
      if (kind === undefined) throw new Error(`secagg: reveal ${i} is for ${JSON.stringify(r.of)}, who is not in U2`);
      if (r.kind !== kind) {
        throw new Error(`secagg: reveal ${i} gives kind ${JSON.stringify(r.kind)} for ${JSON.stringify(r.of)}, but only '${kind}' was asked for`);
      }
      if (shares.has(r.of)) throw new Error(`secagg: two reveals for ${JSON.stringify(r.of)}`);
      checkBytes(r.share, SHARE_BYTES, `reveal ${i}.share`);
      // A plain Uint8Array copy: a Node Buffer (what msgpack bins may decode to) is a view into a pooled frame, and
      // the Shamir library accepts only objects whose constructor is Uint8Array itself.
      shares.set(r.of, new Uint8Array(r.share));
    }
    if (shares.size !== expected.size) {
      const missing = [...expected.keys()].filter((u) => !shares.has(u));
      throw new Error(`secagg: reveals missing for ${missing.map((m) => JSON.stringify(m)).join(', ')}`);
    }
    this.revealsBy.set(from, shares);
  }

  get reveals(): number {
    return this.revealsBy.size;
  }

  /**
   * Reconstruct every survivor's b_u and every dropped client's s^sk from the reveals, strip their masks from the
   * running sum, and decode Σ_{u∈U3} x_u. Drops the reveals, the reconstructed secrets and the masked sum afterwards.
   */
  async unmask(): Promise<{ sum: Float64Array; count: number }> {
    this.expectPhase('reveals', 'unmask', 'it already ran');
    const { threshold, session } = this.params;
    if (this.revealsBy.size < threshold) {
      throw new Error(`secagg: only ${this.revealsBy.size} clients revealed shares, fewer than the threshold ${threshold}`);
    }
    this.phase = 'unmasking';
    const req = this.request!;
    const revealers = [...this.revealsBy.values()];
    // Work on a copy: if a reconstruction fails, the session can take more reveals and retry from the intact sum.
    const acc = this.maskedSum!.slice();
    try {
      for (const u of req.survivors) {
        const b = await reconstruct(revealers.map((r) => r.get(u)!), threshold, `${JSON.stringify(u)}'s self-mask seed`);
        this.expectNotDisposed(); // dispose() may run while reconstruct awaits
        addPrg(acc, b, -1);
        b.fill(0);
      }
      for (const d of req.dropped) {
        const sk = await reconstruct(revealers.map((r) => r.get(d)!), threshold, `${JSON.stringify(d)}'s mask key`);
        this.expectNotDisposed();
        // The advertised public key pins the secret key: a wrong share cannot go unnoticed here.
        if (!sameBytes(publicKeyOf(sk), this.keys.get(d)!.sPk)) {
          sk.fill(0);
          throw new Error(`secagg: the shares of ${JSON.stringify(d)}'s mask key reconstruct a key that does not match its public key`);
        }
        // u added +PRG(s_ud) if u < d and −PRG(s_ud) if d < u: apply the opposite.
        for (const u of req.survivors) {
          const seed = pairwiseSeed(session, sk, this.keys.get(u)!.sPk, d, u);
          addPrg(acc, seed, u < d ? -1 : 1);
          seed.fill(0);
        }
        sk.fill(0);
      }
    } catch (e) {
      if ((this.phase as Phase) !== 'disposed') this.phase = 'reveals';
      throw e;
    }
    const sum = decodeFixedPoint(acc, this.params.scale);
    acc.fill(0);
    this.maskedSum?.fill(0);
    this.maskedSum = null;
    this.revealsBy.clear();
    this.phase = 'done';
    return { sum, count: req.survivors.length };
  }

  /** Drop every masked vector and key material (call after unmask or on abort). */
  dispose(): void {
    this.maskedSum?.fill(0);
    this.maskedSum = null;
    for (const shares of this.revealsBy.values()) for (const s of shares.values()) s.fill(0);
    this.revealsBy.clear();
    this.sealed.clear();
    this.keys.clear();
    this.u1 = [];
    this.phase = 'disposed';
  }

  private isInU1(id: string): boolean {
    return this.phase !== 'keys' && this.u1.some((k) => k.clientId === id);
  }

  private expectNotDisposed(): void {
    if (this.phase === 'disposed') throw new Error('secagg: this session was disposed');
  }

  private expectPhase(phase: Phase, method: string, past: string): void {
    this.expectNotDisposed();
    if (this.phase === phase) return;
    const order: Phase[] = ['keys', 'shares', 'masked', 'reveals', 'unmasking', 'done'];
    const early = order.indexOf(this.phase) < order.indexOf(phase);
    throw new Error(`secagg: ${method} refused: ${early ? 'the session has not reached that step yet' : past}`);
  }

  private expectAtLeast(phase: Phase, method: string): void {
    this.expectNotDisposed();
    const order: Phase[] = ['keys', 'shares', 'masked', 'reveals', 'unmasking', 'done'];
    if (order.indexOf(this.phase) < order.indexOf(phase)) throw new Error(`secagg: ${method} refused: the session has not reached that step yet`);
  }
}

/**
 * Lagrange-interpolate a secret from the revealed shares. With more than t shares, two different t-subsets must agree
 * — a cheap check that catches a corrupt or lying share instead of silently unmasking to garbage.
 */
async function reconstruct(shares: Uint8Array[], threshold: number, what: string): Promise<Uint8Array> {
  const first = shares.slice(0, threshold);
  try {
    const secret = await combine(first);
    if (shares.length > threshold) {
      const check = await combine(shares.slice(shares.length - threshold));
      if (!sameBytes(secret, check)) throw new Error('the revealed shares are inconsistent');
      check.fill(0);
    }
    return secret;
  } catch (e) {
    throw new Error(`secagg: cannot reconstruct ${what}: ${(e as Error).message}`);
  }
}
