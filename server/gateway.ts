import type { Server, Socket } from 'socket.io';
import { encodeFrame } from '../shared/protocol/frame-codec.ts';
import type { ClientToServerEvents, ServerToClientEvents } from '../shared/protocol/events.ts';
import { CLIENT_EVENTS } from '../shared/protocol/events.ts';
import type { ServerMsg } from '../shared/protocol/messages.ts';
import { ProtocolError, parseClientFrame, type FrameLimits } from '../shared/protocol/validate.ts';
import type { Coordinator, Transport } from './coordinator.ts';
import type { AggregatorMetrics } from './metrics.ts';
import type { Logger } from './logger.ts';
import type { ClientAuth, Identity } from './auth.ts';
import type { AddressGuard } from './guard/address-guard.ts';
import { ConnectionGuard, type ConnectionLimits } from './guard/connection-guard.ts';

type FedSocket = Socket<ClientToServerEvents, ServerToClientEvents>;

export interface GatewayOptions {
  /** How clients authenticate (shared token, per-client credentials, or none): server/auth.ts. */
  auth: ClientAuth;
  limits: FrameLimits;
  metrics: AggregatorMetrics;
  log: Logger;
  /** Abuse limits (server/guard/); absent: none (tests of other parts, library use). */
  guard?: GatewayGuard;
}

export interface GatewayGuard {
  /** Failed authentications per remote address, and their back-off. */
  address: AddressGuard;
  /** Per-connection frame, hello and error-reply rates, and the flood limit. */
  connection: ConnectionLimits;
  /** A connection not welcomed within this long is closed with 'hello-timeout'. */
  helloTimeoutMs: number;
}

/**
 * The socket.io side of the aggregator: authenticates the handshake, decodes and validates every frame, hands
 * messages to the coordinator and answers each refusal with an `error` frame. Nothing a peer sends can throw past here.
 */
