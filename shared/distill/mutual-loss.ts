import * as tf from '@tensorflow/tfjs';
import { kdLoss } from './kd-loss.ts';

/**
 * The client's objective in federated mutual learning (Deep Mutual Learning, Zhang et al. 2018; FML, Shen et al. 2020):
 *
 *   loss = CE(y, softmax(z_private + logPrior))  +  β · T² · mean_i KL( p_student(i) ‖ softmax(z_proxy(i) / T) )
 *
 * The first term learns from the private batch, the second pulls the client's predictions on public proxy rows toward
 * the server student's soft labels (already at T). Both directions of DML then close over the wire: the student learns
 * from the clients' proxy logits, the clients from the student's. `logPrior` is the optional logit adjustment.
 */
export function mutualLoss(
  privateLogits: tf.Tensor2D,
  oneHot: tf.Tensor2D,
  proxyLogits: tf.Tensor2D,
  studentProbs: tf.Tensor2D,
  opts: { beta: number; temperature: number; logPrior?: tf.Tensor1D },
): tf.Scalar {
  if (!(Number.isFinite(opts.beta) && opts.beta >= 0)) throw new Error(`mutualLoss: beta must be ≥ 0, got ${opts.beta}`);
  return tf.tidy(() => {
    const ce = tf.losses.softmaxCrossEntropy(oneHot, opts.logPrior ? tf.add(privateLogits, opts.logPrior) : privateLogits) as tf.Scalar;
    if (opts.beta === 0) return ce;
    return tf.add(ce, tf.mul(kdLoss(proxyLogits, studentProbs, { temperature: opts.temperature, alpha: 1 }), opts.beta)) as tf.Scalar;
  });
}
