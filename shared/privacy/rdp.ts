import { logAdd, logBinomial, logErfc, logSub } from './special-functions.ts';

/**
 * Rényi-DP accountant for the (sampled) Gaussian mechanism, a port of Google's `dp_accounting`
 * (`dp_accounting/rdp/rdp_privacy_accountant.py`, the successor of TensorFlow Privacy's `analysis/rdp_accountant.py`;
 * same orders, same series, same conversion), so its numbers can be checked against that library's published ones.
 *
 * The mechanism: a release adds N(0, (z·Δ)²) to a function of L2 sensitivity Δ; with Poisson sampling at rate q the
 * record takes part with probability q. Its RDP at order α is (Mironov, Talwar & Zhang 2019, "Rényi Differential
 * Privacy of the Sampled Gaussian Mechanism")
 *     ε(α) = ln A_α / (α − 1),   A_α = E_{x∼N(0,z²)} [((1 − q) + q·e^((2x − 1)/(2z²)))^α],
 * with the closed forms: q = 1 → ε(α) = α / (2z²) (Mironov 2017, Prop. 7); q = 0 → 0; z = 0 → ∞.
 * For integer α the binomial expansion is exact: A_α = Σ_{i=0..α} C(α,i) q^i (1−q)^(α−i) e^((i² − i)/(2z²)).
 * For fractional α the library's two-sided series (`_compute_log_a_frac`), split at z₀ = z² ln(1/q − 1) + ½.
 * Everything is in log space, so nothing overflows for large orders or underflows for tiny q.
 * RDP composes by addition, order by order: k releases of (q, z) cost k·ε(α).
 *
 * Where we differ from the library, always towards a correct (never a smaller) ε: ln(1 − q) is log1p(−q) (exact for
 * tiny q); exact ln n! for n ≤ 170; the fractional series does not stop before i > α (the library's stops at once
 * when its first terms are tiny, e.g. q = ½ at α = 256.1, and returns a negative RDP); a fractional result outside
 * [D_⌊α⌋, D_⌈α⌉] is replaced by D_⌈α⌉; order 1 with q < 1 (0/0 in the library) is bounded by order 2.
 *
 * (ε, δ) from RDP: ε = min_α [ε(α) + ln(1 − 1/α) − (ln δ + ln α)/(α − 1)] (Balle et al. 2020, "Hypothesis testing
 * interpretations and Rényi DP", Prop. 12; Canonne, Kamath & Steinke 2020, Eq. 20), and ε = 0 whenever the KL bound
 * δ ≥ √(1 − e^(−ε(α))) already holds — exactly `dp_accounting`'s `compute_epsilon`.
 */

/**
 * `dp_accounting`'s `DEFAULT_RDP_ORDERS` (rdp_privacy_accountant.py, current): 1.1, 1.2, …, 10.9 (1 + x/10 for
 * x = 1..99), 11..63, 128, 256, 512, 1024. (TF Privacy's older `compute_dp_sgd_privacy` used a coarser list;
 * its test values are checked with that list passed explicitly.)
 */
export const DEFAULT_ORDERS: readonly number[] = Object.freeze([
  ...Array.from({ length: 99 }, (_, i) => 1 + (i + 1) / 10),
  ...Array.from({ length: 53 }, (_, i) => 11 + i),
  128,
  256,
  512,
  1024,
]);

function checkOrders(orders: readonly number[], what: string): void {
  if (!Array.isArray(orders) || orders.length === 0) throw new Error(`${what}: orders must be a non-empty array`);
  for (const a of orders) {
    if (!(typeof a === 'number' && a >= 1)) throw new Error(`${what}: every RDP order must be a number ≥ 1, got ${a}`);
  }
}

function checkRate(q: number, what: string): void {
  if (!(typeof q === 'number' && q >= 0 && q <= 1)) {
    throw new Error(`${what}: sampling rate q must be in [0, 1], got ${q}`);
  }
}

function checkNoiseMultiplier(z: number, what: string): void {
  if (!(typeof z === 'number' && z >= 0)) throw new Error(`${what}: noise multiplier must be a number ≥ 0, got ${z}`);
}

