import * as tf from '@tensorflow/tfjs';

/**
 * Not-true distillation (FedNTD, Lee et al. NeurIPS 2022): T²·KL between the global model's and the local model's
 * softmax over the classes other than the sample's true one, averaged over the batch.
 * On skewed private data, plain CE makes a client forget what the global model knows about the classes it rarely
 * sees; keeping the not-true distribution close to the global one preserves that knowledge while the true-class
 * logit still learns from the local label.
 */
export function notTrueDistillation(localLogits: tf.Tensor2D, globalLogits: tf.Tensor2D, oneHot: tf.Tensor2D, temperature: number): tf.Scalar {
  return tf.tidy(() => {
    // Push the true class far down in both so it carries no probability mass: softmax over the rest.
    const mask = tf.mul(oneHot, -1e4);
    const logPl = tf.logSoftmax(tf.div(tf.add(localLogits, mask), temperature), -1);
    const logPg = tf.logSoftmax(tf.div(tf.add(globalLogits, mask), temperature), -1);
    const pg = tf.exp(logPg);
    const kl = tf.sum(tf.mul(pg, tf.sub(logPg, logPl)), -1);
    return tf.mul(tf.mean(kl), temperature * temperature) as tf.Scalar;
  });
}
