import { decodeFrame } from './frame-codec.ts';
import type { ClientMsg, ErrorCode, HelloMsg, LogitsMsg, WeightsMsg, WireTensor, ClientRoundStats } from './messages.ts';
import { MODEL_KINDS } from '../models/builders.ts';
import { validateEncodedMatrix } from '../tensor/logit-codec.ts';

/** A refusal to send back to the peer: `code` is machine-readable, `message` says what to fix. */
export class ProtocolError extends Error {
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

const CODECS = ['fp32', 'fp16', 'int8', 'topk'];
const fail = (code: ErrorCode, message: string): never => {
  throw new ProtocolError(code, message);
};

function isObj(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x) && !ArrayBuffer.isView(x);
}
function int(o: Record<string, unknown>, k: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) fail('bad-message', `field '${k}' must be an integer in [${min}, ${max}]`);
  return v as number;
}
function finite(o: Record<string, unknown>, k: string, optional = false): number | undefined {
  const v = o[k];
  if (v === undefined && optional) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) fail(typeof v === 'number' ? 'non-finite' : 'bad-message', `field '${k}' must be a finite number`);
  return v as number;
}
function str(o: Record<string, unknown>, k: string, maxLen = 256): string {
  const v = o[k];
  if (typeof v !== 'string' || v.length === 0 || v.length > maxLen) fail('bad-message', `field '${k}' must be a non-empty string of at most ${maxLen} characters`);
  return v as string;
}

/** Decode one inbound frame and check its structure. Stateful checks (round, selection) belong to the coordinator. */
export function parseClientFrame(event: string, frame: unknown, limits: FrameLimits = DEFAULT_FRAME_LIMITS): ClientMsg {
  if (!(frame instanceof Uint8Array)) fail('bad-frame', `event '${event}' must carry one binary msgpack frame`);
  const bytes = frame as Uint8Array;
  const limit = (limits as unknown as Record<string, number>)[event];
  if (limit === undefined) fail('bad-message', `unknown event '${event}'`);
  if (bytes.byteLength > limit) fail('too-large', `'${event}' frame of ${bytes.byteLength} bytes exceeds the limit of ${limit}`);
  let msg: unknown;
  try {
    msg = decodeFrame(bytes);
  } catch (e) {
    fail('bad-frame', `frame is not valid msgpack: ${(e as Error).message}`);
  }
  if (!isObj(msg)) fail('bad-message', 'frame must hold a map');
  const m = msg as Record<string, unknown>;
  if (m.type !== event) fail('bad-message', `frame type '${String(m.type)}' does not match event '${event}'`);
  switch (event) {
    case 'hello':
      return checkHello(m);
    case 'logits':
      return checkLogits(m);
    default:
      return checkWeights(m);
  }
}

function checkHello(m: Record<string, unknown>): HelloMsg {
  int(m, 'protocol', 0, 1e6);
  str(m, 'clientId', 128);
  if (!/^[A-Za-z0-9_.:-]+$/.test(m.clientId as string)) fail('bad-message', "clientId may use only letters, digits and '_.:-'");
  if (!MODEL_KINDS.includes(m.model as never)) fail('bad-message', `model must be one of ${MODEL_KINDS.join(', ')}`);
  // 0 is a real state in continual learning (a device whose data all expired): it then weighs nothing.
  int(m, 'numSamples', 0, 1e9);
  if (m.resumeToken !== undefined) str(m, 'resumeToken', 128);
  if (m.backend !== undefined && !/^[a-z0-9-]{1,32}$/.test(str(m, 'backend', 32))) fail('bad-message', 'backend must be a short lower-case name');
  if (m.classCounts !== undefined) {
    const cc = m.classCounts;
    if (!Array.isArray(cc) || cc.length > 10000 || !cc.every((c) => Number.isInteger(c) && c >= 0)) fail('bad-message', 'classCounts must be a list of non-negative integers');
  }
  if (!CODECS.includes(m.codec as string)) fail('bad-message', `codec must be one of ${CODECS.join(', ')}`);
  return m as unknown as HelloMsg;
}

function checkStats(s: unknown): ClientRoundStats {
  if (!isObj(s)) fail('bad-message', "field 'stats' must be a map");
  const o = s as Record<string, unknown>;
  finite(o, 'trainLoss');
  finite(o, 'trainAccuracy');
  finite(o, 'trainSeconds');
  finite(o, 'evalAccuracy', true);
  return o as unknown as ClientRoundStats;
}

function checkLogits(m: Record<string, unknown>): LogitsMsg {
  int(m, 'round', 0);
  str(m, 'proxyHash', 128);
  const err = validateEncodedMatrix(m.logits);
  if (err) fail(/finite/.test(err) ? 'non-finite' : 'bad-shape', `logits: ${err}`);
  checkStats(m.stats);
  return m as unknown as LogitsMsg;
}

export function checkWireTensors(ts: unknown, field = 'weights'): WireTensor[] {
  if (!Array.isArray(ts) || ts.length === 0 || ts.length > 1000) fail('bad-message', `'${field}' must be a non-empty list of tensors`);
  const seen = new Set<unknown>();
  for (const t of ts as unknown[]) {
    if (!isObj(t)) fail('bad-message', `each of '${field}' must be a map`);
    const o = t as Record<string, unknown>;
    str(o, 'name', 256);
    const shape = o.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d > 0)) fail('bad-shape', `tensor '${o.name}' has an invalid shape`);
    if (!(o.data instanceof Float32Array)) fail('bad-message', `tensor '${o.name}' data must be a float32 array`);
    if (seen.has(o.data)) fail('bad-message', `tensor '${o.name}' shares its data with another tensor`);
    seen.add(o.data);
    const size = (shape as number[]).reduce((a, b) => a * b, 1);
    const data = o.data as Float32Array;
    if (data.length !== size) fail('bad-shape', `tensor '${o.name}' has ${data.length} values for shape [${shape}]`);
    for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i])) fail('non-finite', `tensor '${o.name}' holds a non-finite value at ${i}`);
  }
  return ts as WireTensor[];
}

function checkWeights(m: Record<string, unknown>): WeightsMsg {
  int(m, 'round', 0);
  int(m, 'numSamples', 0, 1e9);
  checkWireTensors(m.weights);
  checkStats(m.stats);
  return m as unknown as WeightsMsg;
}

export function assertAllFinite(values: Float32Array, what: string): void {
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i])) fail('non-finite', `${what} holds a non-finite value at index ${i}`);
}
