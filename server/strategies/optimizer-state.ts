import * as tf from '@tensorflow/tfjs';
import type { WireTensor } from '../../shared/protocol/messages.ts';

/** Adam's moments (and iteration count) for a checkpoint. tfjs restores them by position, not by name. */
export async function exportOptimizer(opt: tf.Optimizer): Promise<WireTensor[]> {
  const named = await opt.getWeights();
  return named.map((w) => ({ name: w.name, shape: w.tensor.shape.slice(), data: Float32Array.from(w.tensor.dataSync()) }));
}

export async function importOptimizer(opt: tf.Optimizer, ws: WireTensor[]): Promise<void> {
  if (ws.length === 0) return;
  await opt.setWeights(ws.map((w) => ({ name: w.name, tensor: tf.tensor(w.data, w.shape) })));
}
