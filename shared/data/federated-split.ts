import type { Dataset } from './dataset.ts';
import { dirichletPartition, iidPartition, shardPartition } from './partition.ts';
import { Rng } from './rng.ts';

export type PartitionKind = 'dirichlet' | 'shards' | 'iid';

export interface FederatedSplit {
  /** Rows of the training set held out as the public proxy set (the server drops their labels). */
  proxy: Uint32Array;
  /** Rows of the training set private to each client. Disjoint from each other and from the proxy rows. */
  clients: Uint32Array[];
}

/** Hold a proxy set out of the training set, then split the rest among clients (non-IID by default). */
export function splitForFederation(
  train: Dataset,
  o: { proxySize: number; numClients: number; partition: PartitionKind; alpha: number; shardsPerClient: number; seed: number },
): FederatedSplit {
  if (o.proxySize >= train.count) throw new Error(`proxy size ${o.proxySize} must be smaller than the training set (${train.count})`);
  const order = splitOrder(train.count, o.seed);
  const proxy = Uint32Array.from(order.slice(0, o.proxySize)).sort();
  const rest = order.slice(o.proxySize);
  const restLabels = Uint8Array.from(rest, (i) => train.labels![i]);
  const seed = `partition/${o.seed}`;
  const parts =
    o.partition === 'dirichlet'
      ? dirichletPartition(restLabels, o.numClients, o.alpha, seed, { numClasses: train.numClasses })
      : o.partition === 'shards'
        ? shardPartition(restLabels, o.numClients, o.shardsPerClient, seed)
        : iidPartition(rest.length, o.numClients, seed);
  return { proxy, clients: parts.map((p) => Uint32Array.from(p, (j) => rest[j])) };
}

function splitOrder(count: number, seed: number): number[] {
  return new Rng(`split/${seed}`).permutation(count);
}

/** The proxy rows splitForFederation holds out for the same seed: a standalone server and a simulation agree. */
export function proxyRows(count: number, proxySize: number, seed: number): Uint32Array {
  return Uint32Array.from(splitOrder(count, seed).slice(0, proxySize)).sort();
}