export function attachGateway(io: Server<ClientToServerEvents, ServerToClientEvents>, coordinator: Coordinator, o: GatewayOptions): Transport {
  const sockets = new Map<string, FedSocket>();

  // The messages broadcast as one object (`end`, `round-result`) are encoded once, not per client: encoding the student's
  // weights per client was most of the cost of telling 1,000 clients the end. Per-client messages (tasks) are not
  // cached: a frame would live as long as its message is kept for a resend, one student copy per client.
  const frames = new WeakMap<ServerMsg, Uint8Array>();
  const send = (socket: FedSocket, msg: ServerMsg): number => {
    const shared = msg.type === 'end' || msg.type === 'round-result';
    let frame = shared ? frames.get(msg) : undefined;
    if (!frame) {
      frame = encodeFrame(msg);
      if (shared) frames.set(msg, frame);
    }
    socket.emit(msg.type as keyof ServerToClientEvents, frame);
    o.metrics.sent(frame.byteLength);
    return frame.byteLength;
  };
  /**
   * Answer a refused frame with `error` (naming the round the frame named, if any); `ack`: see oneFrame(). Replies to
   * one connection are rate-limited (--error-replies-per-s): past that a refusal is counted but not answered, so a
   * flood of bad frames can't turn the server into an error-frame cannon.
   */
  const refuse = (socket: FedSocket, e: unknown, event: string, round?: number, ack?: (frame: Uint8Array) => void): void => {
    if (!(e instanceof ProtocolError)) o.log.error({ err: e, event, socket: socket.id }, `internal error handling '${event}' from ${socket.id}`);
    else if (e.cause) o.log.warn({ err: e.cause, event, socket: socket.id }, `a validator threw on '${event}' from ${socket.id} (refused as ${e.code}; please report)`);
    const msg = coordinator.errorFor(e, round ?? (e instanceof ProtocolError ? e.round : undefined));
    o.metrics.refused(event, msg.code);
    // A peer's mistake is its own business (it gets the error frame); visible with --log-level debug.
    o.log.debug({ event, code: msg.code, socket: socket.id }, `refused '${event}' from ${socket.id}: ${msg.code}: ${msg.message}`);
    const limiter = guards.get(socket);
    if (limiter && !limiter.mayReply()) return;
    send(socket, msg);
    ack?.(encodeFrame(msg));
  };
  const guards = new WeakMap<FedSocket, ConnectionGuard>();
  const g = o.guard;

  // An address backing off after too many failed authentications is refused here, before the token is even looked
  // at (app.ts also refuses its new engine.io connections outright: allowRequest).
  if (g) {
    io.use((socket, next) => {
      const wait = g.address.blockedFor(socket.handshake.address);
      if (wait === 0) return next();
      o.metrics.refused('handshake', 'rate-limited');
      next(new Error(`rate-limited: too many failed authentications from this address; retry in ${Math.ceil(wait / 1000)} s`));
    });
  }

  // Every handshake proves who it is (server/auth.ts); the identity stays with the connection: a credential's client id
  // is the only id its hellos may name, and a revoked credential's connections are closed (app.ts sweeps them).
  io.use((socket, next) => {
    const r = o.auth.check(socket.handshake.auth?.token);
    if (r.ok) {
      socket.data.identity = r.identity;
      return next();
    }
    o.metrics.refused('handshake', 'unauthorized');
    g?.address.failed(socket.handshake.address);
    o.log.debug({ address: socket.handshake.address }, `refused a socket.io handshake from ${socket.handshake.address}: ${r.why}`);
    next(new Error(`unauthorized: ${r.why}`));
  });

  /**
   * The event's one frame. socket.io delivers every argument the peer emitted, plus an acknowledgement callback last
   * when the peer asked for one (emitWithAck / a callback). The protocol has no acknowledgements (replies are events),
   * so anything but exactly one argument is `bad-frame`, an ack request included; that refusal also answers the
   * callback with the same `error` frame, so a peer waiting on it is not left hanging.
   */
  const oneFrame = (event: string, args: unknown[]): unknown => {
    if (ackOf(args)) {
      throw new ProtocolError('bad-frame', `event '${event}' must not ask for a socket.io acknowledgement: emit the frame alone (replies are events)`);
    }
    if (args.length !== 1) {
      throw new ProtocolError('bad-frame', `event '${event}' must carry exactly one binary msgpack frame, got ${args.length} arguments`);
    }
    return args[0];
  };
  const ackOf = (args: unknown[]): ((frame: Uint8Array) => void) | undefined => {
    const last = args.at(-1);
    return typeof last === 'function' ? (last as (frame: Uint8Array) => void) : undefined;
  };

  io.on('connection', (socket: FedSocket) => {
    let clientId: string | null = null;
    let helloTimer: ReturnType<typeof setTimeout> | null = null; // cleared on disconnect; a welcome makes it a no-op
    const limiter = g ? new ConnectionGuard(g.connection) : null;
    if (limiter) guards.set(socket, limiter);
    // Every inbound event passes here before any handler: over the rate it is refused unread (a connection that keeps
    // at it is told and closed), and an unknown event is refused. (onAny listeners would run before this, rate or not.)
    socket.use((packet, next) => {
      const event = String(packet[0]).slice(0, 64);
      const ack = ackOf(packet.slice(1));
      const verdict = limiter?.admit(event) ?? 'ok';
      if (verdict === 'ok') {
        if ((CLIENT_EVENTS as readonly string[]).includes(event)) return next();
        return refuse(socket, new ProtocolError('bad-message', `unknown event '${event}'`), event, undefined, ack);
      }
      if (g) {
        if (verdict === 'rate-limited') {
          const r = g.connection;
          return refuse(socket, new ProtocolError('rate-limited', `more than ${r.framesPerS} frames/s (bursts of ${r.frameBurst})${event === 'hello' ? ` or more than one hello per ${r.helloIntervalS} s` : ''} from this connection; slow down`), event, undefined, ack);
        }
        o.metrics.refused(event, 'rate-limited');
        o.log.warn({ socket: socket.id, clientId, address: socket.handshake.address }, `closing ${socket.id}${clientId ? ` (client ${clientId})` : ''}: it kept sending over its rate limit`);
        send(socket, { type: 'error', code: 'rate-limited', message: `over ${g.connection.floodLimit} frames refused for rate within 10 s; this connection is closed` });
        socket.disconnect(true);
      }
    });
    if (g) {
      // An authenticated connection must say a valid hello soon: sockets that never do would otherwise stay forever.
      helloTimer = setTimeout(() => {
        if (clientId || !socket.connected) return;
        o.metrics.refused('hello', 'hello-timeout');
        o.log.debug({ socket: socket.id, address: socket.handshake.address }, `closing ${socket.id}: no valid hello within ${g.helloTimeoutMs / 1000} s`);
        send(socket, { type: 'error', code: 'hello-timeout', message: `no valid hello within ${g.helloTimeoutMs / 1000} s of connecting; this connection is closed` });
        socket.disconnect(true);
      }, g.helloTimeoutMs);
      helloTimer.unref?.();
    }

    socket.on('hello', (...args: unknown[]) => {
      try {
        const msg = parseClientFrame('hello', oneFrame('hello', args), o.limits);
        if (msg.type !== 'hello') throw new ProtocolError('bad-message', 'expected hello');
        if (clientId && clientId !== msg.clientId) throw new ProtocolError('bad-message', `this connection is already client '${clientId}'`);
        const vouched = o.auth.vouchFor(socket.data.identity as Identity | undefined, msg.clientId);
        const welcome = coordinator.register(msg, { vouched });
        const prior = sockets.get(msg.clientId);
        // A hello again on the same live connection only updates the registration (e.g. new sample counts).
        const refresh = clientId === msg.clientId && prior === socket;
        clientId = msg.clientId;
        sockets.set(clientId, socket);
        if (prior && prior !== socket) {
          // The newest connection of a client wins. The old one is told why first (frames go out in order, before
          // the close): its client knows it was replaced, not dropped, and does not reconnect to take the id back.
          const why = `another session of client id '${clientId}' presented its resumeToken and took over; this connection is closed`;
          send(prior, { type: 'error', code: 'unauthorized', message: why });
          prior.disconnect(true);
        }
        send(socket, welcome);
        if (!refresh) coordinator.resumeIfSelected(clientId);
      } catch (e) {
        // A wrong resume token (or credential) for an id is a failed authentication of this address too.
        if (e instanceof ProtocolError && e.code === 'unauthorized') g?.address.failed(socket.handshake.address);
        refuse(socket, e, 'hello', undefined, ackOf(args));
      }
    });

    // Uploads are acked; the key exchange and reveal of secure aggregation are answered by the protocol's next step.
    const uploads = new Set(['logits', 'weights', 'sa-masked']);
    for (const event of ['logits', 'weights', 'decline', 'sa-keys', 'sa-shares', 'sa-masked', 'sa-reveal'] as const) {
      socket.on(event, (...args: unknown[]) => {
        let round: number | undefined;
        try {
          const frame = oneFrame(event, args);
          if (!clientId) throw new ProtocolError('not-registered', 'send hello before uploading');
          const msg = parseClientFrame(event, frame, o.limits);
          round = (msg as { round: number }).round;
          const bytes = coordinator.submit(clientId, msg, (frame as Uint8Array).byteLength);
          if (uploads.has(event)) send(socket, { type: 'ack', round, accepted: true, bytes });
        } catch (e) {
          refuse(socket, e, event, round, ackOf(args));
        }
      });
    }

    socket.on('disconnect', () => {
      if (helloTimer) clearTimeout(helloTimer);
      if (clientId && sockets.get(clientId) === socket) {
        sockets.delete(clientId);
        coordinator.disconnected(clientId);
      }
    });
  });

  return {
    send(clientId: string, msg: ServerMsg): number {
      const s = sockets.get(clientId);
      return s ? send(s, msg) : 0;
    },
  };
}
