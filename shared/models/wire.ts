import * as tf from '@tensorflow/tfjs';
import type { WireModel, WireTensor } from '../protocol/messages.ts';
import type { ModelKind } from './builders.ts';

/** Snapshot a model's weights for the wire or a checkpoint (copies the data off the backend). */
export function modelToWire(model: tf.LayersModel, kind: ModelKind, version: number): WireModel {
  return { kind, version, weights: weightsToWire(model) };
}

export function weightsToWire(model: tf.LayersModel): WireTensor[] {
  return model.weights.map((w) => {
    const v = w.read();
    return { name: w.originalName, shape: v.shape.slice(), data: v.dataSync() as Float32Array };
  });
}

/** Load wire weights into a model of the same architecture; refuses a shape mismatch rather than guessing. */
export function applyWireWeights(model: tf.LayersModel, weights: WireTensor[]): void {
  const vars = model.weights;
  if (vars.length !== weights.length) throw new Error(`model has ${vars.length} weight tensors, got ${weights.length}`);
  const tensors = weights.map((w, i) => {
    const expect = vars[i].shape;
    if (w.shape.length !== expect.length || w.shape.some((d, j) => d !== expect[j])) {
      throw new Error(`weight ${i} (${vars[i].originalName}) has shape [${expect}], got [${w.shape}]`);
    }
    return tf.tensor(w.data, w.shape);
  });
  model.setWeights(tensors);
  tf.dispose(tensors);
}

export function wireBytes(weights: WireTensor[]): number {
  return weights.reduce((n, w) => n + w.data.byteLength, 0);
}
