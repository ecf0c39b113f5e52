import type { ClientMsg } from '../../shared/protocol/messages.ts';
import { ProtocolError, assertAllFinite } from '../../shared/protocol/validate.ts';
import { decodeMatrix } from '../../shared/tensor/logit-codec.ts';
import type { ServerConfig } from '../config.ts';
import type { RoundTask } from './strategy.ts';

/** The task every logit-distillation strategy starts from: train locally, then answer with logits on these proxy rows. */
export function logitsTask(cfg: ServerConfig, indices: Uint32Array): RoundTask {
  return { task: 'logits', indices, localEpochs: cfg.localEpochs, batchSize: cfg.batchSize, learningRate: cfg.learningRate, logitAdjust: cfg.logitAdjust };
}

/** The checks every logit-distillation strategy makes on an answer: type, proxy set, shape against the task, finiteness. */
export function acceptLogits(strategy: string, msg: ClientMsg, task: RoundTask, proxyHash: string, numClasses: number): Float32Array {
  if (msg.type !== 'logits') throw new ProtocolError('bad-message', `strategy '${strategy}' expects 'logits', got '${msg.type}'`);
  if (msg.proxyHash !== proxyHash) throw new ProtocolError('wrong-proxy', `logits were computed on proxy set ${msg.proxyHash}; this server's is ${proxyHash}`);
  const rows = task.indices!.length;
  if (msg.logits.rows !== rows || msg.logits.cols !== numClasses) {
    throw new ProtocolError('bad-shape', `logits must be ${rows}×${numClasses} (the task's proxy rows × classes), got ${msg.logits.rows}×${msg.logits.cols}`);
  }
  // With DP the task asks for noisy probabilities (clipped and noised on the client); without, for logits.
  const want = task.privacy ? 'probs' : 'logits';
  if ((msg.values ?? 'logits') !== want) {
    throw new ProtocolError('bad-message', task.privacy ? "this round has 'privacy': upload the noisy probabilities with values: 'probs'" : "this round has no 'privacy': upload logits (values: 'logits')");
  }
  const values = decodeMatrix(msg.logits);
  assertAllFinite(values, 'logits');
  return values;
}
