/** What secure-aggregation parties exchange. Byte fields are Uint8Array, so every message is msgpack-able as is. */

/** AdvertiseKeys: c (encrypts shares) and s (pairwise masks) x25519 public keys, 32 bytes each. */
export interface PublicKeys {
  clientId: string;
  cPk: Uint8Array;
  sPk: Uint8Array;
}

/** ShareKeys: `from`'s Shamir shares of its s^sk and self-mask seed b, sealed for `to`. Opaque to the server. */
export interface SealedShare {
  from: string;
  to: string;
  ciphertext: Uint8Array;
}

/**
 * Unmasking: the revealer's Shamir share of `of`'s self-mask seed (kind 'b', `of` survived) or of its mask secret key
 * (kind 's', `of` dropped). An honest client never reveals both kinds for the same `of` in a session.
 */
export interface Reveal {
  of: string;
  kind: 'b' | 's';
  share: Uint8Array;
}

/** Unmasking request: U3 (whose masked input arrived) and U2 \ U3 (who sent shares but no masked input). */
export interface UnmaskRequest {
  survivors: string[];
  dropped: string[];
}
