/**
 * A distillation worker thread (server/strategies/parallel-distill.ts starts N − 1 of them): its own TensorFlow.js
 * backend, initialised with the main thread's choice, and a replica of the student. Each step message carries the
 * student's current weights and this thread's share of the batch; the reply is the gradient of the share's part of
 * the batch loss (flattened, transferred), its loss and the share's predicted classes. It never updates weights
 * itself: the main thread sums the shares' gradients and owns the one Adam optimizer.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../../shared/compute/backend.ts';
import { buildModel } from '../../shared/models/builders.ts';
import { flattenTensors, shareGradients, trainableVariables, writeWeights, type FromWorker, type ToWorker, type WorkerInit } from './parallel-distill.ts';

const port = parentPort;
if (!port) throw new Error('distill-worker.ts runs as a worker thread (server/strategies/parallel-distill.ts starts it)');
const init = workerData as WorkerInit;
const send = (m: FromWorker, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);

try {
  await initBackend({ prefer: init.backend, log: () => {} });
  const model = buildModel({ kind: init.kind, inputShape: init.inputShape, numClasses: init.numClasses });
  const vars = trainableVariables(model);
  const total = vars.reduce((n, v) => n + v.size, 0);
  port.on('message', (m: ToWorker) => {
    try {
      writeWeights(model, m.weights);
      const r = shareGradients(model, vars, m.share, init.inputShape, init.numClasses, m.scale);
      const grads = flattenTensors(r.grads, total);
      tf.dispose(r.grads);
      send({ type: 'grads', id: m.id, grads, loss: r.loss, argmax: r.argmax }, [grads.buffer as ArrayBuffer, r.argmax.buffer as ArrayBuffer]);
    } catch (e) {
      send({ type: 'error', id: m.id, message: (e as Error)?.message ?? String(e) });
    }
  });
  send({ type: 'ready', backend: tf.getBackend() });
} catch (e) {
  send({ type: 'error', message: `worker start failed: ${(e as Error)?.message ?? String(e)}` });
}
