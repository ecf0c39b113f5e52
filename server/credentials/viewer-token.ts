import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/** Where a generated viewer token is kept, so that it survives restarts (a Prometheus scrape config can read it). */
export const VIEWER_TOKEN_FILE = 'viewer-token';

/**
 * The operator/viewer token when the operator set none but clients must authenticate: like Jupyter, one is made at
 * start and said once. With a state dir it is kept in `<state-dir>/viewer-token` (0600) and reused by later starts.
 * Returns the token and where it came from (the file, or null when it lives only in this process).
 */
export function generatedViewerToken(stateDir: string): { token: string; file: string | null } {
  if (!stateDir) return { token: randomBytes(24).toString('base64url'), file: null };
  mkdirSync(stateDir, { recursive: true });
  const file = join(stateDir, VIEWER_TOKEN_FILE);
  if (!existsSync(file)) {
    try {
      const fd = openSync(file, 'wx', 0o600);
      try {
        writeSync(fd, randomBytes(24).toString('base64url') + '\n');
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
  if ((statSync(file).mode & 0o077) !== 0) throw new Error(`${file} is readable by others: chmod 600 it (it opens /status, /metrics and the dashboard)`);
  const token = readFileSync(file, 'utf8').trim();
  if (token.length < 16) throw new Error(`${file} holds no usable token (at least 16 characters): delete it to have a new one made`);
  return { token, file };
}
