import type { ErrorMsg } from '../shared/protocol/messages.ts';

/**
 * Why a client cannot go on (FedistillClient.finished() rejects with it):
 * - 'unauthorized': the server's handshake refused the token (not retried: the same token would be refused again);
 * - 'duplicate': the client id is held by another session (live, or registered and offline) and this session has no
 *   resume token for it (nor a credential for the id, for an offline one);
 * - 'replaced': the server closed this connection because a newer session of the same id took over;
 * - 'unreachable': no connection for `giveUpAfterMs` (the message names the URL and the last cause);
 * - 'untrusted': the server's TLS certificate does not verify (Node: pass the CA that signed it; not retried);
 * - 'protocol': the server refused the hello (protocol version, bad registration) or sent something unusable;
 * - 'refused': the handshake was refused for another reason, or the server failed every hello with 'internal' errors
 *   for `giveUpAfterMs`;
 * - 'stopped': stop() was called before the federation ended.
 */
export type FedistillErrorCode = 'unauthorized' | 'duplicate' | 'replaced' | 'unreachable' | 'untrusted' | 'protocol' | 'refused' | 'stopped';

export class FedistillError extends Error {
  override readonly name = 'FedistillError';
  constructor(
    readonly code: FedistillErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The cause behind a socket.io connect_error, as short as the transport allows: 'ECONNREFUSED', 'ENOTFOUND',
 * 'HTTP 502' …; socket.io itself only says 'websocket error' (browsers give no more than that).
 */
export function connectErrorCause(e: Error & { description?: unknown }): string {
  type Cause = { code?: string; message?: string };
  const d = e.description as (Cause & { error?: Cause }) | number | undefined;
  if (typeof d === 'number') return `HTTP ${d}`;
  const inner: Cause | undefined = d && (d.error ?? (d instanceof Error ? d : undefined));
  if (inner?.code) return inner.message && !inner.message.includes(inner.code) ? `${inner.code}: ${inner.message}` : (inner.message ?? inner.code);
  if (inner?.message) return inner.message;
  if (d && typeof d.message === 'string' && d.message) return d.message;
  return e.message;
}

/** The server's answer to a refused hello, as the reason this client cannot take part. */
export function helloRefusal(e: ErrorMsg, clientId: string): FedistillError {
  // A credential for another id, or one revoked since the handshake: the id is not this session's to claim at all.
  if (e.code === 'unauthorized' && /this connection's credential|credential of client .* was revoked/.test(e.message)) {
    return new FedistillError('unauthorized', `the server refused this client's hello: ${e.message}`);
  }
  if (e.code === 'unauthorized') {
    return new FedistillError('duplicate', `client id '${clientId}' belongs to another session and this one has no valid resume token for it (server: ${e.message})`);
  }
  return new FedistillError('protocol', `the server refused this client's hello: ${e.code}: ${e.message}`);
}
