import type { z } from 'zod';
import { decodeFrame } from './frame-codec.ts';
import type { ClientMsg, ErrorCode, LogitsMsg, ServerMsg, WeightsMsg, WireTensor } from './messages.ts';
import { CLIENT_SCHEMAS, SERVER_SCHEMAS } from './schemas.ts';
import { validateEncodedMatrix } from '../tensor/logit-codec.ts';

/** A refusal to send back to the peer: `code` is machine-readable, `message` says what to fix. */
export class ProtocolError extends Error {
  /** The round (online: task) the refused frame named, when it carried a well-formed one: sent as `error.round`. */
  round?: number;
  constructor(readonly code: ErrorCode, message: string) {
    super(message);
  }
}

export interface FrameLimits {
  /** Largest accepted frame per event, in bytes. */
  hello: number;
  logits: number;
  weights: number;
}

export const DEFAULT_FRAME_LIMITS: FrameLimits = { hello: 64 * 1024, logits: 16 * 1024 * 1024, weights: 64 * 1024 * 1024 };

const fail = (code: ErrorCode, message: string): never => {
  throw new ProtocolError(code, message);
};

function isMap(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x) && !ArrayBuffer.isView(x);
}

/** The raw value at a zod issue's path (for telling a NaN/Infinity apart from a wrong type). */
function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let v = root;
  for (const k of path) v = isMap(v) || Array.isArray(v) ? (v as Record<PropertyKey, unknown>)[k] : undefined;
  return v;
}

/**
 * Turn zod's first issue into a ProtocolError naming the field: a NaN/±Infinity number is `non-finite`; anything
 * inside `logits` or a tensor `shape` is `bad-shape` (as the codec's own checks are); the rest is `bad-message`.
 */
function issueError(error: z.ZodError, raw: unknown): ProtocolError {
  const issue = error.issues[0];
  const path = issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('').replace(/^\./, '');
  const value = valueAt(raw, issue.path);
  const more = error.issues.length > 1 ? ` (and ${error.issues.length - 1} more problem${error.issues.length > 2 ? 's' : ''})` : '';
  const text = issue.message.startsWith('must') ? `field '${path}' ${issue.message}` : `field '${path}': ${issue.message}`;
  if (typeof value === 'number' && !Number.isFinite(value)) return new ProtocolError('non-finite', `field '${path}' must be a finite number, got ${value}${more}`);
  const code: ErrorCode = issue.path[0] === 'logits' || issue.path.includes('shape') ? 'bad-shape' : 'bad-message';
  return new ProtocolError(code, text + more);
}

/** msgpack-decode one frame into a map whose `type` is `event` (the envelope every message shares). */
function decodeEnvelope(event: string, frame: unknown, limit: number | undefined): Record<string, unknown> {
  // socket.io delivers a binary attachment as a Buffer (a Uint8Array) in Node and as an ArrayBuffer in browsers.
  if (frame instanceof ArrayBuffer) frame = new Uint8Array(frame);
  if (!(frame instanceof Uint8Array)) fail('bad-frame', `event '${event}' must carry one binary msgpack frame`);
  const bytes = frame as Uint8Array;
  if (limit === undefined) fail('bad-message', `unknown event '${event}'`);
  if (bytes.byteLength > limit!) fail('too-large', `'${event}' frame of ${bytes.byteLength} bytes exceeds the limit of ${limit}`);
  let msg: unknown;
  try {
    msg = decodeFrame(bytes);
  } catch (e) {
    fail('bad-frame', `frame is not valid msgpack: ${(e as Error).message}`);
  }
  if (!isMap(msg)) fail('bad-message', 'frame must hold a msgpack map');
  const m = msg as Record<string, unknown>;
  if (m.type !== event) fail('bad-message', `frame type '${String(m.type)}' does not match event '${event}'`);
  return m;
}

/**
 * Decode one inbound client frame and check it: the envelope, then the event's schema (structure), then the contents
 * of its binary payloads (codec lengths, finite values, index ranges, tensor sizes). Stateful checks (round,
 * selection, expected dims) belong to the coordinator. Throws ProtocolError.
 */