function checkSteps(steps: number, what: string): void {
  if (!(Number.isSafeInteger(steps) && steps >= 0)) {
    throw new Error(`${what}: steps must be an integer ≥ 0, got ${steps}`);
  }
}

/** ln A_α for integer α ≥ 2, 0 < q < 1: the exact binomial sum, term by term in log space. */
function logAInt(q: number, z: number, alpha: number): number {
  const logQ = Math.log(q);
  const log1mQ = Math.log1p(-q);
  const twoVar = 2 * z * z;
  let logA = -Infinity;
  for (let i = 0; i <= alpha; i++) {
    const logCoef = logBinomial(alpha, i) + i * logQ + (alpha - i) * log1mQ;
    logA = logAdd(logA, logCoef + (i * i - i) / twoVar);
  }
  return logA;
}

/** Terms a fractional-order series may take before we give up on it (it converges in tens for sane inputs). */
const FRAC_SERIES_MAX_TERMS = 100_000;

/**
 * ln A_α for fractional α, 0 < q < 1 (`_compute_log_a_frac`): A_α = ∫_{−∞}^{z₀} + ∫_{z₀}^{∞}, each expanded in the
 * generalised binomial series Σ_i C(α,i)…; a term's magnitude is C(α,i) q^i (1−q)^(α−i) e^((i²−i)/(2z²)) times a
 * Gaussian tail ½ erfc(…). Stops when both new terms are below e^−30, as the library does. Returns NaN when the
 * series cannot be summed in floating point (then the caller uses the integer order above: RDP grows with α).
 */
function logAFrac(q: number, z: number, alpha: number): number {
  let logA0 = -Infinity;
  let logA1 = -Infinity;
  const logQ = Math.log(q);
  const log1mQ = Math.log1p(-q);
  const z0 = z * z * (log1mQ - logQ) + 0.5; // z²·ln(1/q − 1) + ½, without forming 1/q
  const twoVar = 2 * z * z;
  const scale = Math.SQRT2 * z;
  // C(α, i) by the recurrence C(α, i) = C(α, i−1)·(α − i + 1)/i, kept as (sign, ln|·|) so it cannot overflow.
  let logCoef = 0;
  let positive = true;
  for (let i = 0; i < FRAC_SERIES_MAX_TERMS; i++) {
    if (i > 0) {
      const factor = alpha - i + 1;
      logCoef += Math.log(Math.abs(factor)) - Math.log(i);
      if (factor < 0) positive = !positive;
    }
    const j = alpha - i;
    const logT0 = logCoef + i * logQ + j * log1mQ;
    const logT1 = logCoef + j * logQ + i * log1mQ;
    const logE0 = Math.log(0.5) + logErfc((i - z0) / scale);
    const logE1 = Math.log(0.5) + logErfc((z0 - j) / scale);
    const logS0 = logT0 + (i * i - i) / twoVar + logE0;
    const logS1 = logT1 + (j * j - j) / twoVar + logE1;
    if (positive) {
      logA0 = logAdd(logA0, logS0);
      logA1 = logAdd(logA1, logS1);
    } else {
      logA0 = logSub(logA0, logS0);
      logA1 = logSub(logA1, logS1);
    }
    if (!(logA0 < Infinity && logA1 < Infinity)) return NaN; // overflowed or went negative: unusable
    // The library stops at the first i where both terms are < e^−30; when α is large and the binomial mass sits
    // far from i = 0 (e.g. q = ½, α = 256.1), the first terms are tiny too and it stops before the bulk, returning
    // a negative "RDP". Past i = α the coefficients alternate and shrink, so only from there is "tiny" final.
    if (i > alpha && Math.max(logS0, logS1) < -30) return logAdd(logA0, logA1);
  }
  return NaN;
}

