import { createHash, timingSafeEqual } from 'node:crypto';
import { ProtocolError } from '../shared/protocol/validate.ts';
import { RELATIONS } from '../shared/settings/index.ts';
import type { CredentialStore } from './credentials/store.ts';
import { looksLikeCredential } from './credentials/token.ts';

/**
 * Compares a presented secret with the expected one in constant time: both are hashed first, so neither the
 * content nor the length of the expected token shows in the response time (no early return on a length mismatch).
 */
export function tokenMatches(given: unknown, expected: string): boolean {
  if (typeof given !== 'string') return false;
  const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();
  return timingSafeEqual(digest(given), digest(expected));
}

/** The token of an `Authorization: Bearer <token>` header (scheme case-insensitive), or undefined. */
export function bearerToken(header: unknown): string | undefined {
  if (typeof header !== 'string') return undefined;
  const m = /^bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  return m ? m[1] : undefined;
}

/**
 * How clients prove they may take part (exactly one, chosen by the operator):
 *   token        one shared secret (--token) for every client
 *   credentials  a per-client credential signed by the server's secret (--credentials; `fedistill credential issue`),
 *                which names the one client id it may register as and can be revoked
 *   none         anyone (--insecure-no-auth): only for experiments on a trusted network
 */
export type AuthMode = 'token' | 'credentials' | 'none';

/** Who a connection or request proved to be; kept in socket.data.identity for the connection's life. */
export type Identity =
  | { kind: 'token' }
  | { kind: 'credential'; clientId: string; tokenId: string; issuedAt: number }
  | { kind: 'open' };

export type AuthResult = { ok: true; identity: Identity } | { ok: false; why: string };

export interface ClientAuthOptions {
  token: string;
  credentials: CredentialStore | null;
  insecureNoAuth: boolean;
}

/** The clients' side of authentication: the socket.io handshake, HTTP bearer tokens, and a hello's client id. */
export class ClientAuth {
  readonly mode: AuthMode;

  constructor(private readonly o: ClientAuthOptions) {
    this.mode = o.credentials ? 'credentials' : o.token ? 'token' : 'none';
    if (this.mode === 'none' && !o.insecureNoAuth) throw new Error(NO_AUTH);
  }

  get credentials(): CredentialStore | null {
    return this.o.credentials;
  }

  /** A presented secret (handshake auth.token, or a bearer token). */
  check(presented: unknown): AuthResult {
    if (this.mode === 'none') return { ok: true, identity: { kind: 'open' } };
    if (this.mode === 'token') {
      if (tokenMatches(presented, this.o.token)) return { ok: true, identity: { kind: 'token' } };
      return { ok: false, why: 'pass the server token as auth.token in the socket.io handshake (HTTP: Authorization: Bearer <token>)' };
    }
    if (!looksLikeCredential(presented)) {
      return { ok: false, why: 'this server takes per-client credentials (fedistill credential issue): pass yours as auth.token (HTTP: Authorization: Bearer <credential>)' };
    }
    const v = this.o.credentials!.verify(presented);
    if (!v.ok) return { ok: false, why: `credential refused: ${v.why}` };
    return { ok: true, identity: { kind: 'credential', clientId: v.claims.id, tokenId: v.claims.tid, issuedAt: v.claims.iat } };
  }

  /** An HTTP request's Authorization header. */
  checkBearer(header: unknown): AuthResult {
    if (this.mode === 'none') return { ok: true, identity: { kind: 'open' } };
    return this.check(bearerToken(header));
  }

  /** Whether a connection's identity still holds (a credential may have been revoked since its handshake). */
  stillValid(identity: Identity | undefined): boolean {
    if (identity?.kind !== 'credential') return identity !== undefined;
    const store = this.o.credentials;
    return !!store && !store.problem && !store.isRevoked({ tid: identity.tokenId, id: identity.clientId, iat: identity.issuedAt });
  }

  /**
   * A hello on a connection that authenticated as `identity`: a credential may only register its own client id
   * (ProtocolError 'unauthorized' otherwise). Returns whether the id is vouched for by a credential, which lets the
   * hello take back an offline id without its resume token.
   */
  vouchFor(identity: Identity | undefined, clientId: string): boolean {
    if (identity?.kind !== 'credential') return false;
    if (!this.stillValid(identity)) throw new ProtocolError('unauthorized', `the credential of client '${identity.clientId}' was revoked`);
    if (identity.clientId !== clientId) {
      throw new ProtocolError('unauthorized', `this connection's credential is for client id '${identity.clientId}', not '${clientId}': say hello as '${identity.clientId}'`);
    }
    return true;
  }
}

/** What /status, /metrics and the dashboard's feed want: the viewer (operator) token, unless the server has none. */
export function viewerAllowed(viewerToken: string, header: unknown): boolean {
  return viewerToken === '' || tokenMatches(bearerToken(header), viewerToken);
}

const NO_AUTH =
  'the server has no client authentication: give --token T (one shared secret), --credentials (per-client credentials ' +
  "from 'fedistill credential issue', with --state-dir) or, for a trusted loopback experiment, --insecure-no-auth " +
  '(library: config token, credentials or insecureNoAuth: true)';

/** The flags whose relations (shared/settings/table.ts) say how access is configured. */
const ACCESS_FLAGS = new Set(['token', 'credentials', 'insecure-no-auth', 'tls-cert', 'tls-key']);

/**
 * The access relations of the settings table, applied to a config built in code (createAggregator): there an absent
 * key means its default, so an embedder that sets no token gets the same refusal as the command line (RangeError).
 */
export function checkAccessConfig(c: { token: string; credentials: boolean; insecureNoAuth: boolean; stateDir: string; tls?: { cert?: string; key?: string } }): void {
  const flat: Record<string, unknown> = { token: c.token, credentials: c.credentials, insecureNoAuth: c.insecureNoAuth, stateDir: c.stateDir, 'tls.cert': c.tls?.cert, 'tls.key': c.tls?.key };
  for (const r of RELATIONS) {
    if (!r.commands.includes('server') || !r.flags.some((f) => ACCESS_FLAGS.has(f))) continue;
    const problem = r.check(flat, new Set(Object.keys(flat)));
    if (problem) throw new RangeError(`server settings: ${problem}`);
  }
}
