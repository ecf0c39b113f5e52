/**
 * The client's side of secure aggregation (Bonawitz et al., CCS 2017, semi-honest variant), one instance per session.
 *
 * Phases, each callable once and in order: advertise → shareKeys → receiveShares → mask → reveal (reveal may be asked
 * again, e.g. on a retry, but never in a way that hands out both of a client's secrets):
 *   y_u = x_u + PRG(b_u) + Σ_{v∈U2, u<v} PRG(s_uv) − Σ_{v∈U2, v<u} PRG(s_uv)   (mod 2^32)
 * The server can remove PRG(b_u) only with t shares of b_u, and the pairwise terms only with t shares of s_u^sk; the
 * refusal rules in reveal() keep it from ever holding both for the same u, which is what protects x_u.
 */
import { split } from 'shamir-secret-sharing';
import {
  addPrg,
  framed,
  newKeyPair,
  open,
  pairwiseSeed,
  randomBytes,
  seal,
  shareAad,
  shareKey,
  type KeyPair,
} from './crypto.ts';
import { encodeFixedPoint, KEY_BYTES, validateParams, type SecAggParams } from './params.ts';
import type { PublicKeys, Reveal, SealedShare, UnmaskRequest } from './types.ts';
import { byId, checkBytes, checkId, checkIdList, checkPublicKeys, sameBytes, SHARE_BYTES } from './validate.ts';

type Phase = 'keys' | 'sharing' | 'shared' | 'received' | 'masked';

interface HeldShares {
  /** This client's share of u's s^sk (revealed only if u dropped). */
  s: Uint8Array;
  /** This client's share of u's self-mask seed b_u (revealed only if u survived). */
  b: Uint8Array;
}

export class SecAggClient {
  readonly clientId: string;
  readonly params: SecAggParams;
  private phase: Phase = 'keys';
  private readonly c: KeyPair;
  private readonly s: KeyPair;
  private b: Uint8Array | null = null;
  /** U1 as this client saw it in the roster. */
  private u1 = new Map<string, PublicKeys>();
  private u2: string[] = [];
  /** Shares this client holds of every U2 member's secrets (its own included). */
  private held = new Map<string, HeldShares>();
  private ownShares: HeldShares | null = null;
  /** Which secret of each u this client has already revealed: once 'b', never 's', and vice versa. */
  private revealed = new Map<string, 'b' | 's'>();

  constructor(clientId: string, params: SecAggParams) {
    checkId(clientId, 'clientId');
    validateParams(params);
    this.clientId = clientId;
    this.params = { ...params };
    this.c = newKeyPair();
    this.s = newKeyPair();
  }

  /** Round 0 (AdvertiseKeys). */
  advertise(): PublicKeys {
    return { clientId: this.clientId, cPk: this.c.publicKey.slice(), sPk: this.s.publicKey.slice() };
  }

  /**
   * Round 1 (ShareKeys): Shamir-split s^sk and a fresh self-mask seed b into |U1| shares (threshold t), keep one of each,
   * and seal the others, one pair per roster member, for that member only.
   */
  async shareKeys(roster: PublicKeys[]): Promise<SealedShare[]> {
    this.expectPhase('keys', 'shareKeys');
    if (!Array.isArray(roster)) throw new Error('secagg: roster must be an array of public keys');
    const { threshold, session } = this.params;
    const entries = roster.map((k, i) => checkPublicKeys(k, `roster[${i}]`));
    checkIdList(entries.map((k) => k.clientId), 'roster');
    if (entries.length < threshold) {
      throw new Error(`secagg: roster has ${entries.length} clients, fewer than the threshold ${threshold}`);
    }
    // The roster bounds how many inputs can be summed: the scale must leave the signed sum room (no wrap-around).
    validateParams(this.params, entries.length);
    const me = entries.find((k) => k.clientId === this.clientId);
    if (!me) throw new Error(`secagg: roster does not include this client (${this.clientId})`);
    if (!sameBytes(me.cPk, this.c.publicKey) || !sameBytes(me.sPk, this.s.publicKey)) {
      throw new Error('secagg: roster carries public keys for this client that are not the ones it advertised');
    }
    entries.sort(byId);

    const b = randomBytes(KEY_BYTES);
    this.phase = 'sharing'; // a second call while split() runs must not share a second, different b
    try {
      const [sShares, bShares] = await Promise.all([
        split(this.s.secretKey, entries.length, threshold),
        split(b, entries.length, threshold),
      ]);
      const sealed: SealedShare[] = [];
      entries.forEach((v, i) => {
        if (v.clientId === this.clientId) {
          this.ownShares = { s: sShares[i], b: bShares[i] };
          return;
        }
        const key = shareKey(session, this.c.secretKey, v.cPk, this.clientId, v.clientId, v.clientId);
        const plaintext = encodeSharePlaintext(this.clientId, v.clientId, sShares[i], bShares[i]);
        sealed.push({ from: this.clientId, to: v.clientId, ciphertext: seal(key, shareAad(session, this.clientId, v.clientId), plaintext) });
        key.fill(0);
        plaintext.fill(0);
        sShares[i].fill(0);
        bShares[i].fill(0);
      });
      this.b = b;
      for (const k of entries) this.u1.set(k.clientId, k);
      this.phase = 'shared';
      return sealed;
    } catch (e) {
      // Nothing was handed out: the client may retry with a corrected roster.
      this.ownShares = null;
      b.fill(0);
      this.phase = 'keys';
      throw e;
    }
  }

