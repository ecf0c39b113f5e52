import type { z } from 'zod';
import { decodeFrame } from './frame-codec.ts';
import type { ClientMsg, EncodedTensor, ErrorCode, LogitsMsg, RoundMsg, SecAggClientMsg, ServerMsg } from './messages.ts';
import { tensorContentError } from '../models/weight-codec.ts';
import { scanFrame, type FrameShape } from './frame-scan.ts';
import { CLIENT_FRAME_SHAPES, CLIENT_SCHEMAS, SERVER_SCHEMAS } from './schemas.ts';
import { describeValue } from './typed-arrays.ts';
import { VALUE_CODECS, validateEncodedMatrix } from '../tensor/logit-codec.ts';
import { decodeRows, type EncodedRows } from './row-set.ts';

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

/**
 * Anything a validator throws about a peer's frame is the peer's `bad-message`, never the server's `internal`: the
 * checks run on values a peer chose (maps holding `toString`, BigInts, typed arrays of any kind), and a check that
 * trips over one has still refused the frame. The original error stays as `cause` so the gateway can log the bug.
 */
function toProtocolError(e: unknown): ProtocolError {
  if (e instanceof ProtocolError) return e;
  const err = new ProtocolError('bad-message', `frame could not be validated: ${e instanceof Error ? e.message : 'unreadable value'}`);
  err.cause = e;
  return err;
}

function asProtocolError<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw toProtocolError(e);
  }
}

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

/**
 * msgpack-decode one frame into a map whose `type` is `event` (the envelope every message shares). With `shape`, the
 * frame's structure is checked first (frame-scan.ts), so no hostile frame costs more than a header walk to refuse.
 */
function decodeEnvelope(event: string, frame: unknown, limit: number | undefined, shape?: FrameShape): Record<string, unknown> {
  // socket.io delivers a binary attachment as a Buffer (a Uint8Array) in Node and as an ArrayBuffer in browsers.
  if (frame instanceof ArrayBuffer) frame = new Uint8Array(frame);
  if (!(frame instanceof Uint8Array)) fail('bad-frame', `event '${event}' must carry one binary msgpack frame`);
  const bytes = frame as Uint8Array;
  if (limit === undefined) fail('bad-message', `unknown event '${event}'`);
  if (bytes.byteLength > limit!) fail('too-large', `'${event}' frame of ${bytes.byteLength} bytes exceeds the limit of ${limit}`);
  if (shape) {
    const refusal = scanFrame(bytes, shape);
    if (refusal) fail(refusal.kind === 'limit' ? 'too-large' : 'bad-frame', `'${event}' frame refused before decoding: ${refusal.message}`);
  }
  let msg: unknown;
  try {
    msg = decodeFrame(bytes);
  } catch (e) {
    fail('bad-frame', `frame is not valid msgpack: ${(e as Error).message}`);
  }
  if (!isMap(msg)) fail('bad-message', 'frame must hold a msgpack map');
  const m = msg as Record<string, unknown>;
  if (m.type !== event) {
    // A peer's value is never turned into a string by its own methods (a map holding `toString` would throw).
    const got = typeof m.type === 'string' ? `'${m.type.slice(0, 64)}'` : describeValue(m.type);
    fail('bad-message', `frame type ${got} does not match event '${event}'`);
  }
  return m;
}

/** The key exchange, masked input and reveal of secure aggregation (docs/privacy.md). */
export function isSecAggMsg(msg: ClientMsg): msg is SecAggClientMsg {
  return msg.type === 'sa-keys' || msg.type === 'sa-shares' || msg.type === 'sa-masked' || msg.type === 'sa-reveal';
}

/**
 * The byte limit of each event. Secure aggregation's frames borrow the three configured limits: keys are hello-sized;
 * a masked vector is at most rows·(classes+1) uint32s, within a logits frame's 4·rows·classes + 8·rows; share lists
 * grow with the round's participants (~150 bytes each), so they get the larger of the upload limits.
 */
export function frameLimitFor(event: keyof typeof CLIENT_SCHEMAS, limits: FrameLimits): number {
  switch (event) {
    case 'sa-keys':
    case 'decline':
      return limits.hello;
    case 'sa-masked':
      return limits.logits;
    case 'sa-shares':
    case 'sa-reveal':
      return Math.max(limits.logits, limits.weights);
    default:
      return limits[event];
  }
}

/**
 * Decode one inbound client frame and check it: the envelope, then the event's schema (structure), then the contents
 * of its binary payloads (codec lengths, finite values, index ranges, tensor sizes). Stateful checks (round,
 * selection, expected dims) belong to the coordinator. Throws ProtocolError.
 */