/** RDP of one sampled-Gaussian release at one order (`_compute_rdp_poisson_subsampled_gaussian`'s inner function). */
function rdpOneOrder(q: number, z: number, alpha: number): number {
  if (q === 0) return 0;
  if (alpha === Infinity || z === 0) return Infinity;
  if (q === 1) return alpha / (2 * z * z);
  if (z === Infinity) return 0;
  // Order 1 (KL) has no series here (ln A₁ / 0); D₁ ≤ D₂ bounds it, and the conversion only uses it for δ ≥ √(1−e^−D).
  if (alpha === 1) return rdpOneOrder(q, z, 2);
  // A_α ≥ 1 (Jensen), so ln A_α ≥ 0; the clamp only removes rounding below 0 when z is huge.
  if (Number.isInteger(alpha)) return Math.max(0, logAInt(q, z, alpha) / (alpha - 1));
  // The series is numerically delicate; check it against what must hold. D_α is non-decreasing in α, so
  // D_⌊α⌋ ≤ D_α ≤ D_⌈α⌉ (D_1 = KL ≥ 0). Outside that, or when the series failed, the next integer order is a valid,
  // slightly loose bound; anything below the truth would claim more privacy than we have.
  const upper = rdpOneOrder(q, z, Math.ceil(alpha));
  const lower = alpha < 2 ? 0 : rdpOneOrder(q, z, Math.floor(alpha));
  const frac = logAFrac(q, z, alpha) / (alpha - 1);
  const slack = 1e-9 * upper + 1e-300;
  return frac >= lower - slack && frac <= upper + slack ? Math.max(0, frac) : upper;
}

/**
 * RDP of `steps` compositions of the sampled Gaussian mechanism with sampling rate q and noise multiplier z
 * (noise std / L2 sensitivity), at each order. q = 1: α·steps/(2z²). z = 0: Infinity. Integer and fractional α.
 */
export function rdpSampledGaussian(
  q: number,
  noiseMultiplier: number,
  steps: number,
  orders: readonly number[] = DEFAULT_ORDERS,
): Float64Array {
  checkRate(q, 'rdpSampledGaussian');
  checkNoiseMultiplier(noiseMultiplier, 'rdpSampledGaussian');
  checkSteps(steps, 'rdpSampledGaussian');
  checkOrders(orders, 'rdpSampledGaussian');
  const out = new Float64Array(orders.length);
  if (steps === 0) return out; // no release: nothing spent (and never 0·∞)
  for (let k = 0; k < orders.length; k++) out[k] = steps * rdpOneOrder(q, noiseMultiplier, orders[k]);
  return out;
}

function checkRdp(rdp: ArrayLike<number>, orders: readonly number[], what: string): void {
  checkOrders(orders, what);
  if (rdp.length !== orders.length) throw new Error(`${what}: ${rdp.length} RDP values for ${orders.length} orders`);
  for (let k = 0; k < rdp.length; k++) {
    if (!(rdp[k] >= 0)) {
      throw new Error(`${what}: RDP values must be ≥ 0 (or Infinity), got ${rdp[k]} at order ${orders[k]}`);
    }
  }
}

/**
 * (ε, δ) from RDP: `dp_accounting`'s `compute_epsilon` (the improved conversion of Balle et al. 2020, Prop. 12 /
 * Canonne, Kamath & Steinke 2020, Eq. 20; orders ≤ 1.01 are skipped as numerically unstable). Returns ε and the
 * optimal order (the first one attaining the minimum).
 */
export function epsilonFromRdp(
  rdp: ArrayLike<number>,
  delta: number,
  orders: readonly number[] = DEFAULT_ORDERS,
): { epsilon: number; order: number } {
  if (!(typeof delta === 'number' && delta > 0 && delta < 1)) {
    throw new Error(`epsilonFromRdp: δ must be in (0, 1), got ${delta}`);
  }
  checkRdp(rdp, orders, 'epsilonFromRdp');
  let best = Infinity;
  let bestOrder = orders[0];
  for (let k = 0; k < orders.length; k++) {
    const a = orders[k];
    const r = rdp[k];
    let eps: number;
    if (delta * delta + Math.expm1(-r) > 0) eps = 0; // δ ≥ √(1 − e^−KL): nothing to pay at this order
    else if (a > 1.01) eps = r + Math.log1p(-1 / a) - Math.log(delta * a) / (a - 1);
    else eps = Infinity;
    if (eps < best) {
      best = eps;
      bestOrder = a;
    }
  }
  return { epsilon: Math.max(0, best), order: bestOrder };
}

