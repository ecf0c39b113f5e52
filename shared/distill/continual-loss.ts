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

/** T(t) = T_max · exp(−k·t), floored at 1 (below 1 soft labels get sharper than the teachers' own): k = 0 is constant. */
export function scheduledTemperature(tMax: number, k: number, t: number): number {
  if (!(tMax > 0) || !(k >= 0)) throw new Error(`scheduledTemperature: need T_max > 0 and k ≥ 0, got ${tMax}, ${k}`);
  return k === 0 ? tMax : Math.max(1, tMax * Math.exp(-k * t));
}

/**
 * softmax(z/T_old)^(T_old/T_new), renormalised, is softmax(z/T_new): moves a stored probability row to another
 * temperature without its logits (teacher-bank labels made under an earlier point of the temperature schedule).
 */
export function retemper(p: ArrayLike<number>, power: number, out: Float32Array | Float64Array): void {
  let sum = 0;
  for (let j = 0; j < p.length; j++) sum += out[j] = p[j] > 0 ? p[j] ** power : 0;
  for (let j = 0; j < p.length; j++) out[j] = sum > 0 ? out[j] / sum : 1 / p.length;
}