  /**
   * End of round 1: U2 (who shared keys) and the ciphertexts addressed to this client, exactly one from every other
   * U2 member. Each is authenticated (key from x25519(c_me^sk, c_from^pk); AAD = session, from, to) before any is kept.
   */
  receiveShares(u2: string[], sealed: SealedShare[]): void {
    this.expectPhase('shared', 'receiveShares');
    const { threshold, session } = this.params;
    const members = checkIdList(u2, 'U2');
    if (!members.has(this.clientId)) throw new Error('secagg: U2 does not include this client');
    for (const id of members) {
      if (!this.u1.has(id)) throw new Error(`secagg: U2 lists ${JSON.stringify(id)}, who is not in the roster (U1)`);
    }
    if (members.size < threshold) throw new Error(`secagg: U2 has ${members.size} clients, fewer than the threshold ${threshold}`);
    if (!Array.isArray(sealed)) throw new Error('secagg: sealed shares must be an array');

    const opened = new Map<string, HeldShares>();
    for (const [i, item] of sealed.entries()) {
      if (typeof item !== 'object' || item === null) throw new Error(`secagg: sealed share ${i} must be an object`);
      const { from, to, ciphertext } = item;
      checkId(from, `sealed share ${i}.from`);
      if (to !== this.clientId) throw new Error(`secagg: sealed share ${i} is addressed to ${JSON.stringify(to)}, not this client`);
      if (from === this.clientId || !members.has(from)) {
        throw new Error(`secagg: sealed share ${i} comes from ${JSON.stringify(from)}, who is not another member of U2`);
      }
      if (opened.has(from)) throw new Error(`secagg: two sealed shares from ${JSON.stringify(from)}`);
      if (!(ciphertext instanceof Uint8Array)) throw new Error(`secagg: sealed share ${i}.ciphertext must be a Uint8Array`);
      const sender = this.u1.get(from)!;
      const key = shareKey(session, this.c.secretKey, sender.cPk, from, this.clientId, from);
      let plaintext: Uint8Array;
      try {
        plaintext = open(key, shareAad(session, from, this.clientId), ciphertext);
      } catch {
        throw new Error(
          `secagg: the sealed share from ${JSON.stringify(from)} failed authentication ` +
            '(tampered, or not sealed for this session and client)',
        );
      } finally {
        key.fill(0);
      }
      opened.set(from, decodeSharePlaintext(plaintext, from, this.clientId));
    }
    const missing = [...members].filter((id) => id !== this.clientId && !opened.has(id));
    if (missing.length) throw new Error(`secagg: no sealed share from U2 member(s) ${missing.map((m) => JSON.stringify(m)).join(', ')}`);

    opened.set(this.clientId, this.ownShares!);
    this.ownShares = null;
    this.held = opened;
    this.u2 = [...members].sort();
    this.phase = 'received';
  }

  /**
   * Round 2 (MaskedInput): x clipped to ±bound, in fixed point, plus the self mask and the signed pairwise masks with
   * every other U2 member. Once only: two masked inputs under the same masks would leak their difference.
   */
  mask(x: ArrayLike<number>): Uint32Array {
    this.expectPhase('received', 'mask');
    if (x === null || typeof x !== 'object' || typeof x.length !== 'number') throw new Error('secagg: input must be an array of numbers');
    const y = encodeFixedPoint(x, this.params);
    addPrg(y, this.b!, 1);
    for (const v of this.u2) {
      if (v === this.clientId) continue;
      const seed = pairwiseSeed(this.params.session, this.s.secretKey, this.u1.get(v)!.sPk, this.clientId, v);
      addPrg(y, seed, this.clientId < v ? 1 : -1);
      seed.fill(0);
    }
    // Nothing later needs the secrets themselves (only the shares): drop them.
    this.b!.fill(0);
    this.b = null;
    this.s.secretKey.fill(0);
    this.c.secretKey.fill(0);
    this.phase = 'masked';
    return y;
  }

