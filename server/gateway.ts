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
  const refuse = (socket: FedSocket, e: unknown, event: string): void => {
    if (!(e instanceof ProtocolError)) o.log.error({ err: e, event, socket: socket.id }, `internal error handling '${event}' from ${socket.id}`);
    const msg = coordinator.errorFor(e);
    o.metrics.refused(event, msg.code);
    // A peer's mistake is its own business (it gets the error frame); visible with --log-level debug.
    o.log.debug({ event, code: msg.code, socket: socket.id }, `refused '${event}' from ${socket.id}: ${msg.code}: ${msg.message}`);
    send(socket, msg);
  };

  if (o.token) {
    io.use((socket, next) => {
      if (tokenMatches(socket.handshake.auth?.token, o.token)) return next();
      o.metrics.refused('handshake', 'unauthorized');
      o.log.debug({ address: socket.handshake.address }, `refused a socket.io handshake from ${socket.handshake.address}: bad token`);
      next(new Error('unauthorized: pass the server token as auth.token in the socket.io handshake'));
    });
  }

  io.on('connection', (socket: FedSocket) => {
    let clientId: string | null = null;

    socket.on('hello', (frame: unknown) => {
      try {
        const msg = parseClientFrame('hello', frame, o.limits);
        if (msg.type !== 'hello') throw new ProtocolError('bad-message', 'expected hello');
        if (clientId && clientId !== msg.clientId) throw new ProtocolError('bad-message', `this connection is already client '${clientId}'`);
        const welcome = coordinator.register(msg);
        const prior = sockets.get(msg.clientId);
        // A hello again on the same live connection only updates the registration (e.g. new sample counts).
        const refresh = clientId === msg.clientId && prior === socket;
        clientId = msg.clientId;
        sockets.set(clientId, socket);
        if (prior && prior !== socket) prior.disconnect(true); // the newest connection of a client wins
        send(socket, welcome);
        if (!refresh) coordinator.resumeIfSelected(clientId);
      } catch (e) {
        refuse(socket, e, 'hello');
      }
    });

    for (const event of ['logits', 'weights'] as const) {
      socket.on(event, (frame: unknown) => {
        try {
          if (!clientId) throw new ProtocolError('not-registered', 'send hello before uploading');
          const msg = parseClientFrame(event, frame, o.limits);
          const bytes = coordinator.submit(clientId, msg, (frame as Uint8Array).byteLength);
          send(socket, { type: 'ack', round: (msg as { round: number }).round, accepted: true, bytes });
        } catch (e) {
          refuse(socket, e, event);
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
