import type { RoundMsg, WireModel } from '../../shared/protocol/messages.ts';
import { decodeWeights } from '../../shared/models/weight-codec.ts';
import {
  encodeRows,
  encodedRowsLength,
  rowOrderError,
  smallestRowEncoding,
  type EncodedRows,
  type RowEncodingName,
} from '../../shared/protocol/row-set.ts';
import type { Participant } from '../strategies/strategy.ts';

/**
 * A round's proxy rows as they go to one client: tasks and checkpoints hold them as a Uint32Array (`indices`), and a
 * client whose hello lists row-set forms gets them as `rows` (shared/protocol/row-set.ts) when that is smaller. The
 * conversion happens only here, on the way out, so strategies, acceptLogits, the journal and checkpoints never see
 * `rows`.
 *
 * One array is typically shared by every task of a round (and the consensus by every digesting client): each form of
 * it is computed once, keyed by the array's identity (a WeakMap, so it goes with the round).
 */
const encoded = new WeakMap<Uint32Array, Map<string, EncodedRows | null>>();

/**
 * `indices` as the smallest row set `accepted` allows; null when the uint32 list is no larger, or is not a sorted set.
 */
export function compactRows(indices: Uint32Array, proxyCount: number, accepted: readonly RowEncodingName[]): EncodedRows | null {
  let forms = encoded.get(indices);
  if (!forms) encoded.set(indices, (forms = new Map()));
  const key = `${proxyCount}/${accepted.join()}`;
  if (!forms.has(key)) forms.set(key, compute(indices, proxyCount, accepted));
  return forms.get(key)!;
}

function compute(indices: Uint32Array, proxyCount: number, accepted: readonly RowEncodingName[]): EncodedRows | null {
  // A list in any other order is the upload's row order: only a sorted set can travel as one.
  if (accepted.length === 0 || rowOrderError(indices, proxyCount)) return null;
  const form = smallestRowEncoding(indices, proxyCount, accepted);
  // Both travel as msgpack bin with a few bytes of framing; `rows` adds its map (~30 bytes of keys and values).
  if (encodedRowsLength(indices, proxyCount, form) + 32 >= 4 * indices.length) return null;
  return encodeRows(indices, proxyCount, [form]);
}

/** The round as client `p` gets it: `indices` (and `consensus.indices`) as `rows` where it opted in and that is smaller. */
export function roundForClient(msg: RoundMsg, p: Pick<Participant, 'rowEncodings' | 'weightEncodings'> | undefined, proxyCount: number): RoundMsg {
  if (msg.model) {
    const model = modelForClient(msg.model, p);
    if (model !== msg.model) msg = { ...msg, model };
  }
  const accepted = p?.rowEncodings;
  if (!accepted?.length) return msg;
  let out = msg;
  const rows = msg.indices && !msg.rows ? compactRows(msg.indices, proxyCount, accepted) : null;
  if (rows) {
    const { indices: _, ...rest } = out;
    out = { ...rest, rows };
  }
  const c = msg.consensus;
  const consensusRows = c?.indices && !c.rows ? compactRows(c.indices, proxyCount, accepted) : null;
  if (c && consensusRows) {
    const { indices: _, ...rest } = c;
    out = { ...out, consensus: { ...rest, rows: consensusRows } };
  }
  return out;
}

/** fp32 copies of encoded models, made once per model (a round's tasks share one). */
const asFp32 = new WeakMap<WireModel, WireModel>();

/**
 * The task's student as the client can decode it now: a round configured while its hello listed int8 keeps its
 * encoded student, and a client that reconnects into the round with a hello that no longer lists that encoding (another
 * or an older SDK under the same id) gets the task resent with the student back in fp32 rather than weights it
 * cannot read.
 */
function modelForClient(model: WireModel, p: Pick<Participant, 'weightEncodings'> | undefined): WireModel {
  const readable = model.weights.every((w) => !w.encoding || w.encoding === 'fp32' || p?.weightEncodings?.includes(w.encoding));
  if (readable) return model;
  let fp32 = asFp32.get(model);
  if (!fp32) asFp32.set(model, (fp32 = { ...model, weights: decodeWeights(model.weights) }));
  return fp32;
}
