import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, statSync, writeSync, appendFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { signCredential, verifyCredential, type CredentialClaims } from './token.ts';

/**
 * The operator's side of per-client credentials, in `<state-dir>/credentials/`:
 *   secret        32 random bytes (hex) the credentials are signed with; created 0600 on first use, never printed
 *   issued.jsonl  one line per credential issued: { tid, id, iat } (never the credential itself: it is a password)
 *   revoked.json  { revoked: [{ tid } | { id, before }] }: one credential, or every credential of a client id issued
 *                 up to `before` (ms) — a credential issued to that id afterwards is valid again
 * The CLI (`fedistill credential`) writes them; a running server re-reads revoked.json when its mtime or size changes
 * (checked on handshakes and once a second), so a revocation takes effect without a restart.
 */
export const CREDENTIALS_DIR = 'credentials';

export type Revocation = { tid: string; id?: string; at: number } | { id: string; before: number; at: number };

export interface IssuedCredential {
  tid: string;
  id: string;
  iat: number;
}

export type Verdict = { ok: true; claims: CredentialClaims } | { ok: false; why: string };

export class CredentialStore {
  readonly dir: string;
  private secretBytes: Buffer | null = null;
  private revoked: Revocation[] = [];
  /** revoked.json as last read: a change of either re-reads it. */
  private seen = { mtimeMs: -1, size: -1 };
  /** The last revoked.json could not be read: every credential is refused until it can (fail closed). */
  private unreadable: string | null = null;
  private checkedAt = 0;

  constructor(stateDir: string) {
    if (!stateDir) throw new Error('per-client credentials live in the state dir: give --state-dir DIR');
    this.dir = join(stateDir, CREDENTIALS_DIR);
  }

  /** The signing secret, created (0600, in a 0700 folder) the first time anyone needs it. */
  secret(): Buffer {
    if (this.secretBytes) return this.secretBytes;
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const file = join(this.dir, 'secret');
    if (!existsSync(file)) {
      try {
        // 'wx': if a server and the CLI create it at the same moment, one wins and the other reads the winner's.
        writeDurably(file, randomBytes(32).toString('hex') + '\n', 'wx');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
    }
    const mode = statSync(file).mode & 0o077;
    if (mode !== 0) throw new Error(`${file} is readable by others (mode ${(statSync(file).mode & 0o777).toString(8)}): chmod 600 it`);
    const hex = readFileSync(file, 'utf8').trim();
    if (!/^[0-9a-f]{64}$/.test(hex)) throw new Error(`${file} is not 64 hex characters: restore it (credentials issued with another secret are refused)`);
    this.secretBytes = Buffer.from(hex, 'hex');
    return this.secretBytes;
  }

  issue(clientId: string, now = Date.now()): { token: string; claims: CredentialClaims } {
    const made = signCredential(this.secret(), clientId, now);
    const { tid, id, iat } = made.claims;
    appendFileSync(join(this.dir, 'issued.jsonl'), JSON.stringify({ tid, id, iat }) + '\n', { mode: 0o600 });
    return made;
  }

  issued(): IssuedCredential[] {
    const file = join(this.dir, 'issued.jsonl');
    if (!existsSync(file)) return [];
    return readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as IssuedCredential);
  }

  /** Revoke one credential (by token id) or every credential issued so far to a client id; returns how many issued ones it covers. */
  revoke(what: { tokenId: string } | { clientId: string }, now = Date.now()): number {
    this.refresh(true);
    if (this.unreadable) throw new Error(this.unreadable);
    const issued = this.issued();
    const entry: Revocation = 'tokenId' in what
      ? { tid: what.tokenId, id: issued.find((c) => c.tid === what.tokenId)?.id, at: now }
      : { id: what.clientId, before: now, at: now };
    const covered = issued.filter((c) => this.covers(entry, c)).length;
    this.revoked = [...this.revoked, entry];
    writeDurably(join(this.dir, 'revoked.json'), JSON.stringify({ revoked: this.revoked }, null, 1) + '\n', 'replace');
    return covered;
  }

  isRevoked(c: Pick<CredentialClaims, 'tid' | 'id' | 'iat'>): boolean {
    return this.revoked.some((r) => this.covers(r, c));
  }

  private covers(r: Revocation, c: Pick<CredentialClaims, 'tid' | 'id' | 'iat'>): boolean {
    return 'tid' in r ? r.tid === c.tid : r.id === c.id && c.iat <= r.before;
  }

  /**
   * Re-read revoked.json if it changed (mtime or size); true if it did. Without `force`, at most every 100 ms: a burst
   * of handshakes costs one stat, and a revocation is in force within a fraction of a second.
   */
  refresh(force = false): boolean {
    const now = Date.now();
    if (!force && now - this.checkedAt < 100) return false;
    this.checkedAt = now;
    const file = join(this.dir, 'revoked.json');
    let st: { mtimeMs: number; size: number };
    try {
      st = statSync(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') return this.failClosed(`${file}: ${(e as Error).message}`);
      st = { mtimeMs: 0, size: 0 };
    }
    if (st.mtimeMs === this.seen.mtimeMs && st.size === this.seen.size && !this.unreadable) return false;
    this.seen = { mtimeMs: st.mtimeMs, size: st.size };
    if (st.size === 0 && st.mtimeMs === 0) {
      this.revoked = [];
      this.unreadable = null;
      return true;
    }
    try {
      const parsed = JSON.parse(readFileSync(file, 'utf8')) as { revoked?: unknown };
      if (!Array.isArray(parsed.revoked)) throw new Error("no 'revoked' list");
      this.revoked = parsed.revoked.filter(isRevocation);
      this.unreadable = null;
    } catch (e) {
      return this.failClosed(`${file} is unreadable (${(e as Error).message}): every credential is refused until it is fixed`);
    }
    return true;
  }

  private failClosed(why: string): boolean {
    const changed = this.unreadable !== why;
    this.unreadable = why;
    return changed;
  }

  /** Why the revocation list can't be trusted right now (every credential is refused meanwhile), or null. */
  get problem(): string | null {
    return this.unreadable;
  }

  /** A presented credential: signed with this store's secret and not revoked. */
  verify(token: unknown): Verdict {
    this.refresh();
    const v = verifyCredential(this.secret(), token);
    if (!v.ok) return v;
    if (this.unreadable) return { ok: false, why: 'the server cannot read its revocation list' };
    if (this.isRevoked(v.claims)) return { ok: false, why: `credential ${v.claims.tid} of client '${v.claims.id}' is revoked` };
    return v;
  }
}

function isRevocation(r: unknown): r is Revocation {
  const x = r as Record<string, unknown>;
  return !!x && typeof x === 'object' && (typeof x.tid === 'string' || (typeof x.id === 'string' && typeof x.before === 'number'));
}

/**
 * Write a small file whole (0600): 'wx' creates it and fails if it exists; 'replace' writes a temp file and renames
 * it over the old one, so a server reading concurrently sees the old list or the new one, never half of one.
 */
function writeDurably(file: string, text: string, how: 'wx' | 'replace'): void {
  const target = how === 'wx' ? file : `${file}.tmp-${process.pid}`;
  const fd = openSync(target, how === 'wx' ? 'wx' : 'w', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  if (how === 'replace') renameSync(target, file);
  const dir = openSync(join(file, '..'), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}
