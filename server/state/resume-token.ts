import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Resume tokens are secrets a welcome hands to one client id: only their sha256 is kept (registry, checkpoints,
 * journal), so nothing the server writes to disk or exports can be replayed to take over a client id.
 */
export function newResumeToken(): string {
  return randomBytes(18).toString('base64url');
}

export function hashResumeToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** Constant-time: the response time doesn't tell how much of a guessed token's hash matched. */
export function resumeTokenMatches(given: unknown, expectedHash: string): boolean {
  if (typeof given !== 'string' || !/^[0-9a-f]{64}$/.test(expectedHash)) return false;
  return timingSafeEqual(createHash('sha256').update(given, 'utf8').digest(), Buffer.from(expectedHash, 'hex'));
}
