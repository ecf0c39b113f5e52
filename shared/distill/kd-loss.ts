import * as tf from '@tensorflow/tfjs';

/**
 * Knowledge-distillation loss (Hinton et al. 2015), differentiable w.r.t. the student logits only
 * (the teacher probabilities are constants).
 *
 *   KD  = T² · mean_i KL( p_t(i) ‖ softmax(z_s(i) / T) )          (KL summed over classes, nats)
 *   CE  = mean_i −log softmax(z_s(i))[y_i]                          (at temperature 1)
 *   loss = α · KD + (1 − α) · CE   when `labels` are given,
 *   loss = KD                      (weight 1, α ignored) when they are not — on an unlabeled proxy set
 *                                  the distillation term is the whole signal.
 *
 * The T² factor keeps KD gradients on the same scale as CE as T changes. KL is safe at p_t = 0
 * (0·log 0 := 0). Teacher rows are used as given (they should sum to 1).
 */
export interface KdLossOptions {
  /** Softmax temperature T > 0 applied to the student (the teacher probabilities are already at T). */
  temperature: number;
  /** Weight α ∈ [0, 1] of the KD term when labels are given. */
  alpha: number;
  /** int32 class ids, one per row. */
  labels?: tf.Tensor1D;
  /** Non-negative weight per row for the KD term: KD = T²·Σ w_i KL_i / Σ w_i (e.g. to discount stale teacher labels). */
  sampleWeights?: tf.Tensor1D;
}

/** Per-row KL(p ‖ softmax(logitsQ / T)) in nats, as a Tensor1D of length batch. Safe at p = 0. */
export function klDivergence(p: tf.Tensor2D, logitsQ: tf.Tensor2D, T = 1): tf.Tensor1D {
  if (!(Number.isFinite(T) && T > 0)) throw new Error(`klDivergence: temperature must be > 0, got ${T}`);
  if (p.rank !== 2 || logitsQ.rank !== 2 || p.shape[0] !== logitsQ.shape[0] || p.shape[1] !== logitsQ.shape[1]) {
    throw new Error(`klDivergence: shape mismatch ${JSON.stringify(p.shape)} vs ${JSON.stringify(logitsQ.shape)}`);
  }
  return tf.tidy(() => {
    const pf = p.toFloat();
    const logQ = tf.logSoftmax(T === 1 ? logitsQ : tf.div(logitsQ, T), -1);
    // p·log p with 0·log 0 = 0: the where() keeps log's argument positive and the value exactly 0 at p = 0.
    const positive = tf.greater(pf, 0);
    const safeP = tf.where(positive, pf, tf.onesLike(pf));
    const pLogP = tf.where(positive, tf.mul(pf, tf.log(safeP)), tf.zerosLike(pf));
    return tf.sum(tf.sub(pLogP, tf.mul(pf, logQ)), -1) as tf.Tensor1D;
  });
}

/** α·T²·KL(p_t ‖ softmax(z_s/T)) + (1−α)·CE(labels, softmax(z_s)); T²·KL alone without labels. See the module doc. */
export function kdLoss(studentLogits: tf.Tensor2D, teacherProbs: tf.Tensor2D, opts: KdLossOptions): tf.Scalar {
  const { temperature: T, alpha, labels } = opts;
  if (!(Number.isFinite(T) && T > 0)) throw new Error(`kdLoss: temperature must be > 0, got ${T}`);
  if (!(Number.isFinite(alpha) && alpha >= 0 && alpha <= 1)) throw new Error(`kdLoss: alpha must be in [0, 1], got ${alpha}`);
  if (studentLogits.rank !== 2 || teacherProbs.rank !== 2 ||
      studentLogits.shape[0] !== teacherProbs.shape[0] || studentLogits.shape[1] !== teacherProbs.shape[1]) {
    throw new Error(`kdLoss: shape mismatch ${JSON.stringify(studentLogits.shape)} vs ${JSON.stringify(teacherProbs.shape)}`);
  }
  const [batch, c] = studentLogits.shape;
  if (batch === 0) throw new Error('kdLoss: empty batch');
  if (labels && (labels.rank !== 1 || labels.shape[0] !== batch)) {
    throw new Error(`kdLoss: labels shape ${JSON.stringify(labels.shape)} does not match batch ${batch}`);
  }
  const w = opts.sampleWeights;
  if (w && (w.rank !== 1 || w.shape[0] !== batch)) throw new Error(`kdLoss: sampleWeights shape ${JSON.stringify(w.shape)} does not match batch ${batch}`);
  return tf.tidy(() => {
    const kl = klDivergence(teacherProbs, studentLogits, T);
    const meanKl = w ? tf.div(tf.sum(tf.mul(kl, w)), tf.maximum(tf.sum(w), 1e-12)) : tf.mean(kl);
    const kd = tf.mul(meanKl, T * T);
    if (!labels) return kd as tf.Scalar;
    const ids = labels.dtype === 'int32' ? labels : labels.toInt();
    const oneHot = tf.oneHot(ids, c).toFloat();
    const ce = tf.neg(tf.mean(tf.sum(tf.mul(oneHot, tf.logSoftmax(studentLogits, -1)), -1)));
    return tf.add(tf.mul(kd, alpha), tf.mul(ce, 1 - alpha)) as tf.Scalar;
  });
}
