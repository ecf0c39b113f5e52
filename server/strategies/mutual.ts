import { EnsembleStrategy } from './ensemble.ts';
import { logitsTask } from './logits-task.ts';
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
    this.distillerNow().warm((m) => ctx.log.warn(m)); // the student's distillation threads start while clients train
    // The fixed shuffle's windows, not --uncertain-rows: the student's soft labels teach the clients here, and the rows
    // where it is least sure are where they would teach worst (not measured for mutual).
    const indices = this.proxyIndicesFor(ctx.round);
    const T = this.temperatureAt(ctx.round);
    // Round 1's student is untrained: its soft labels would only pull clients toward noise.
    const mutual =
      this.version > 0 && this.cfg.mutualBeta > 0
        ? { probs: await this.student.softLabels(indices, T, this.cfg.consensusCodec), temperature: T, beta: this.cfg.mutualBeta }
        : undefined;
    return new Map(participants.map((p) => [p.id, { ...logitsTask(this.cfg, indices), mutual, studentVersion: this.version }]));
  }
}
