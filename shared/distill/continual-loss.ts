import * as tf from '@tensorflow/tfjs';
import { kdLoss } from './kd-loss.ts';

/**
 * The server's distillation loss in continual rounds:
 *
 *   loss = T² · Σ_i w_i KL( p_teacher(i) ‖ softmax(z(i)/T) ) / Σ_i w_i   +   λ · T² · mean_i KL( p_prev(i) ‖ softmax(z(i)/T) )
 *
 * The second term distills against the previous student (its probabilities at T on the same proxy rows, taken before
 * this round's update): when the clients' data moves to new classes or a new distribution, their teachers stop
 * knowing the old ones, and this term keeps what the student already knew (LwF-style, Li & Hoiem 2017). λ = 0 is plain KD.
 */
export function continualDistillLoss(
  studentLogits: tf.Tensor2D,
  teacherProbs: tf.Tensor2D,
  previousProbs: tf.Tensor2D | null,
  opts: { temperature: number; lambda: number; sampleWeights?: tf.Tensor1D },
): tf.Scalar {
  if (!(Number.isFinite(opts.lambda) && opts.lambda >= 0)) throw new Error(`continualDistillLoss: lambda must be ≥ 0, got ${opts.lambda}`);
  return tf.tidy(() => {
    const kd = kdLoss(studentLogits, teacherProbs, { temperature: opts.temperature, alpha: 1, sampleWeights: opts.sampleWeights });
    if (!previousProbs || opts.lambda === 0) return kd;
    return tf.add(kd, tf.mul(kdLoss(studentLogits, previousProbs, { temperature: opts.temperature, alpha: 1 }), opts.lambda)) as tf.Scalar;
  });
}

// The temperature schedule and re-tempering of stored labels live in temperature.ts (every strategy uses them).