export function parseClientFrame(event: string, frame: unknown, limits: FrameLimits = DEFAULT_FRAME_LIMITS): ClientMsg {
  const known = Object.hasOwn(CLIENT_SCHEMAS, event);
  const limit = known ? frameLimitFor(event as keyof typeof CLIENT_SCHEMAS, limits) : undefined;
  const raw = asProtocolError(() => decodeEnvelope(event, frame, limit, known ? CLIENT_FRAME_SHAPES[event as keyof typeof CLIENT_SCHEMAS] : undefined));
  try {
    const parsed = CLIENT_SCHEMAS[event as keyof typeof CLIENT_SCHEMAS].safeParse(raw);
    if (!parsed.success) throw issueError(parsed.error, raw);
    const msg = parsed.data as ClientMsg;
    if (msg.type === 'logits') checkLogitsContent(msg);
    else if (msg.type === 'weights') checkWireTensors(msg.weights);
    return msg;
  } catch (thrown) {
    const e = toProtocolError(thrown);
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
    // Decoded in place (a set key only where there are rows: a `weights` round has neither).
    if (msg.rows) msg.indices = rowList('', msg.indices, msg.rows);
    if (msg.task === 'logits' && !msg.indices) fail('bad-message', "field 'indices' (or 'rows') is required for task 'logits'");
    if (msg.consensus?.rows) msg.consensus.indices = rowList('consensus.', msg.consensus.indices, msg.consensus.rows);
    if (msg.consensus && !msg.consensus.indices) fail('bad-message', "field 'consensus.indices' (or 'consensus.rows') is required");
    for (const [field, probs, rows] of [
      ['consensus.probs', msg.consensus?.probs, msg.consensus?.indices?.length],
      ['mutual.probs', msg.mutual?.probs, msg.indices?.length],
    ] as const) {
      if (!probs) continue;
      const err = validateEncodedMatrix(probs, { rows });
      if (err) fail(/finite/.test(err) ? 'non-finite' : 'bad-shape', `${field}: ${err}`);
      if (!VALUE_CODECS.includes(probs.codec)) fail('bad-message', `${field}: ${valuesCodecError(probs.codec)}`);
    }
    if (msg.model) checkWireTensors(msg.model.weights, 'model.weights');
  } else if (msg.type === 'end' && msg.model) checkWireTensors(msg.model.weights, 'model.weights');
  return msg;
}

/**
 * A round's proxy rows as the list the client works with: `indices` as sent, or `rows` (a sorted row set) decoded —
 * never both. `rows` stays in the message, so the client can check `rows.proxyCount` against its own proxy set.
 */
function rowList(prefix: string, indices: Uint32Array | undefined, rows: EncodedRows): Uint32Array {
  if (indices) fail('bad-message', `fields '${prefix}indices' and '${prefix}rows' are exclusive: send the rows one way`);
  try {
    return decodeRows(rows);
  } catch (e) {
    return fail('bad-message', `field '${prefix}rows': ${(e as Error).message}`);
  }
}

/**
 * Why a parsed round's proxy rows do not fit the client's proxy set of `proxyCount` rows (a row set made over another
 * size, a row past its end), or null. The client calls it once it holds the proxy set (parseServerFrame cannot know it).
 */
export function roundRowsError(msg: RoundMsg, proxyCount: number): string | null {
  const lists = [['', msg.rows, msg.indices], ['consensus.', msg.consensus?.rows, msg.consensus?.indices]] as const;
  for (const [field, set, list] of lists) {
    if (set && set.proxyCount !== proxyCount) {
      return `'${field}rows' index a proxy set of ${set.proxyCount} rows; this client's has ${proxyCount}`;
    }
    const at = list ? list.findIndex((r) => r >= proxyCount) : -1;
    if (at >= 0) return `'${field}indices[${at}]' is row ${list![at]}, past this client's proxy set of ${proxyCount} rows`;
  }
  return null;
}

/** Content of a logits upload: the codec's validator (lengths per codec, finite values, topk index ranges). */
function checkLogitsContent(msg: LogitsMsg): void {
  const err = validateEncodedMatrix(msg.logits);
  if (err) fail(/finite/.test(err) ? 'non-finite' : 'bad-shape', `logits: ${err}`);
  if (msg.values === 'probs' && !VALUE_CODECS.includes(msg.logits.codec)) fail('bad-message', `logits: ${valuesCodecError(msg.logits.codec)}`);
}

/** Why probabilities cannot travel in a codec that sends each row only up to an additive constant (topk8). */
function valuesCodecError(codec: string): string {
  return `codec ${codec} carries logits up to a per-row constant, not probabilities: send probabilities in ${VALUE_CODECS.join(', ')}`;
}

/**
 * Content of a list of tensors (structure already checked by the schema): sizes match shapes per encoding (fp32
 * values, fp16/int8 bytes, one int8 step per channel), fp32 and fp16 values and int8 steps finite.
 */
export function checkWireTensors<T extends EncodedTensor>(ts: T[], field = 'weights'): T[] {
  // Byte ranges already taken, per buffer: a msgpack decoder may hand out every `bin` as a view into the one frame
  // buffer, so sharing a buffer is fine; overlapping bytes are not.
  const taken = new Map<ArrayBufferLike, [number, number][]>();
  for (const [i, t] of ts.entries()) {
    const what = `${field}[${i}] ('${t.name}')`;
    // Each tensor owns its values: one array aliased many times would let a small frame stand for a huge update.
    for (const payload of [t.data, t.bytes, t.scales]) {
      if (!payload || payload.byteLength === 0) continue;
      const start = payload.byteOffset;
      const end = start + payload.byteLength;
      const ranges = taken.get(payload.buffer) ?? (taken.set(payload.buffer, []), taken.get(payload.buffer)!);
      if (ranges.some(([s, e]) => start < e && s < end)) fail('bad-message', `${what} shares its data with another tensor`);
      ranges.push([start, end]);
    }
    const err = tensorContentError(t);
    if (err) fail(/non-finite|finite number/.test(err) ? 'non-finite' : 'bad-shape', `${what} ${err}`);
    if (t.data) assertAllFinite(t.data, what);
  }
  return ts;
}

export function assertAllFinite(values: Float32Array, what: string): void {
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i])) fail('non-finite', `${what} holds a non-finite value at index ${i}`);
}