  /**
   * Round 3 (Unmasking): this client's share of b_u for every survivor u and of s_u^sk for every dropped u. Refused
   * (nothing revealed) if the request would let the server hold both secrets of some u, if it says this client dropped
   * (it did send its masked input), if it does not split U2 exactly, or if fewer than t survived.
   */
  reveal(req: UnmaskRequest): Reveal[] {
    if (this.phase !== 'masked') throw new Error('secagg: reveal refused: this client has not sent its masked input yet');
    if (typeof req !== 'object' || req === null) throw new Error('secagg: unmask request must be { survivors, dropped }');
    const survivors = checkIdList(req.survivors, 'survivors');
    const dropped = checkIdList(req.dropped, 'dropped');
    const { threshold } = this.params;
    for (const id of survivors) {
      if (dropped.has(id)) throw new Error(`secagg: reveal refused: ${JSON.stringify(id)} is listed both as survivor and as dropped`);
    }
    if (dropped.has(this.clientId)) throw new Error('secagg: reveal refused: this client is listed as dropped, but it sent its masked input');
    if (!survivors.has(this.clientId)) throw new Error('secagg: reveal refused: survivors must include this client');
    for (const id of [...survivors, ...dropped]) {
      if (!this.held.has(id)) throw new Error(`secagg: reveal refused: ${JSON.stringify(id)} is not in U2`);
    }
    const unlisted = this.u2.filter((id) => !survivors.has(id) && !dropped.has(id));
    if (unlisted.length) {
      const names = unlisted.map((m) => JSON.stringify(m)).join(', ');
      throw new Error(`secagg: reveal refused: U2 member(s) ${names} listed neither as survivor nor as dropped`);
    }
    if (survivors.size < threshold) {
      throw new Error(`secagg: reveal refused: ${survivors.size} survivors, fewer than the threshold ${threshold}`);
    }
    const kinds: Array<[string, 'b' | 's']> = [
      ...[...survivors].map((u): [string, 'b'] => [u, 'b']),
      ...[...dropped].map((u): [string, 's'] => [u, 's']),
    ];
    for (const [u, kind] of kinds) {
      const before = this.revealed.get(u);
      if (before !== undefined && before !== kind) {
        throw new Error(
          `secagg: reveal refused: the share of ${JSON.stringify(u)}'s ${before === 'b' ? 'self-mask seed' : 'mask key'} was ` +
            `already revealed, so its ${kind === 'b' ? 'self-mask seed' : 'mask key'} never will be`,
        );
      }
    }
    for (const [u, kind] of kinds) this.revealed.set(u, kind);
    return kinds.map(([u, kind]) => ({ of: u, kind, share: this.held.get(u)![kind].slice() }));
  }

  private expectPhase(phase: Phase, method: string): void {
    if (this.phase !== phase) throw new Error(`secagg: ${method} called out of order (this client is past that step, or not there yet)`);
  }
}

/** Plaintext of a sealed share: share of s^sk ‖ share of b ‖ framed(from, to) (the ids, checked again after opening). */
function encodeSharePlaintext(from: string, to: string, sShare: Uint8Array, bShare: Uint8Array): Uint8Array {
  const ids = framed(from, to);
  const out = new Uint8Array(2 * SHARE_BYTES + ids.length);
  out.set(sShare);
  out.set(bShare, SHARE_BYTES);
  out.set(ids, 2 * SHARE_BYTES);
  return out;
}

function decodeSharePlaintext(plaintext: Uint8Array, from: string, to: string): HeldShares {
  const ids = framed(from, to);
  if (plaintext.length !== 2 * SHARE_BYTES + ids.length || !sameBytes(plaintext.subarray(2 * SHARE_BYTES), ids)) {
    throw new Error(`secagg: the sealed share from ${JSON.stringify(from)} names other parties than its envelope`);
  }
  const s = plaintext.slice(0, SHARE_BYTES);
  const b = plaintext.slice(SHARE_BYTES, 2 * SHARE_BYTES);
  checkBytes(s, SHARE_BYTES, 'share');
  return { s, b };
}
