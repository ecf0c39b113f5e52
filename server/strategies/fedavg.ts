import * as tf from '@tensorflow/tfjs';
import type { Dataset } from '../../shared/data/dataset.ts';
import { buildModel, type ModelKind } from '../../shared/models/builders.ts';
import { applyWireWeights, modelToWire, weightsToWire } from '../../shared/models/wire.ts';
import type { ClientMsg, WireModel, WireTensor } from '../../shared/protocol/messages.ts';
import { ProtocolError } from '../../shared/protocol/validate.ts';
import { averageWeights } from '../../shared/distill/weight-averaging.ts';
import type { ServerConfig } from '../config.ts';
import { evaluateStudent, type AggregateReport, type EvalReport, type Participant, type RoundContext, type RoundTask, type Strategy, type Update } from './strategy.ts';

/**
 * The weight-sharing baseline (McMahan et al. 2017) over the same transport, for side-by-side accuracy and bytes.
 * --fedavg-aggregator picks how the clients' weights are combined (shared/distill/weight-averaging.ts): the default
 * coordinate-wise `trimmed-mean` ignores the extreme values of every weight (and self-reported counts entirely), so
 * the baseline is as hard to hijack as the robust teachers it is compared with.
 */
export class FedAvgStrategy implements Strategy {
  readonly name = 'fedavg';
  readonly model: tf.LayersModel;
  readonly modelKind: ModelKind;
  version = 0;

  constructor(private readonly cfg: ServerConfig, proxy: Dataset) {
    this.modelKind = cfg.student;
    this.model = buildModel({ kind: cfg.student, inputShape: proxy.shape, numClasses: proxy.numClasses, seed: cfg.seed });
  }

  /** Averaging weights needs one architecture. */
  eligible(p: Participant): boolean {
    return p.model === this.modelKind;
  }

  async configureRound(_ctx: RoundContext, participants: Participant[]): Promise<Map<string, RoundTask>> {
    const global = modelToWire(this.model, this.modelKind, this.version);
    const tasks = new Map<string, RoundTask>();
    for (const p of participants) {
      tasks.set(p.id, { task: 'weights', localEpochs: this.cfg.localEpochs, batchSize: this.cfg.batchSize, learningRate: this.cfg.learningRate, model: global });
    }
    return tasks;
  }

  acceptUpdate(_ctx: RoundContext, _p: Participant, msg: ClientMsg): WireTensor[] {
    if (msg.type !== 'weights') throw new ProtocolError('bad-message', `strategy '${this.name}' expects 'weights' this round, got '${msg.type}'`);
    const expect = this.model.weights;
    if (msg.weights.length !== expect.length) throw new ProtocolError('bad-shape', `expected ${expect.length} weight tensors, got ${msg.weights.length}`);
    msg.weights.forEach((w, i) => {
      if (w.shape.length !== expect[i].shape.length || w.shape.some((d, j) => d !== expect[i].shape[j])) {
        throw new ProtocolError('bad-shape', `weight ${i} must have shape [${expect[i].shape}], got [${w.shape}]`);
      }
    });
    return msg.weights;
  }

  async aggregate(_ctx: RoundContext, updates: Update[], tasks: Map<string, RoundTask>): Promise<AggregateReport> {
    const t0 = performance.now();
    const current = weightsToWire(this.model);
    // DP-FedAvg with central noise (each update holds 1/m of it): only the plain, equally weighted mean has all of it
    // (McMahan et al. 2018). With local noise every update is private alone: the configured rule is post-processing.
    const privacy = tasks.values().next().value?.privacy;
    const central = privacy !== undefined && privacy.mode !== undefined && privacy.mode !== 'local';
    const averaged = averageWeights(
      central ? 'mean' : this.cfg.fedavgAggregator,
      current.map((w) => w.data),
      updates.map((u) => (u.payload as WireTensor[]).map((w) => w.data)),
      central ? updates.map(() => 1) : updates.map((u) => u.numSamples),
      { trimFraction: this.cfg.trimFraction, maxShare: this.cfg.maxShare, claimFactor: this.cfg.claimFactor },
    );
    applyWireWeights(this.model, current.map((w, i) => ({ ...w, data: averaged[i] })));
    this.version++;
    return { seconds: (performance.now() - t0) / 1000 };
  }

  async evaluate(ctx: RoundContext): Promise<EvalReport> {
    return evaluateStudent(this.model, ctx);
  }

  async exportState(): Promise<{ version: number; model: WireModel }> {
    return { version: this.version, model: modelToWire(this.model, this.modelKind, this.version) };
  }

  async importState(raw: unknown): Promise<void> {
    const s = raw as { version: number; model: WireModel };
    applyWireWeights(this.model, s.model.weights);
    this.version = s.version;
  }
}
