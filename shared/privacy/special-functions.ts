/**
 * The few special functions the RDP accountant needs, in float64, isomorphic (no dependencies):
 * log Γ, log erfc, and log-space addition/subtraction. Accuracy target: ~1e-15 relative, the same order as
 * scipy's `gammaln` / `log_ndtr`, so our ε matches TensorFlow Privacy / dp_accounting to many digits.
 */

const HALF_LOG_2PI = 0.5 * Math.log(2 * Math.PI);

/**
 * ln Γ(x) for x > 0. Stirling's series with the Bernoulli terms B₂ₖ / (2k(2k−1) x^(2k−1)) up to k = 8 for x ≥ 15
 * (the first omitted term is < 3617/122400 · 15⁻¹⁵ ≈ 7e-20), and Γ(x) = Γ(x + k) / (x(x+1)…(x+k−1)) below that.
 */
export function lgamma(x: number): number {
  if (!(x > 0)) throw new Error(`lgamma: x must be > 0, got ${x}`);
  if (x === Infinity) return Infinity;
  if (Number.isInteger(x) && x <= 171) return LOG_FACTORIALS[x - 1];
  let shift = 0;
  let prod = 1;
  while (x < 15) {
    prod *= x;
    x += 1;
    shift += 1;
  }
  const r = 1 / x;
  const r2 = r * r;
  // Horner form of 1/12 r − 1/360 r³ + 1/1260 r⁵ − 1/1680 r⁷ + 1/1188 r⁹ − 691/360360 r¹¹ + 1/156 r¹³ − 3617/122400 r¹⁵
  const tail = 1 / 1188 + r2 * (-691 / 360360 + r2 * (1 / 156 + r2 * (-3617 / 122400)));
  const series = r * (1 / 12 + r2 * (-1 / 360 + r2 * (1 / 1260 + r2 * (-1 / 1680 + r2 * tail))));
  const stirling = (x - 0.5) * Math.log(x) - x + HALF_LOG_2PI + series;
  return shift === 0 ? stirling : stirling - Math.log(prod);
}

/**
 * ln n! for integers n ≥ 0. Up to 170 from the float64 product 1·2·…·n (exact to n = 22, then ≤ n/2 ulp relative,
 * so ln n! is correctly rounded or nearly so — e.g. ln 2! is exactly Math.LN2 and ln 1! exactly 0, which keeps
 * log-space sums of binomial terms free of the cancellation error a shifted Stirling series would leave).
 */
export function logFactorial(n: number): number {
  if (!(Number.isSafeInteger(n) && n >= 0)) throw new Error(`logFactorial: n must be an integer ≥ 0, got ${n}`);
  return n < LOG_FACTORIALS.length ? LOG_FACTORIALS[n] : lgamma(n + 1);
}

const LOG_FACTORIALS: Float64Array = (() => {
  const t = new Float64Array(171);
  let f = 1;
  for (let n = 1; n <= 170; n++) {
    f *= n;
    t[n] = Math.log(f);
  }
  return t;
})();

/** ln C(n, k) for integers 0 ≤ k ≤ n. */
export function logBinomial(n: number, k: number): number {
  if (!(Number.isSafeInteger(k) && k >= 0 && k <= n)) {
    throw new Error(`logBinomial: need integers 0 ≤ k ≤ n, got n = ${n}, k = ${k}`);
  }
  return logFactorial(n) - logFactorial(k) - logFactorial(n - k);
}

// W. J. Cody, "Rational Chebyshev approximations for the error function", Math. Comp. 23 (1969) 631–638: the
// coefficient sets of SPECFUN's CALERF (the same ones SciPy/Cephes descend from), ~1e-16 relative.
const A = [3.1611237438705656, 113.864154151050156, 377.485237685302021, 3209.37758913846947, 0.185777706184603153];
const B = [23.6012909523441209, 244.024637934444173, 1282.61652607737228, 2844.23683343917062];
const C = [
  0.564188496988670089, 8.88314979438837594, 66.1191906371416295, 298.635138197400131, 881.952221241769090,
  1712.04761263407058, 2051.07837782607147, 1230.33935479799725, 2.15311535474403846e-8,
];
const D = [
  15.7449261107098347, 117.693950891312499, 537.181101862009858, 1621.38957456669019, 3290.79923573345963,
  4362.61909014324716, 3439.36767414372164, 1230.33935480374942,
];
const P = [
  0.305326634961232344, 0.360344899949804439, 0.125781726111229246, 0.0160837851487422766,
  6.58749161529837803e-4, 0.0163153871373020978,
];
const Q = [2.56852019228982242, 1.87295284992346047, 0.527905102951428412, 0.0605183413124413191, 2.33520497626869185e-3];
const INV_SQRT_PI = 0.56418958354775628695;

/** erf(x) for |x| ≤ 0.46875 (Cody's first interval). */
function erfSmall(x: number): number {
  const z = x * x;
  let num = A[4] * z;
  let den = z;
  for (let i = 0; i < 3; i++) {
    num = (num + A[i]) * z;
    den = (den + B[i]) * z;
  }
  return (x * (num + A[3])) / (den + B[3]);
}

/** erfcx(x) = exp(x²)·erfc(x) for x ≥ 0.46875 (Cody's second and third intervals): bounded, never overflows. */
function erfcxLarge(x: number): number {
  if (x <= 4) {
    let num = C[8] * x;
    let den = x;
    for (let i = 0; i < 7; i++) {
      num = (num + C[i]) * x;
      den = (den + D[i]) * x;
    }
    return (num + C[7]) / (den + D[7]);
  }
  if (x === Infinity) return 0;
  const z = 1 / (x * x);
  let num = P[5] * z;
  let den = z;
  for (let i = 0; i < 4; i++) {
    num = (num + P[i]) * z;
    den = (den + Q[i]) * z;
  }
  return (INV_SQRT_PI - (z * (num + P[4])) / (den + Q[4])) / x;
}

/** erfc(x) (underflows to 0 past x ≈ 26.5; use logErfc there). */
export function erfc(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const y = Math.abs(x);
  if (y <= 0.46875) return 1 - erfSmall(x);
  const tail = Math.exp(-y * y) * erfcxLarge(y);
  return x > 0 ? tail : 2 - tail;
}

/**
 * ln erfc(x) without underflow: for x ≥ 0.46875, ln erfc(x) = −x² + ln erfcx(x), finite for every finite x
 * (what TF Privacy's `_log_erfc` gets from scipy's `log_ndtr`). ln erfc(+∞) = −∞, ln erfc(−∞) = ln 2.
 */
export function logErfc(x: number): number {
  if (Number.isNaN(x)) return NaN;
  if (x >= 0.46875) return x === Infinity ? -Infinity : -x * x + Math.log(erfcxLarge(x));
  return Math.log(erfc(x));
}

/** ln(eˣ + eʸ). */
export function logAdd(x: number, y: number): number {
  const a = Math.min(x, y);
  const b = Math.max(x, y);
  if (a === -Infinity || b === Infinity) return b;
  return Math.log1p(Math.exp(a - b)) + b;
}

/** ln(eˣ − eʸ) for x ≥ y; NaN when x < y (the caller decides what a negative difference means). */
export function logSub(x: number, y: number): number {
  if (x < y) return NaN;
  if (y === -Infinity) return x;
  if (x === y) return -Infinity;
  if (x === Infinity) return Infinity;
  // eˣ − eʸ = (e^(x−y) − 1)·eʸ; expm1 overflows only when x − y > 709, where the difference is eˣ to float precision.
  const d = Math.expm1(x - y);
  return d === Infinity ? x : Math.log(d) + y;
}
