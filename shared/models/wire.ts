import * as tf from '@tensorflow/tfjs';
import type { EncodedTensor, WireModel, WireTensor } from '../protocol/messages.ts';
import type { ModelKind } from './builders.ts';
import { decodeTensor, encodeWeights, tensorPayloadBytes, type WeightCodecName } from './weight-codec.ts';

/** An fp32 model snapshot: what checkpoints, exports and FedAvg carry (lossless). */
export interface Fp32Model extends WireModel {
  weights: WireTensor[];
}

/** Snapshot a model's weights for the wire or a checkpoint (copies the data off the backend), fp32. */
export function modelToWire(model: tf.LayersModel, kind: ModelKind, version: number): Fp32Model {
  return { kind, version, weights: weightsToWire(model) };
}

/** The same snapshot with its tensors encoded by `codec` (shared/models/weight-codec.ts): for the downlink only. */
export function encodeModel(m: Fp32Model, codec: WeightCodecName): WireModel {
  return codec === 'fp32' ? m : { ...m, weights: encodeWeights(m.weights, codec) };
}

export function weightsToWire(model: tf.LayersModel): WireTensor[] {
  return model.weights.map((w) => {
    const v = w.read();
    return { name: w.originalName, shape: v.shape.slice(), data: v.dataSync() as Float32Array };
  });
}

/**
 * Load wire weights into a model of the same architecture, decoding fp16/int8 tensors first; refuses a shape mismatch
 * rather than guessing.
 */
export function applyWireWeights(model: tf.LayersModel, weights: readonly EncodedTensor[]): void {
  const vars = model.weights;
  if (vars.length !== weights.length) throw new Error(`model has ${vars.length} weight tensors, got ${weights.length}`);
  weights.forEach((w, i) => {
    const expect = vars[i].shape;
    if (w.shape.length !== expect.length || w.shape.some((d, j) => d !== expect[j])) {
      throw new Error(`weight ${i} (${vars[i].originalName}) has shape [${expect}], got [${w.shape}]`);
    }
  });
  const tensors = weights.map((w) => {
    const t = decodeTensor(w);
    return tf.tensor(t.data, t.shape);
  });
  model.setWeights(tensors);
  tf.dispose(tensors);
}

/** Payload bytes of a list of tensors as they travel (fp32 values, or encoded bytes and steps). */
export function wireBytes(weights: readonly EncodedTensor[]): number {
  return weights.reduce((n, w) => n + tensorPayloadBytes(w), 0);
}
