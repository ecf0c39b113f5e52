/**
 * A small seeded PRNG (sfc32, 128-bit state, seeded through splitmix32), isomorphic and deterministic per seed.
 * Not cryptographic. Used for data partitions and sampling so experiments are reproducible.
 */

function splitmix32(state: number): () => number {
  let s = state >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
}

/** Hashes a string seed to 32 bits (FNV-1a), so seeds like "partition/3" work. */
function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  /** `seed`: any number (integers recommended; non-integers are hashed by their bits) or string. */
  constructor(seed: number | string = 0) {
    let s: number;
    if (typeof seed === 'string') s = hashString(seed);
    else if (Number.isInteger(seed) && Math.abs(seed) <= 0xffffffff) s = seed >>> 0;
    else {
      const f = new Float64Array([seed]);
      const u = new Uint32Array(f.buffer);
      s = (u[0] ^ Math.imul(u[1], 0x9e3779b1)) >>> 0;
    }
    const sm = splitmix32(s);
    this.a = sm();
    this.b = sm();
    this.c = sm();
    this.d = sm() | 1;
    for (let i = 0; i < 12; i++) this.uint32();
  }

  /** A uniform 32-bit unsigned integer. */
  uint32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }

  /** Uniform in [0, 1) with 53 bits of precision. */
  next(): number {
    const hi = this.uint32() >>> 5; // 27 bits
    const lo = this.uint32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform integer in [0, n), unbiased. n must be a positive integer ≤ 2^32. */
  int(n: number): number {
    if (!(n > 0) || !Number.isInteger(n) || n > 0x100000000) throw new Error(`Rng.int: bad bound ${n}`);
    if (n === 0x100000000) return this.uint32();
    const limit = 0x100000000 - (0x100000000 % n);
    let x: number;
    do x = this.uint32();
    while (x >= limit);
    return x % n;
  }

  /** Normal(mean, std) by Box–Muller (no cached second value, so the stream is simple to reason about). */
  normal(mean = 0, std = 1): number {
    let u = 0;
    while (u === 0) u = this.next();
    const v = this.next();
    return mean + std * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  /**
   * Gamma(shape, scale) by Marsaglia–Tsang; for shape < 1 uses Gamma(shape+1)·U^(1/shape).
   * For tiny shapes this can underflow to 0; use `logGamma` when that matters (e.g. Dirichlet with small alpha).
   */
  gamma(shape: number, scale = 1): number {
    return Math.exp(this.logGamma(shape)) * scale;
  }

  /** log of a Gamma(shape, 1) sample, finite even when the sample itself would underflow. */
  logGamma(shape: number): number {
    if (!(shape > 0) || !Number.isFinite(shape)) throw new Error(`Rng.gamma: shape must be > 0, got ${shape}`);
    if (shape < 1) {
      let u = 0;
      while (u === 0) u = this.next();
      return this.logGamma(shape + 1) + Math.log(u) / shape;
    }
    const d = shape - 1 / 3;
    const c = 1 / Math.sqrt(9 * d);
    for (;;) {
      let x: number;
      let v: number;
      do {
        x = this.normal();
        v = 1 + c * x;
      } while (v <= 0);
      v = v * v * v;
      const u = this.next();
      if (u < 1 - 0.0331 * x * x * x * x) return Math.log(d * v);
      if (u > 0 && Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return Math.log(d * v);
    }
  }

  /** A sample from Dirichlet(alpha): `alpha` per component, or one value repeated `k` times. Sums to 1. */
  dirichlet(alpha: number | readonly number[], k?: number): number[] {
    const alphas = typeof alpha === 'number' ? new Array<number>(k ?? 0).fill(alpha) : [...alpha];
    if (alphas.length === 0) throw new Error('Rng.dirichlet: need at least one component');
    const logs = alphas.map((a) => this.logGamma(a));
    const m = Math.max(...logs);
    const w = logs.map((l) => Math.exp(l - m));
    const s = w.reduce((x, y) => x + y, 0);
    return w.map((x) => x / s);
  }

  /** Fisher–Yates shuffle in place; returns the same array. */
  shuffle<T>(array: T[]): T[];
  shuffle<A extends { length: number; [i: number]: unknown }>(array: A): A;
  shuffle(array: { length: number; [i: number]: unknown }) {
    for (let i = array.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = array[i];
      array[i] = array[j];
      array[j] = t;
    }
    return array;
  }

  /** A uniformly random permutation of 0..n-1. */
  permutation(n: number): number[] {
    const p = Array.from({ length: n }, (_, i) => i);
    return this.shuffle(p);
  }

  /** An independent generator derived from this one's stream (advances this one). */
  fork(): Rng {
    return new Rng(this.uint32());
  }
}

/** `new Rng(seed)`, or the given Rng itself. */
export function makeRng(seedOrRng: Rng | number | string): Rng {
  return seedOrRng instanceof Rng ? seedOrRng : new Rng(seedOrRng);
}