/** δ at a given ε from RDP: `dp_accounting`'s `compute_delta` (same conversion, solved for δ). */
export function deltaFromRdp(
  rdp: ArrayLike<number>,
  epsilon: number,
  orders: readonly number[] = DEFAULT_ORDERS,
): { delta: number; order: number } {
  if (!(typeof epsilon === 'number' && epsilon >= 0)) throw new Error(`deltaFromRdp: ε must be ≥ 0, got ${epsilon}`);
  checkRdp(rdp, orders, 'deltaFromRdp');
  let best = Infinity;
  let bestOrder = orders[0];
  for (let k = 0; k < orders.length; k++) {
    const a = orders[k];
    const r = rdp[k];
    let logDelta = r === 0 ? -Infinity : 0.5 * Math.log1p(-Math.exp(-r)); // KL bound δ ≤ √(1 − e^−r)
    if (a > 1.01) logDelta = Math.min(logDelta, (a - 1) * (r - epsilon + Math.log1p(-1 / a)) - Math.log(a));
    if (logDelta < best) {
      best = logDelta;
      bestOrder = a;
    }
  }
  return { delta: Math.min(Math.exp(best), 1), order: bestOrder };
}

/** Relative precision of calibrateNoiseMultiplier's answer. */
const CALIBRATION_RTOL = 1e-3;

/**
 * Smallest noise multiplier z (to 1e-3 relative, rounded up so the target always holds) such that `steps`
 * compositions at rate q give ε ≤ epsilon at delta. Infinity target → 0. Throws on nonsense input.
 * ε(z) is non-increasing in z, so this is a bracket-and-bisect on z.
 */
export function calibrateNoiseMultiplier(o: {
  epsilon: number;
  delta: number;
  steps: number;
  q?: number;
  orders?: readonly number[];
}): number {
  const { epsilon, delta, steps } = o;
  const q = o.q ?? 1;
  const orders = o.orders ?? DEFAULT_ORDERS;
  if (!(typeof epsilon === 'number' && epsilon > 0)) {
    throw new Error(`calibrateNoiseMultiplier: ε must be > 0, got ${epsilon}`);
  }
  if (!(typeof delta === 'number' && delta > 0 && delta < 1)) {
    throw new Error(`calibrateNoiseMultiplier: δ must be in (0, 1), got ${delta}`);
  }
  if (!(Number.isSafeInteger(steps) && steps >= 1)) {
    throw new Error(`calibrateNoiseMultiplier: steps must be an integer ≥ 1, got ${steps}`);
  }
  if (!(typeof q === 'number' && q > 0 && q <= 1)) {
    throw new Error(`calibrateNoiseMultiplier: q must be in (0, 1], got ${q}`);
  }
  checkOrders(orders, 'calibrateNoiseMultiplier');
  if (epsilon === Infinity) return 0;
  const eps = (z: number): number => epsilonFromRdp(rdpSampledGaussian(q, z, steps, orders), delta, orders).epsilon;
  let hi = 1;
  while (eps(hi) > epsilon) {
    hi *= 2;
    // Any ε > 0 is reachable (ε → 0 as z → ∞); this only stops a runaway on absurd targets.
    if (hi > 1e12) {
      throw new Error(`calibrateNoiseMultiplier: no noise multiplier ≤ 1e12 reaches ε = ${epsilon} at δ = ${delta}`);
    }
  }
  let lo = hi / 2;
  while (eps(lo) <= epsilon) {
    hi = lo;
    lo /= 2;
    if (lo < 1e-12) return hi;
  }
  // Invariant: eps(lo) > ε ≥ eps(hi).
  while (hi - lo > CALIBRATION_RTOL * hi) {
    const mid = (lo + hi) / 2;
    if (eps(mid) <= epsilon) hi = mid;
    else lo = mid;
  }
  return hi;
}

/** The serialised form of an RdpAccountant (JSON has no Infinity: JSON.stringify writes an infinite RDP as null). */
export interface RdpAccountantJSON {
  orders: number[];
  rdp: number[];
  releases: number;
}

