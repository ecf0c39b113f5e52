import type { Server, Socket } from 'socket.io';
import { encodeFrame } from '../shared/protocol/frame-codec.ts';
import type { ClientToServerEvents, ServerToClientEvents } from '../shared/protocol/events.ts';
import { CLIENT_EVENTS } from '../shared/protocol/events.ts';
import type { ServerMsg } from '../shared/protocol/messages.ts';
import { ProtocolError, parseClientFrame, type FrameLimits } from '../shared/protocol/validate.ts';
import type { Coordinator, Transport } from './coordinator.ts';
import type { AggregatorMetrics } from './metrics.ts';
import type { Logger } from './logger.ts';
import { tokenMatches } from './auth.ts';

type FedSocket = Socket<ClientToServerEvents, ServerToClientEvents>;

export interface GatewayOptions {
  token: string;
  limits: FrameLimits;
  metrics: AggregatorMetrics;
  log: Logger;
}

/**
 * The socket.io side of the aggregator: authenticates the handshake, decodes and validates every frame, hands
 * messages to the coordinator and answers each refusal with an `error` frame. Nothing a peer sends can throw past here.
 */
export function attachGateway(io: Server<ClientToServerEvents, ServerToClientEvents>, coordinator: Coordinator, o: GatewayOptions): Transport {
  const sockets = new Map<string, FedSocket>();

  const send = (socket: FedSocket, msg: ServerMsg): number => {
    const frame = encodeFrame(msg);
    socket.emit(msg.type as keyof ServerToClientEvents, frame);
    o.metrics.sent(frame.byteLength);
    return frame.byteLength;
  };
  /** Answer a refused frame with `error` (naming the round the frame named, if any); `ack`: see oneFrame(). */
  const refuse = (socket: FedSocket, e: unknown, event: string, round?: number, ack?: (frame: Uint8Array) => void): void => {
    if (!(e instanceof ProtocolError)) o.log.error({ err: e, event, socket: socket.id }, `internal error handling '${event}' from ${socket.id}`);
    const msg = coordinator.errorFor(e, round ?? (e instanceof ProtocolError ? e.round : undefined));
    o.metrics.refused(event, msg.code);
    // A peer's mistake is its own business (it gets the error frame); visible with --log-level debug.
    o.log.debug({ event, code: msg.code, socket: socket.id }, `refused '${event}' from ${socket.id}: ${msg.code}: ${msg.message}`);
    send(socket, msg);
    ack?.(encodeFrame(msg));
  };

  if (o.token) {
    io.use((socket, next) => {
      if (tokenMatches(socket.handshake.auth?.token, o.token)) return next();
      o.metrics.refused('handshake', 'unauthorized');
      o.log.debug({ address: socket.handshake.address }, `refused a socket.io handshake from ${socket.handshake.address}: bad token`);
      next(new Error('unauthorized: pass the server token as auth.token in the socket.io handshake'));
    });
  }

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

    socket.on('hello', (...args: unknown[]) => {
      try {
        const msg = parseClientFrame('hello', oneFrame('hello', args), o.limits);
        if (msg.type !== 'hello') throw new ProtocolError('bad-message', 'expected hello');
        if (clientId && clientId !== msg.clientId) throw new ProtocolError('bad-message', `this connection is already client '${clientId}'`);
        const welcome = coordinator.register(msg);
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
        refuse(socket, e, 'hello', undefined, ackOf(args));
      }
    });

    for (const event of ['logits', 'weights'] as const) {
      socket.on(event, (...args: unknown[]) => {
        let round: number | undefined;
        try {
          const frame = oneFrame(event, args);
          if (!clientId) throw new ProtocolError('not-registered', 'send hello before uploading');
          const msg = parseClientFrame(event, frame, o.limits);
          round = (msg as { round: number }).round;
          const bytes = coordinator.submit(clientId, msg, (frame as Uint8Array).byteLength);
          send(socket, { type: 'ack', round, accepted: true, bytes });
        } catch (e) {
          refuse(socket, e, event, round, ackOf(args));
        }
      });
    }

    socket.onAny((event: string) => {
      if (!(CLIENT_EVENTS as readonly string[]).includes(event)) refuse(socket, new ProtocolError('bad-message', `unknown event '${event}'`), event);
    });

    socket.on('disconnect', () => {
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
