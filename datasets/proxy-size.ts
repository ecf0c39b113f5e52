/**
 * How many training rows to hold out as the public proxy set, and what to do when the training set is smaller than
 * the default assumes (the committed 6,000-image Fashion-MNIST subset, or a user's own small data set).
 *
 * The default is 10,000 rows of Fashion-MNIST's 60,000 — a sixth. On a smaller training set of M rows the default
 * becomes round(M / 6) (1,000 on the subset), said loudly; a size the user asked for is never changed: one that does
 * not fit is refused.
 */
import { UsageError } from '../shared/settings/types.ts';

export const DEFAULT_PROXY_SIZE = 10000;
/** The default's share of the training set: 10,000 of Fashion-MNIST's 60,000. */
export const DEFAULT_PROXY_FRACTION = 1 / 6;

/** The default proxy size for a training set of `trainCount` rows: 10,000, or a sixth of a smaller set. */
export function defaultProxySize(trainCount: number): number {
  return Math.max(1, Math.min(DEFAULT_PROXY_SIZE, Math.round(trainCount * DEFAULT_PROXY_FRACTION)));
}

export interface FitProxyOptions {
  /** The user's value, or undefined for the default. */
  requested?: number;
  trainCount: number;
  /** The training set is the committed subset (the message says so). */
  isSubset: boolean;
  log: (m: string) => void;
  /** The flag the size came from (e.g. '--proxy-size'): a refusal then names it and is a usage error (exit 2). */
  flag?: string;
}

/** The proxy size to use; throws when an explicit one does not fit, logs when the default was scaled. */
export function fitProxySize(o: FitProxyOptions): number {
  const subsetNote = o.isSubset
    ? ` — this is the committed Fashion-MNIST SUBSET (${o.trainCount} training images), used because the full set was not found`
    : '';
  const refuse = (m: string) => (o.flag ? new UsageError(`${o.flag}: ${m}`) : new Error(m));
  if (o.requested !== undefined) {
    if (!Number.isInteger(o.requested) || o.requested < 1) throw refuse(`proxy size must be a positive integer, got ${o.requested}`);
    if (o.requested >= o.trainCount) throw refuse(`proxy size ${o.requested} must be smaller than the training set (${o.trainCount})${subsetNote}`);
    return o.requested;
  }
  if (o.trainCount < 2) throw new Error(`a training set of ${o.trainCount} row(s) leaves nothing to hold out as a proxy set`);
  const size = Math.min(defaultProxySize(o.trainCount), o.trainCount - 1);
  if (size !== DEFAULT_PROXY_SIZE) {
    o.log(
      `data: ${o.isSubset ? 'SUBSET: ' : ''}proxy size scaled ${DEFAULT_PROXY_SIZE} → ${size} ` +
        `(a sixth of the ${o.trainCount} training images, as ${DEFAULT_PROXY_SIZE} is of Fashion-MNIST's 60000)`,
    );
  }
  return size;
}
