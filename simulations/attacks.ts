/**
 * Simulated adversaries for `fedistill simulate --attack`: real clients over the real protocol (a socket.io
 * connection, hello, uploads the server validates like any other), whose data, reported counts or uploads are
 * malicious. Each attack is a data transform and/or the SDK's `outbound` hooks (ClientOptions.outbound), so an
 * attacker runs the same code as an honest client up to the moment it lies.
 *
 * Logits (ensemble, mutual, online) and their FedAvg counterpart (weights):
 * - `confident-wrong`  logits: one-hot of magnitude CONFIDENT_LOGIT on a wrong class per row, the most any single row
 *                      can say: (its own model's prediction + s) mod c, with a shift s ∈ [1, c) of its own.
 *                      weights: trained on wrong labels (y → (y + s) mod c) and the update boosted,
 *                      g + BOOST·(w − g) (model replacement, Bhagoji et al. 2019).
 * - `label-flip`       an honest client in every respect but its private labels, y → c−1−y: it trains, reports
 *                      and uploads by the protocol (logits or weights alike).
 * - `random`           logits: N(0, RANDOM_LOGIT_STD²) per entry. weights: N(0, RANDOM_WEIGHT_STD²) per weight.
 * - `inflated-counts`  label-flipped training, and hello claims INFLATED_SAMPLES samples (the protocol's maximum)
 *                      with a class histogram scaled to match: the weight the `weighted` aggregator and FedAvg give
 *                      to self-reported counts is what is tested.
 * - `collude`          the attackers agree, without any channel besides what the server hands everyone, on the same
 *                      wrong answer. logits: one-hot CONFIDENT_LOGIT on π(argmax of the reference) for every row,
 *                      where the reference is the student the round hands out (its predictions on the round's rows),
 *                      the student's probabilities (mutual) or the consensus soft labels (FedMD), and π(j) = (j + s)
 *                      mod c a fixed shift s ∈ [1, c) drawn from the seed, so every colluder names the same class.
 *                      weights: the same update from every colluder, g − BOOST·(g − g_prev), i.e. the global model's
 *                      last step reversed and boosted (g_prev: the global of the colluders' previous round; in their
 *                      first round, g plus noise drawn from the shared seed, of each tensor's RMS).
 * - `absent`           the reference, not an attack: those clients do not take part at all (simulate starts only the
 *                      others), so the honest clients alone show what the federation can reach without the attackers.
 * - `free-ride`        no contribution of its own: logits echo what the round hands out (the student's logits, the
 *                      student's probabilities, the consensus; uniform where none covers a row); weights return the
 *                      received global model unchanged. (It still runs the SDK's local step; the upload ignores it.)
 */
import type * as tf from '@tensorflow/tfjs';
import type { OutboundTransforms, ReportedCounts } from '../client/client.ts';
import type { Dataset } from '../shared/data/dataset.ts';
import { Rng } from '../shared/data/rng.ts';
import { buildModel, type ModelKind } from '../shared/models/builders.ts';
import { predictLogits } from '../shared/models/training.ts';
import { applyWireWeights } from '../shared/models/wire.ts';
import type { RoundMsg, WireTensor } from '../shared/protocol/messages.ts';
import { decodeWeights } from '../shared/models/weight-codec.ts';
import { ATTACK_KINDS, type AttackKind } from '../shared/settings/simulate.ts';
import { decodeMatrix } from '../shared/tensor/logit-codec.ts';
import { MAX_SAMPLE_COUNT } from '../shared/protocol/schemas.ts';

export { ATTACK_KINDS, type AttackKind };

/** A one-hot logit this large is a probability of 1 − 1e-43 after softmax: as confident as a row can be. */
export const CONFIDENT_LOGIT = 100;
/** Random logits: std 20 makes nearly every row a confident, random class. */
export const RANDOM_LOGIT_STD = 20;
/** Random weights: std 1 is about 20× the Glorot scale of the 784-input first layer. */
export const RANDOM_WEIGHT_STD = 1;
/** Boost of a malicious FedAvg update: with 10 clients it outweighs the other nine together. */
export const BOOST = 10;
/** The most samples a hello may claim (the protocol's bound on numSamples and each class count). */
export const INFLATED_SAMPLES = MAX_SAMPLE_COUNT;

/** What a worker needs to turn one of its clients into an attacker (plain data: it crosses the IPC channel). */
export interface AttackSpec {
  kind: AttackKind;
  /** The simulation's seed: colluders derive their shared choices from it alone. */
  seed: number;
}

/** An attacker's changes to an honest client: its private data (labels) and what it tells the server. */
export interface Attacker {
  data: (d: Dataset) => Dataset;
  outbound: OutboundTransforms;
}

/**
 * The attackers among `clients`: round(fraction × clients), at least one, chosen by a seeded shuffle (the same seed
 * picks the same clients, so the attack-free baseline runs the very same honest clients).
 */
