import * as tf from '@tensorflow/tfjs';
import type { WireTensor } from '../../shared/protocol/messages.ts';

/** Adam's moments (and iteration count) for a checkpoint. tfjs restores them by position, not by name. */
export async function exportOptimizer(opt: tf.Optimizer): Promise<WireTensor[]> {
  const named = await opt.getWeights();
  const out = named.map((w) => ({ name: w.name, shape: w.tensor.shape.slice(), data: Float32Array.from(w.tensor.dataSync()) }));
  named[0]?.tensor.dispose(); // the iteration count is a fresh scalar; the moments are the optimizer's live variables
  return out;
}

export async function importOptimizer(opt: tf.Optimizer, ws: WireTensor[]): Promise<void> {
  if (ws.length === 0) return;
  const named = ws.map((w) => ({ name: w.name, tensor: tf.tensor(w.data, w.shape) }));
  await opt.setWeights(named); // copies into new variables
  tf.dispose(named.map((n) => n.tensor));
}
