/**
 * Typed socket.io events (socket.io's ServerToClientEvents / ClientToServerEvents pattern).
 * Every event carries exactly one argument: a msgpackr frame (binary), decoded and validated on arrival,
 * so the transport never interprets payloads and a malformed frame is answered, not thrown.
 */
export type Frame = Uint8Array;

export interface ClientToServerEvents {
  hello: (frame: Frame) => void;
  logits: (frame: Frame) => void;
  weights: (frame: Frame) => void;
  decline: (frame: Frame) => void;
  'sa-keys': (frame: Frame) => void;
  'sa-shares': (frame: Frame) => void;
  'sa-masked': (frame: Frame) => void;
  'sa-reveal': (frame: Frame) => void;
}

export interface ServerToClientEvents {
  welcome: (frame: Frame) => void;
  round: (frame: Frame) => void;
  ack: (frame: Frame) => void;
  error: (frame: Frame) => void;
  'round-result': (frame: Frame) => void;
  end: (frame: Frame) => void;
  'sa-roster': (frame: Frame) => void;
  'sa-peers': (frame: Frame) => void;
  'sa-unmask': (frame: Frame) => void;
}

export const CLIENT_EVENTS = ['hello', 'logits', 'weights', 'decline', 'sa-keys', 'sa-shares', 'sa-masked', 'sa-reveal'] as const;
