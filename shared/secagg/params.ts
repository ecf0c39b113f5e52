/**
 * Session parameters and the fixed-point code of secure aggregation.
 *
 * Masks are uniform in Z_2^32, so inputs must be integers mod 2^32: x ↦ round(x·scale) in two's complement. The sum of
 * n encoded values is exact mod 2^32, and decodes back to a signed integer without ambiguity as long as it never leaves
 * [−2^31, 2^31): |Σ x_u·scale| ≤ n·bound·scale < 2^31. That is why every input is clipped to [−bound, bound] and the
 * scale is chosen from the number of possible contributors (the roster), not the number that end up contributing.
 */

export interface SecAggParams {
  /** Unique per session (per round): every derived key and every AAD binds it, so nothing replays across rounds. */
  session: string;
  /** Shamir threshold t: shares needed to reconstruct a seed; also the least |U1|, |U2|, |U3| and reveals. ≥ 2. */
  threshold: number;
  /** Fixed-point scale: x is sent as round(x·scale) mod 2^32. See fixedPointScale. */
  scale: number;
  /** Inputs are clipped to [−bound, bound] before encoding (so the signed sum cannot wrap). */
  bound: number;
  /** Vector length every client masks and the server sums. */
  length: number;
}

/** Shamir's shares here live in GF(2^8), whose 255 nonzero points are the possible share x-coordinates. */
export const MAX_PARTICIPANTS = 255;
/** Below this the rounding error (0.5/scale per value and contributor) would swamp probabilities and logits alike. */
export const MIN_SCALE = 2 ** 8;
/** Bytes of a x25519 key or a seed. */
export const KEY_BYTES = 32;

/**
 * Largest power of 2 with contributors·bound·scale < 2^31, so that the signed sum of every possible contributor's
 * clipped, encoded input stays inside int32 and decodes exactly. A power of 2 keeps x·scale exact in floating point.
 */
export function fixedPointScale(o: { contributors: number; bound: number }): number {
  const { contributors, bound } = o;
  if (!Number.isSafeInteger(contributors) || contributors < 1) {
    throw new Error(`secagg: contributors must be a positive integer, got ${contributors}`);
  }
  if (!(Number.isFinite(bound) && bound > 0)) throw new Error(`secagg: bound must be a positive finite number, got ${bound}`);
  // scale < 2^31 / (n·bound); the largest power of two strictly below that quotient.
  const limit = 2 ** 31 / (contributors * bound);
  let exponent = Math.floor(Math.log2(limit));
  while (2 ** exponent >= limit) exponent--; // log2 of an exact power of two gives the limit itself: step below it
  while (2 ** (exponent + 1) < limit) exponent++; // guard against log2 rounding down too far
  const scale = 2 ** exponent;
  if (scale < MIN_SCALE) {
    throw new Error(
      `secagg: ${contributors} contributors with values clipped to ±${bound} leave a fixed-point scale of only ${scale} ` +
        `(< ${MIN_SCALE}): the 32-bit sum has no room for precision (resolution 1/${scale}); lower the bound or the ` +
        `number of clients per session`,
    );
  }
  return scale;
}

/** Throws a clear error unless params are usable for a session of `participants` possible contributors. */
export function validateParams(params: SecAggParams, participants?: number): void {
  if (typeof params !== 'object' || params === null) throw new Error('secagg: params must be an object');
  const { session, threshold, scale, bound, length } = params;
  if (typeof session !== 'string' || session.length === 0 || session.length > 256) {
    throw new Error('secagg: session must be a non-empty string of at most 256 characters');
  }
  if (!Number.isSafeInteger(threshold) || threshold < 2 || threshold > MAX_PARTICIPANTS) {
    throw new Error(`secagg: threshold must be an integer in [2, ${MAX_PARTICIPANTS}], got ${threshold}`);
  }
  if (!(Number.isFinite(scale) && scale > 0)) throw new Error(`secagg: scale must be a positive finite number, got ${scale}`);
  if (!(Number.isFinite(bound) && bound > 0)) throw new Error(`secagg: bound must be a positive finite number, got ${bound}`);
  if (!Number.isSafeInteger(length) || length < 1 || length > 2 ** 26) {
    throw new Error(`secagg: length must be an integer in [1, 2^26], got ${length}`);
  }
  if (participants !== undefined) {
    if (participants > MAX_PARTICIPANTS) {
      throw new Error(`secagg: at most ${MAX_PARTICIPANTS} clients per session (Shamir shares over GF(256)), got ${participants}`);
    }
    if (participants < threshold) {
      throw new Error(`secagg: ${participants} clients cannot meet the threshold of ${threshold}`);
    }
    if (participants * maxCode(params) >= 2 ** 31) {
      throw new Error(
        `secagg: scale ${scale} is too large for ${participants} clients with bound ${bound}: the sum could wrap ` +
          `around 2^31 (use fixedPointScale({ contributors: ${participants}, bound: ${bound} }))`,
      );
    }
  }
}

/** The largest encoded magnitude: floor, so n·maxCode ≤ n·bound·scale < 2^31 holds after rounding too. */
function maxCode(params: SecAggParams): number {
  return Math.floor(params.bound * params.scale);
}

/** x clipped to [−bound, bound], as round(x·scale) in two's complement mod 2^32. NaN is refused; ±∞ clip like any value. */
export function encodeFixedPoint(x: ArrayLike<number>, params: SecAggParams): Uint32Array {
  if (x.length !== params.length) throw new Error(`secagg: input has length ${x.length}, expected ${params.length}`);
  const max = maxCode(params);
  const out = new Uint32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    if (typeof v !== 'number' || Number.isNaN(v)) throw new Error(`secagg: input[${i}] is not a number`);
    const code = Math.round(v * params.scale);
    out[i] = code > max ? max : code < -max ? -max : code; // Uint32Array storage is ToUint32: two's complement
  }
  return out;
}

/** A sum mod 2^32 of encoded values, read as signed int32 and divided by scale. */
export function decodeFixedPoint(sum: Uint32Array, scale: number): Float64Array {
  const out = new Float64Array(sum.length);
  for (let i = 0; i < sum.length; i++) out[i] = (sum[i] | 0) / scale;
  return out;
}