export function chooseAttackers(clients: number, fraction: number, seed: number): number[] {
  if (!(fraction > 0 && fraction <= 1)) throw new RangeError(`attack fraction must be in (0, 1], got ${fraction}`);
  const k = Math.min(clients, Math.max(1, Math.round(fraction * clients)));
  const rng = new Rng(`attackers/${seed}`);
  const order = Array.from({ length: clients }, (_, i) => i);
  for (let i = clients - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order.slice(0, k).sort((a, b) => a - b);
}

/** The client with id `clientId` as an attacker of this kind. */
export function makeAttacker(spec: AttackSpec, clientId: string): Attacker {
  if (!ATTACK_KINDS.includes(spec.kind)) throw new Error(`unknown attack '${spec.kind}' (one of ${ATTACK_KINDS.join(', ')})`);
  const own = new Rng(`attack/${spec.kind}/${spec.seed}/${clientId}`);
  const honestData = (d: Dataset) => d;
  switch (spec.kind) {
    case 'absent':
      throw new Error("'absent' clients are not started (simulate leaves them out): there is no attacker to make");
    case 'confident-wrong': {
      // A shift of its own, s ∈ [1, c): systematic (the same wrong class for the same prediction, round after round),
      // which is what moves a student; a different one per attacker (they do not collude).
      const shifts = new Map<number, number>();
      const shiftOf = (c: number) => shifts.get(c) ?? (shifts.set(c, 1 + new Rng(`attack/${spec.seed}/${clientId}/shift`).int(c - 1)), shifts.get(c)!);
      return {
        // FedAvg's counterpart learns wrong labels; the logits variant overwrites its upload anyway.
        data: (d) => relabel(d, (y, c) => (y + shiftOf(c)) % c),
        outbound: {
          upload: (draft, ctx) => {
            if (draft.task === 'weights') return { ...draft, weights: boost(received(ctx.round), draft.weights, BOOST) };
            const { logits, numClasses: c } = draft;
            return { ...draft, logits: oneHot(argmaxRows(logits, c), c, (j) => (j + shiftOf(c)) % c) };
          },
        },
      };
    }
    case 'label-flip':
      return { data: flipLabels, outbound: {} };
    case 'random':
      return {
        data: honestData,
        outbound: {
          upload: (draft) =>
            draft.task === 'logits'
              ? { ...draft, logits: Float32Array.from(draft.logits, () => own.normal(0, RANDOM_LOGIT_STD)) }
              : { ...draft, weights: draft.weights.map((w) => ({ ...w, data: Float32Array.from(w.data, () => own.normal(0, RANDOM_WEIGHT_STD)) })) },
        },
      };
    case 'inflated-counts':
      return {
        data: flipLabels,
        outbound: {
          counts: inflate,
          upload: (draft) => (draft.task === 'weights' ? { ...draft, numSamples: INFLATED_SAMPLES } : draft),
        },
      };
    case 'collude': {
      let previousGlobal: WireTensor[] | null = null;
      return {
        data: honestData,
        outbound: {
          upload: async (draft, ctx) => {
            if (draft.task === 'weights') {
              const g = received(ctx.round);
              // Every colluder sees the same g each round, so each computes the same update.
              const weights = previousGlobal ? boost(g, previousGlobal, BOOST) : g.map((w) => ({ ...w, data: jitter(w.data, sharedRound(spec, ctx.round.round)) }));
              previousGlobal = g.map((w) => ({ ...w, data: w.data.slice() }));
              return { ...draft, weights };
            }
            const c = draft.numClasses;
            const shift = 1 + new Rng(`collude/${spec.seed}/shift`).int(c - 1);
            const ref = await referenceClasses(ctx.round, ctx.proxy, c);
            // A row nobody was handed a distribution for: a class drawn from the seed and the row, the same for all.
            const target = Array.from(ctx.round.indices!, (row, i) => ref[i] ?? new Rng(`collude/${spec.seed}/row/${row}`).int(c));
            return { ...draft, logits: oneHot(target, c, (j) => (j + shift) % c) };
          },
        },
      };
    }
    case 'free-ride':
      return {
        data: honestData,
        outbound: {
          upload: async (draft, ctx) => {
            if (draft.task === 'weights') return { ...draft, weights: received(ctx.round) };
            return { ...draft, logits: await echoedLogits(ctx.round, ctx.proxy, draft.numClasses) };
          },
        },
      };
  }
}

// ---------------------------------------------------------------------------------------------

function relabel(d: Dataset, f: (y: number, c: number) => number): Dataset {
  return { ...d, labels: Uint8Array.from(d.labels!, (y) => f(y, d.numClasses)) };
}

/** y → c−1−y (Fashion-MNIST: T-shirt ↔ ankle boot, trouser ↔ bag, …): a fixed, dense confusion. */
function flipLabels(d: Dataset): Dataset {
  return relabel(d, (y, c) => c - 1 - y);
}

/** The protocol's maximum sample count, and the histogram scaled to it (so the two agree). */
function inflate(actual: ReportedCounts): ReportedCounts {
  const total = actual.classCounts?.reduce((a, b) => a + b, 0) ?? 0;
  const classCounts = actual.classCounts?.map((n) => (total > 0 ? Math.floor((n / total) * INFLATED_SAMPLES) : 0));
  return { numSamples: INFLATED_SAMPLES, classCounts };
}

function argmaxRows(values: Float32Array, c: number): number[] {
  const out: number[] = [];
  for (let base = 0; base < values.length; base += c) {
    let best = 0;
    for (let j = 1; j < c; j++) if (values[base + j] > values[base + best]) best = j;
    out.push(best);
  }
  return out;
}

/** Rows of CONFIDENT_LOGIT on class to(ref[i]), 0 elsewhere. */
function oneHot(ref: number[], c: number, to: (j: number) => number): Float32Array {
  const out = new Float32Array(ref.length * c);
  ref.forEach((j, i) => (out[i * c + to(j)] = CONFIDENT_LOGIT));
  return out;
}

/** The global weights a FedAvg round handed out (a copy, so a transform never aliases the round message). */
function received(round: RoundMsg): WireTensor[] {
  if (!round.model) throw new Error(`round ${round.round} handed out no model to attack with`);
  return decodeWeights(round.model.weights).map((w) => ({ ...w, data: Float32Array.from(w.data) }));
}

/** from + k·(to − from), tensor by tensor. */
function boost(from: WireTensor[], to: WireTensor[], k: number): WireTensor[] {
  return from.map((w, i) => ({ ...w, data: Float32Array.from(w.data, (g, j) => g + k * (to[i].data[j] - g)) }));
}

function sharedRound(spec: AttackSpec, round: number): Rng {
  return new Rng(`collude/${spec.seed}/round/${round}`);
}

/** x + N(0, rms(x)²) per value (rms floored at 0.01 so a zero-initialised bias moves too). */
function jitter(x: Float32Array, rng: Rng): Float32Array {
  let s = 0;
  for (const v of x) s += v * v;
  const rms = Math.max(0.01, Math.sqrt(s / Math.max(1, x.length)));
  return Float32Array.from(x, (v) => v + rng.normal(0, rms));
}

const studentCopies = new Map<string, tf.LayersModel>();

/** The handed-out student's logits on the round's rows, or null when the round hands out no student. */
async function studentLogits(round: RoundMsg, proxy: Dataset): Promise<Float32Array | null> {
  if (!round.model || !round.indices) return null;
  const kind: ModelKind = round.model.kind;
  const key = `${kind}/${proxy.shape.join('x')}/${proxy.numClasses}`;
  let m = studentCopies.get(key);
  if (!m) studentCopies.set(key, (m = buildModel({ kind, inputShape: proxy.shape, numClasses: proxy.numClasses })));
  applyWireWeights(m, round.model.weights);
  return predictLogits(m, proxy, round.indices);
}

/**
 * Per row of the round, the distribution the round hands everyone (null where it hands out none for that row): the
 * student's softmax, the student's probabilities (mutual), or the consensus soft labels (FedMD, on its own rows).
 */
async function handedOut(round: RoundMsg, proxy: Dataset, c: number): Promise<(Float32Array | null)[]> {
  const rows = Array.from(round.indices ?? []);
  const z = await studentLogits(round, proxy);
  if (z) return rows.map((_, i) => softmax(z.subarray(i * c, (i + 1) * c)));
  if (round.mutual) {
    const p = decodeMatrix(round.mutual.probs);
    return rows.map((_, i) => p.slice(i * c, (i + 1) * c));
  }
  if (round.consensus) {
    const p = decodeMatrix(round.consensus.probs);
    const at = new Map(Array.from(round.consensus.indices!, (row, k) => [row, k] as const));
    return rows.map((row) => (at.has(row) ? p.slice(at.get(row)! * c, (at.get(row)! + 1) * c) : null));
  }
  return rows.map(() => null);
}

/** argmax of handedOut per row (undefined where there is none). */
async function referenceClasses(round: RoundMsg, proxy: Dataset, c: number): Promise<(number | undefined)[]> {
  return (await handedOut(round, proxy, c)).map((p) => (p ? argmaxRows(p, c)[0] : undefined));
}

/** Logits whose softmax is what the round handed out (log p; a missing row is uniform, all zeros). */
async function echoedLogits(round: RoundMsg, proxy: Dataset, c: number): Promise<Float32Array> {
  const z = await studentLogits(round, proxy);
  if (z) return z;
  const dists = await handedOut(round, proxy, c);
  const out = new Float32Array(dists.length * c);
  // log of a probability floored at 1e-12: finite, and a softmax of it gives the distribution back.
  dists.forEach((p, i) => p?.forEach((v, j) => (out[i * c + j] = Math.log(Math.max(v, 1e-12)))));
  return out;
}

function softmax(z: Float32Array): Float32Array {
  const m = Math.max(...z);
  const e = Float32Array.from(z, (v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

