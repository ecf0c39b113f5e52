import * as tf from '@tensorflow/tfjs';

import type { ModelKind } from '../protocol/model-kinds.ts';
// The list of architectures is part of the wire protocol; re-exported here for model code.
export { MODEL_KINDS, type ModelKind } from '../protocol/model-kinds.ts';

export interface ModelSpec {
  kind: ModelKind;
  inputShape: [number, number, number];
  numClasses: number;
  /** Seed for the initial weights, so a simulation is reproducible. */
  seed?: number;
}

/** Models output raw logits (no softmax): every loss and every message works on logits. */
export function buildModel(spec: ModelSpec): tf.LayersModel {
  const seed = spec.seed ?? 1;
  let s = seed;
  const init = () => tf.initializers.glorotUniform({ seed: s++ });
  const model = tf.sequential({ name: `${spec.kind}` });
  if (spec.kind === 'mlp') {
    model.add(tf.layers.flatten({ inputShape: spec.inputShape }));
    model.add(tf.layers.dense({ units: 256, activation: 'relu', kernelInitializer: init() }));
    model.add(tf.layers.dense({ units: 128, activation: 'relu', kernelInitializer: init() }));
    model.add(tf.layers.dense({ units: spec.numClasses, kernelInitializer: init() }));
  } else {
    // LeNet-like: conv16(3x3)-relu-maxpool-conv32(3x3)-relu-maxpool-dense64-dense10 (the shape `npm run bench` measures).
    model.add(tf.layers.conv2d({ inputShape: spec.inputShape, filters: 16, kernelSize: 3, activation: 'relu', kernelInitializer: init() }));
    model.add(tf.layers.maxPooling2d({ poolSize: 2, strides: 2 }));
    model.add(tf.layers.conv2d({ filters: 32, kernelSize: 3, activation: 'relu', kernelInitializer: init() }));
    model.add(tf.layers.maxPooling2d({ poolSize: 2, strides: 2 }));
    model.add(tf.layers.flatten());
    model.add(tf.layers.dense({ units: 64, activation: 'relu', kernelInitializer: init() }));
    model.add(tf.layers.dense({ units: spec.numClasses, kernelInitializer: init() }));
  }
  return model;
}

export function countParams(model: tf.LayersModel): number {
  return model.getWeights().reduce((n, w) => n + w.size, 0);
}
