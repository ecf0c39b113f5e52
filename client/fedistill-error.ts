import type { ErrorMsg } from '../shared/protocol/messages.ts';

/**
 * Why a client cannot go on (FedistillClient.finished() rejects with it):
 * - 'unauthorized': the server's handshake refused the token (not retried: the same token would be refused again);
 * - 'duplicate': the client id is in use by a live connection and this session has no resume token for it;
 * - 'replaced': the server closed this connection because a newer session of the same id took over;
 * - 'unreachable': no connection for `giveUpAfterMs` (the message names the URL and the last cause);
 * - 'protocol': the server refused the hello (protocol version, bad registration) or sent something unusable;
 * - 'refused': the handshake was refused for another reason, or the server failed every hello with 'internal' errors
 *   for `giveUpAfterMs`;
 * - 'stopped': stop() was called before the federation ended.
 */
export type FedistillErrorCode = 'unauthorized' | 'duplicate' | 'replaced' | 'unreachable' | 'protocol' | 'refused' | 'stopped';

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
  if (e.code === 'unauthorized') {
    return new FedistillError('duplicate', `client id '${clientId}' is in use by another live connection and this session has no resume token for it (server: ${e.message}); choose another id or stop the other session`);
  }
  return new FedistillError('protocol', `the server refused this client's hello: ${e.code}: ${e.message}`);
}
