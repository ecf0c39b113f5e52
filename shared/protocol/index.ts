/**
 * `fedistill/protocol`: the wire protocol as a library — message types and their zod schemas, the typed socket.io
 * events, the msgpack frame codec, the validators the server runs on every frame, and the logit codecs
 * (fp32/fp16/int8/top-k). Whole modules are re-exported so a name added to one of them is public at once.
 */
export * from './messages.ts';
export * from './model-kinds.ts';
export * from './schemas.ts';
export * from './events.ts';
export * from './frame-codec.ts';
export * from './validate.ts';
export * from './row-set.ts';
export * from '../tensor/logit-codec.ts';
