import { subset } from '../../shared/data/dataset.ts';
import { softmaxRows } from '../../shared/distill/aggregators.ts';
import { predictLogits } from '../../shared/models/training.ts';
import { encodeMatrix } from '../../shared/tensor/logit-codec.ts';
import { EnsembleStrategy } from './ensemble.ts';
import type { Participant, RoundContext, RoundTask } from './strategy.ts';

/**
 * Federated mutual learning (Deep Mutual Learning over the wire): the student and the clients teach each other.
 * Each round the server sends the student's soft labels on the round's proxy rows; a client keeps its own weights
 * (any architecture) and trains on CE(private) + β·T²·KL(p_student ‖ p_client) on those rows; its proxy logits then
 * teach the student exactly as in ensemble distillation (same aggregator, bank, previous-student term).
 * No weights travel in either direction: the downlink is n×classes soft labels instead of the student.
 */
export class MutualStrategy extends EnsembleStrategy {
  override readonly name: string = 'mutual';

  override async configureRound(ctx: RoundContext, participants: Participant[]): Promise<Map<string, RoundTask>> {
    const indices = this.proxyIndicesFor(ctx.round);
    const c = this.proxy.numClasses;
    const T = this.temperatureAt(ctx.round);
    // Round 1's student is untrained: its soft labels would only pull clients toward noise.
    const mutual =
      this.version > 0 && this.cfg.mutualBeta > 0
        ? { probs: encodeMatrix(softmaxRows(await predictLogits(this.model, subset(this.proxy, indices)), indices.length, c, T), indices.length, c, this.cfg.consensusCodec), temperature: T, beta: this.cfg.mutualBeta }
        : undefined;
    const tasks = new Map<string, RoundTask>();
    for (const p of participants) {
      tasks.set(p.id, {
        task: 'logits',
        indices,
        localEpochs: this.cfg.localEpochs,
        batchSize: this.cfg.batchSize,
        learningRate: this.cfg.learningRate,
        logitAdjust: this.cfg.logitAdjust,
        mutual,
        studentVersion: this.version,
      });
    }
    return tasks;
  }
}
