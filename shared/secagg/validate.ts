/** Input checks shared by both parties; every failure is an Error whose message can be shown to the sender as is. */
import { KEY_BYTES, MAX_PARTICIPANTS } from './params.ts';
import type { PublicKeys } from './types.ts';

/** Shamir shares from shamir-secret-sharing: the secret's bytes plus one byte of x-coordinate. */
export const SHARE_BYTES = KEY_BYTES + 1;

export function checkId(id: unknown, what: string): asserts id is string {
  if (typeof id !== 'string' || id.length === 0 || id.length > 256) {
    throw new Error(`secagg: ${what} must be a non-empty string of at most 256 characters`);
  }
}

export function checkBytes(b: unknown, length: number, what: string): asserts b is Uint8Array {
  if (!(b instanceof Uint8Array)) throw new Error(`secagg: ${what} must be a Uint8Array`);
  if (b.length !== length) throw new Error(`secagg: ${what} must be ${length} bytes, got ${b.length}`);
}

/** A list of distinct ids; returns it as a Set. */
export function checkIdList(ids: unknown, what: string): Set<string> {
  if (!Array.isArray(ids)) throw new Error(`secagg: ${what} must be an array of client ids`);
  if (ids.length > MAX_PARTICIPANTS) throw new Error(`secagg: ${what} lists ${ids.length} ids (at most ${MAX_PARTICIPANTS})`);
  const set = new Set<string>();
  for (const id of ids) {
    checkId(id, `every id in ${what}`);
    if (set.has(id)) throw new Error(`secagg: ${what} lists ${JSON.stringify(id)} twice`);
    set.add(id);
  }
  return set;
}

export function checkPublicKeys(k: unknown, what: string): PublicKeys {
  if (typeof k !== 'object' || k === null) throw new Error(`secagg: ${what} must be an object { clientId, cPk, sPk }`);
  const { clientId, cPk, sPk } = k as Partial<PublicKeys>;
  checkId(clientId, `${what}.clientId`);
  checkBytes(cPk, KEY_BYTES, `${what}.cPk of ${JSON.stringify(clientId)}`);
  checkBytes(sPk, KEY_BYTES, `${what}.sPk of ${JSON.stringify(clientId)}`);
  // Copies: later mutation of the caller's buffers must not change what was agreed on.
  return { clientId, cPk: cPk.slice(), sPk: sPk.slice() };
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

export function byId(a: { clientId: string }, b: { clientId: string }): number {
  return a.clientId < b.clientId ? -1 : a.clientId > b.clientId ? 1 : 0;
}

export function sortedIds(ids: Iterable<string>): string[] {
  return [...ids].sort();
}
