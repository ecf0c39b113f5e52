import type { FrameLimits } from '../../shared/protocol/validate.ts';

/** Room for a frame's envelope: field names, stats, proxy hash, tensor names and shapes. */
export const ENVELOPE_BYTES = 64 * 1024;
/** Per weight tensor on top of its values: name (≤ 256 characters), shape (≤ 8 ints), map and ext headers. */
const PER_TENSOR_BYTES = 512;

export interface FrameNeeds {
  /** Proxy rows a task asks logits for: min(proxySubset, proxy rows). */
  rowsPerTask: number;
  numClasses: number;
  /** Weights (float32 values) and tensors of the student, for fedavg uploads. */
  studentParams: number;
  studentTensors: number;
}

/**
 * The frame limits this server actually applies: what its own tasks can need, capped by the operator's
 * --max-*-bytes. The largest logits upload is fp32 (4·rows·cols bytes) or topk with k = cols over 256 columns
 * (2·rows·k data + 2·rows·k indices + 4·rows offsets), so 4·rows·cols + 8·rows + the envelope bounds every codec;
 * a weights upload is 4 bytes per parameter plus its tensors' names and shapes. Both are computed whatever the
 * strategy, so an upload of the kind it does not use still arrives whole and gets its clear 'bad-message' instead of
 * a closed connection; neither can exceed what the student and the tasks make possible.
 */
export function effectiveFrameLimits(flags: FrameLimits, n: FrameNeeds): FrameLimits {
  const logits = 4 * n.rowsPerTask * n.numClasses + 8 * n.rowsPerTask + ENVELOPE_BYTES;
  const weights = 4 * n.studentParams + PER_TENSOR_BYTES * n.studentTensors + ENVELOPE_BYTES;
  return {
    hello: flags.hello,
    logits: Math.min(flags.logits, logits),
    weights: Math.min(flags.weights, weights),
  };
}

/**
 * socket.io's maxHttpBufferSize: just above the largest frame limit, so an oversized frame still reaches the
 * validator and gets a clear 'too-large', while no peer (authenticated or not) can make the engine buffer more.
 */
export function transportBufferBytes(limits: FrameLimits): number {
  return Math.max(limits.hello, limits.logits, limits.weights) + ENVELOPE_BYTES;
}