/**
 * Running composition of heterogeneous Gaussian releases (e.g. one per round a client took part in): the RDP
 * curves simply add, order by order.
 */
export class RdpAccountant {
  readonly #orders: readonly number[];
  readonly #rdp: Float64Array;
  #releases = 0;

  constructor(orders: readonly number[] = DEFAULT_ORDERS) {
    checkOrders(orders, 'RdpAccountant');
    for (const a of orders) if (a === Infinity) throw new Error('RdpAccountant: orders must be finite');
    this.#orders = Object.freeze([...orders]);
    this.#rdp = new Float64Array(orders.length);
  }

  get orders(): readonly number[] {
    return this.#orders;
  }

  /** Number of releases composed so far. */
  get releases(): number {
    return this.#releases;
  }

  /** Add `steps` releases of the sampled Gaussian mechanism (q = 1: the plain Gaussian mechanism). z = 0 → ε = ∞. */
  compose(noiseMultiplier: number, q = 1, steps = 1): void {
    const add = rdpSampledGaussian(q, noiseMultiplier, steps, this.#orders);
    for (let k = 0; k < add.length; k++) this.#rdp[k] += add[k];
    this.#releases += steps;
  }

  /** ε at δ of everything composed so far: 0 before any release, Infinity when any release had z = 0. */
  epsilon(delta: number): number {
    if (this.#releases === 0) {
      if (!(typeof delta === 'number' && delta > 0 && delta < 1)) {
        throw new Error(`epsilon: δ must be in (0, 1), got ${delta}`);
      }
      return 0;
    }
    return epsilonFromRdp(this.#rdp, delta, this.#orders).epsilon;
  }

  /** ε after one more release of z (without composing it): lets a client check its budget before it uploads. */
  epsilonIfComposed(noiseMultiplier: number, delta: number, q = 1): number {
    const add = rdpSampledGaussian(q, noiseMultiplier, 1, this.#orders);
    for (let k = 0; k < add.length; k++) add[k] += this.#rdp[k];
    return epsilonFromRdp(add, delta, this.#orders).epsilon;
  }

  /** For checkpoints / localStorage. An infinite RDP stays Infinity here; JSON.stringify turns it into null. */
  toJSON(): RdpAccountantJSON {
    return { orders: [...this.#orders], rdp: Array.from(this.#rdp), releases: this.#releases };
  }

  /** Rebuilds an accountant from toJSON() (or its JSON.parse'd text); throws a clear Error on anything else. */
  static fromJSON(x: unknown): RdpAccountant {
    const bad = (why: string): never => {
      throw new Error(`RdpAccountant.fromJSON: ${why}`);
    };
    if (typeof x !== 'object' || x === null || Array.isArray(x)) return bad('expected an object {orders, rdp, releases}');
    const { orders, rdp, releases } = x as Record<string, unknown>;
    if (!Array.isArray(orders) || orders.length === 0) return bad('orders must be a non-empty array');
    for (const a of orders) {
      if (!(typeof a === 'number' && Number.isFinite(a) && a >= 1)) {
        bad(`every order must be a finite number ≥ 1, got ${String(a)}`);
      }
    }
    if (!Array.isArray(rdp) || rdp.length !== orders.length) {
      return bad(`rdp must be an array of ${orders.length} values`);
    }
    const values = rdp.map((r: unknown) => (r === null ? Infinity : r)); // null: an Infinity that went through JSON
    for (const r of values) {
      if (!(typeof r === 'number' && r >= 0)) bad(`every RDP value must be a number ≥ 0, got ${String(r)}`);
    }
    if (!(typeof releases === 'number' && Number.isSafeInteger(releases) && releases >= 0)) {
      return bad(`releases must be an integer ≥ 0, got ${String(releases)}`);
    }
    if (releases === 0 && values.some((r) => r !== 0)) return bad('non-zero RDP with 0 releases');
    const acc = new RdpAccountant(orders as number[]);
    acc.#rdp.set(values as number[]);
    acc.#releases = releases;
    return acc;
  }
}
