/**
 * The cryptographic building blocks of secure aggregation, all from audited libraries (noble, shamir-secret-sharing):
 * x25519 key agreement, HKDF-SHA256 key derivation, ChaCha20-Poly1305 for the sealed shares, and the ChaCha20
 * keystream as the mask generator. Nothing here is hand-rolled; this file only fixes how they are combined.
 */
import { chacha20, chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { x25519 } from '@noble/curves/ed25519.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { KEY_BYTES } from './params.ts';

const DOMAIN = 'fedistill/secagg/v1';
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const utf8 = new TextEncoder();

/** Cryptographically secure random bytes (Web Crypto: browsers and Node ≥ 20 alike). */
export function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  globalThis.crypto.getRandomValues(out);
  return out;
}

export interface KeyPair {
  secretKey: Uint8Array;
  publicKey: Uint8Array;
}

export function newKeyPair(): KeyPair {
  const secretKey = x25519.utils.randomSecretKey();
  return { secretKey, publicKey: x25519.getPublicKey(secretKey) };
}

export function publicKeyOf(secretKey: Uint8Array): Uint8Array {
  return x25519.getPublicKey(secretKey);
}

/**
 * An unambiguous byte string of labelled parts: each part is a 4-byte big-endian length then its UTF-8, so ("ab", "c")
 * and ("a", "bc") never collide — HKDF infos and AADs must not be confusable across sessions or id pairs.
 */
export function framed(...parts: string[]): Uint8Array {
  const bytes = parts.map((p) => utf8.encode(p));
  const out = new Uint8Array(bytes.reduce((n, b) => n + 4 + b.length, 0));
  const view = new DataView(out.buffer);
  let at = 0;
  for (const b of bytes) {
    view.setUint32(at, b.length);
    out.set(b, at + 4);
    at += 4 + b.length;
  }
  return out;
}

/** x25519 then HKDF-SHA256 to 32 bytes; a low-order (malicious or corrupt) public key is refused by noble. */
function agree(secretKey: Uint8Array, peerPublicKey: Uint8Array, info: Uint8Array, who: string): Uint8Array {
  let shared: Uint8Array;
  try {
    shared = x25519.getSharedSecret(secretKey, peerPublicKey);
  } catch (e) {
    throw new Error(`secagg: key agreement with ${who} failed (invalid public key): ${(e as Error).message}`);
  }
  const key = hkdf(sha256, shared, undefined, info, KEY_BYTES);
  shared.fill(0);
  return key;
}

/**
 * Seed of the pairwise mask between u and v: both derive it (from s_u^sk, s_v^pk or s_v^sk, s_u^pk), and so can the
 * server once it reconstructs a dropped client's s^sk. The info binds the session and the unordered pair.
 */
export function pairwiseSeed(session: string, secretKey: Uint8Array, peerPublicKey: Uint8Array, a: string, b: string): Uint8Array {
  const [lo, hi] = a < b ? [a, b] : [b, a];
  return agree(secretKey, peerPublicKey, framed(DOMAIN, 'mask', session, lo, hi), a === lo ? hi : lo);
}

/**
 * Key that seals u's shares for v. The info binds the direction (from, to), so the two directions of a pair never
 * share a key; the nonce is random on top of that.
 */
export function shareKey(session: string, secretKey: Uint8Array, peerPublicKey: Uint8Array, from: string, to: string, peer: string): Uint8Array {
  return agree(secretKey, peerPublicKey, framed(DOMAIN, 'share', session, from, to), peer);
}

export function shareAad(session: string, from: string, to: string): Uint8Array {
  return framed(DOMAIN, 'share-aad', session, from, to);
}

/** ChaCha20-Poly1305 under a single-use key; the output is nonce ‖ ciphertext ‖ tag. */
export function seal(key: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Uint8Array {
  const nonce = randomBytes(NONCE_BYTES);
  const body = chacha20poly1305(key, nonce, aad).encrypt(plaintext);
  const out = new Uint8Array(NONCE_BYTES + body.length);
  out.set(nonce);
  out.set(body, NONCE_BYTES);
  return out;
}

/** Inverse of seal; throws if the ciphertext, the AAD (session, sender, recipient) or the key do not match. */
export function open(key: Uint8Array, aad: Uint8Array, sealed: Uint8Array): Uint8Array {
  if (sealed.length < NONCE_BYTES + TAG_BYTES) throw new Error('ciphertext too short');
  return chacha20poly1305(key, sealed.subarray(0, NONCE_BYTES), aad).decrypt(sealed.subarray(NONCE_BYTES));
}

/** Bytes seal adds to its plaintext. */
export const SEAL_OVERHEAD = NONCE_BYTES + TAG_BYTES;

const ZERO_NONCE = new Uint8Array(NONCE_BYTES);
const littleEndian = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * PRG(seed): the ChaCha20 keystream under `seed` (a fresh 32-byte key per session, so a fixed nonce is safe), read as
 * `length` little-endian uint32 words — uniform in Z_2^32, which is what makes a masked input look uniform.
 */
export function prg(seed: Uint8Array, length: number): Uint32Array {
  const stream = chacha20(seed, ZERO_NONCE, new Uint8Array(length * 4));
  if (littleEndian) return new Uint32Array(stream.buffer, stream.byteOffset, length);
  const words = new Uint32Array(length);
  const view = new DataView(stream.buffer, stream.byteOffset, stream.byteLength);
  for (let i = 0; i < length; i++) words[i] = view.getUint32(i * 4, true);
  return words;
}

/** acc += sign·PRG(seed) mod 2^32, in place (Uint32Array storage reduces mod 2^32). */
export function addPrg(acc: Uint32Array, seed: Uint8Array, sign: 1 | -1): void {
  const mask = prg(seed, acc.length);
  if (sign === 1) for (let i = 0; i < acc.length; i++) acc[i] = acc[i] + mask[i];
  else for (let i = 0; i < acc.length; i++) acc[i] = acc[i] - mask[i];
}