export function parseClientFrame(event: string, frame: unknown, limits: FrameLimits = DEFAULT_FRAME_LIMITS): ClientMsg {
  const limit = Object.hasOwn(CLIENT_SCHEMAS, event) ? (limits as unknown as Record<string, number>)[event] : undefined;
  const raw = decodeEnvelope(event, frame, limit);
  try {
    const parsed = CLIENT_SCHEMAS[event as keyof typeof CLIENT_SCHEMAS].safeParse(raw);
    if (!parsed.success) throw issueError(parsed.error, raw);
    const msg = parsed.data as ClientMsg;
    if (msg.type === 'logits') checkLogitsContent(msg);
    else if (msg.type === 'weights') checkWireTensors(msg.weights);
    return msg;
  } catch (e) {
    // A refused upload still names its round when that field itself is well-formed (the sender can tell which of
    // its uploads was refused).
    const round = raw.round;
    const named = event !== 'hello' && typeof round === 'number' && Number.isSafeInteger(round) && round >= 0;
    if (e instanceof ProtocolError && named) e.round ??= round;
    throw e;
  }
}

/**
 * Decode and check one frame the server sent (the SDK's side): the same schemas, and the contents of any encoded
 * matrix the client will decode. Throws ProtocolError; the caller reports and ignores the frame.
 */
export function parseServerFrame(event: string, frame: unknown): ServerMsg {
  const known = Object.hasOwn(SERVER_SCHEMAS, event);
  // The server is trusted with size (a round may carry a large model); the transport's own limit applies.
  const raw = decodeEnvelope(event, frame, known ? Number.MAX_SAFE_INTEGER : undefined);
  const parsed = SERVER_SCHEMAS[event as keyof typeof SERVER_SCHEMAS].safeParse(raw);
  if (!parsed.success) throw issueError(parsed.error, raw);
  const msg = parsed.data as ServerMsg;
  if (msg.type === 'round') {
    if (msg.task === 'logits' && !msg.indices) fail('bad-message', "field 'indices' is required for task 'logits'");
    for (const [field, probs, rows] of [
      ['consensus.probs', msg.consensus?.probs, msg.consensus?.indices.length],
      ['mutual.probs', msg.mutual?.probs, msg.indices?.length],
    ] as const) {
      if (!probs) continue;
      const err = validateEncodedMatrix(probs, { rows });
      if (err) fail(/finite/.test(err) ? 'non-finite' : 'bad-shape', `${field}: ${err}`);
    }
    if (msg.model) checkWireTensors(msg.model.weights, 'model.weights');
  } else if (msg.type === 'end' && msg.model) checkWireTensors(msg.model.weights, 'model.weights');
  return msg;
}

/** Content of a logits upload: the codec's validator (lengths per codec, finite values, topk index ranges). */
function checkLogitsContent(msg: LogitsMsg): void {
  const err = validateEncodedMatrix(msg.logits);
  if (err) fail(/finite/.test(err) ? 'non-finite' : 'bad-shape', `logits: ${err}`);
}

/** Content of a list of tensors (structure already checked by the schema): sizes match shapes, values finite. */
export function checkWireTensors(ts: WireTensor[] | WeightsMsg['weights'], field = 'weights'): WireTensor[] {
  const seen = new Set<unknown>();
  for (const [i, t] of ts.entries()) {
    // Each tensor owns its values: one array aliased many times would let a small frame stand for a huge update.
    if (seen.has(t.data.buffer) && t.data.byteLength > 0) fail('bad-message', `${field}[${i}] ('${t.name}') shares its data with another tensor`);
    seen.add(t.data.buffer);
    const size = t.shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== size) fail('bad-shape', `${field}[${i}] ('${t.name}') has ${t.data.length} values for shape [${t.shape}]`);
    assertAllFinite(t.data, `${field}[${i}] ('${t.name}')`);
  }
  return ts;
}

export function assertAllFinite(values: Float32Array, what: string): void {
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i])) fail('non-finite', `${what} holds a non-finite value at index ${i}`);
}
