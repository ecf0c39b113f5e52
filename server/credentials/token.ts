import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * A per-client credential: a signed statement "this bearer is client <id>", issued by the operator
 * (`fedistill credential issue`) and checked by the server without any lookup but the revocation list.
 *
 *   fdc1.<payload>.<signature>
 *   payload   = base64url(JSON { v: 1, id: clientId, tid: token id (16 random bytes, base64url), iat: issue time in ms })
 *   signature = base64url(HMAC-SHA256(secret, "fdc1." + payload))
 *
 * The version is both in the prefix and in the payload, and the prefix is inside the MAC, so a future format cannot be
 * confused with this one. The token id names one credential (to revoke it alone); the secret (32 random bytes) lives in
 * the state dir. Only someone holding the secret can make a credential for an id, so a hello naming another id than its
 * credential's is refused.
 */
export const CREDENTIAL_PREFIX = 'fdc1';
const MAC_BYTES = 32;
/** The protocol's rule for hello.clientId (shared/protocol/schemas.ts); a credential can only name such an id. */
export const CLIENT_ID_PATTERN = /^[A-Za-z0-9_.:-]{1,128}$/;
/** Far longer than any credential we make (about 200 characters): a bigger "token" is not parsed at all. */
const MAX_CREDENTIAL_CHARS = 1024;

export interface CredentialClaims {
  v: 1;
  /** The client id this credential is for. */
  id: string;
  /** Token id: names this credential in the issued list and the revocation list. */
  tid: string;
  /** Issue time, ms since the epoch (a revocation of the id covers credentials issued up to its own time). */
  iat: number;
}

export function looksLikeCredential(token: unknown): token is string {
  return typeof token === 'string' && token.startsWith(`${CREDENTIAL_PREFIX}.`);
}

function mac(secret: Uint8Array, payload: string): Buffer {
  return createHmac('sha256', secret).update(`${CREDENTIAL_PREFIX}.${payload}`, 'utf8').digest();
}

export function signCredential(secret: Uint8Array, clientId: string, now = Date.now()): { token: string; claims: CredentialClaims } {
  if (!CLIENT_ID_PATTERN.test(clientId)) throw new Error(`client id '${clientId}' is not 1 to 128 letters, digits and '_.:-'`);
  const claims: CredentialClaims = { v: 1, id: clientId, tid: randomBytes(16).toString('base64url'), iat: now };
  const payload = Buffer.from(JSON.stringify(claims), 'utf8').toString('base64url');
  return { token: `${CREDENTIAL_PREFIX}.${payload}.${mac(secret, payload).toString('base64url')}`, claims };
}

/**
 * The claims of a credential signed with `secret`, or why not. The signature is compared in constant time over a
 * fixed-size buffer whatever the presented length (a short or long signature costs the same and fails the same).
 */
export function verifyCredential(secret: Uint8Array, token: unknown): { ok: true; claims: CredentialClaims } | { ok: false; why: string } {
  if (typeof token !== 'string' || token.length > MAX_CREDENTIAL_CHARS) return { ok: false, why: 'not a credential' };
  const parts = token.split('.');
  if (parts.length !== 3 || parts[0] !== CREDENTIAL_PREFIX) return { ok: false, why: `not a ${CREDENTIAL_PREFIX} credential` };
  const [, payload, sig] = parts;
  const given = Buffer.alloc(MAC_BYTES);
  const decoded = Buffer.from(sig, 'base64url');
  decoded.copy(given, 0, 0, MAC_BYTES);
  const signed = timingSafeEqual(given, mac(secret, payload)) && decoded.length === MAC_BYTES;
  if (!signed) return { ok: false, why: 'bad signature (tampered, or issued for another server)' };
  let claims: CredentialClaims;
  try {
    claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as CredentialClaims;
  } catch {
    return { ok: false, why: 'unreadable payload' };
  }
  // Signed by us, so well-formed unless the format changed: still checked, never trusted blindly.
  if (claims?.v !== 1 || typeof claims.id !== 'string' || !CLIENT_ID_PATTERN.test(claims.id) || typeof claims.tid !== 'string' || !Number.isFinite(claims.iat)) {
    return { ok: false, why: 'unsupported credential version or fields' };
  }
  return { ok: true, claims };
}
