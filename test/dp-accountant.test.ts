import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_ORDERS,
  RdpAccountant,
  calibrateNoiseMultiplier,
  deltaFromRdp,
  epsilonFromRdp,
  rdpSampledGaussian,
} from '../shared/privacy/index.ts';
import { erfc, lgamma, logErfc } from '../shared/privacy/special-functions.ts';

/**
 * Expected values below are the ones published in the unit tests of TensorFlow Privacy and of its successor,
 * Google's dp_accounting (github.com/tensorflow/privacy, tensorflow_privacy/privacy/analysis/rdp_accountant_test.py
 * and compute_dp_sgd_privacy_test.py; github.com/google/differential-privacy,
 * python/dp_accounting/rdp/rdp_privacy_accountant_test.py), each with its source and the tolerance it is published
 * with. Our accountant is a port of that library, so it must reproduce them.
 */

function closeRel(actual: number, expected: number, rtol: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= rtol * Math.abs(expected), `${what}: ${actual} vs ${expected} (rtol ${rtol})`);
}
function closeAbs(actual: number, expected: number, atol: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= atol, `${what}: ${actual} vs ${expected} (atol ${atol})`);
}
/** Python's unittest assertAlmostEqual(a, b) (places = 7): round(a − b, 7) == 0. */
function almostEqual7(actual: number, expected: number, what: string): void {
  closeAbs(actual, expected, 5e-8, what);
}
const range = (from: number, to: number, step = 1): number[] => {
  const out: number[] = [];
  for (let x = from; x < to; x += step) out.push(x);
  return out;
};

test('special functions: lgamma, erfc and log erfc against reference values', () => {
  // ln Γ: exact identities (Γ(½) = √π, Γ(n + 1) = n!).
  closeRel(lgamma(0.5), 0.5 * Math.log(Math.PI), 1e-15, 'lgamma(½)');
  assert.equal(lgamma(1), 0);
  assert.equal(lgamma(2), 0);
  assert.equal(lgamma(3), Math.LN2);
  closeRel(lgamma(11), Math.log(3628800), 1e-15, 'lgamma(11) = ln 10!');
  closeRel(lgamma(21), Math.log(2432902008176640000), 1e-15, 'lgamma(21) = ln 20!');
  // Γ(x + 1) = x Γ(x) across the switch from the recurrence to Stirling's series (x = 15) and far beyond.
  for (const x of [0.3, 1.7, 7.3, 14.2, 14.9, 15.5, 99.5, 1000.5, 1e6 + 0.5]) {
    closeRel(lgamma(x + 1), lgamma(x) + Math.log(x), 1e-14, `lgamma recurrence at ${x}`);
  }
  // erfc reference values (mpmath at 30 digits, rounded to 17).
  // (These check our helper; the accountant's own expected values below are all published ones.)
  const erfcTable: [number, number][] = [
    [0, 1],
    [0.5, 0.47950012218695346],
    [1, 0.15729920705028513],
    [2, 0.0046777349810472658],
    [3, 2.2090496998585441e-5],
    [-1, 1.8427007929497149],
    [10, 2.0884875837625448e-45],
  ];
  for (const [x, v] of erfcTable) closeRel(erfc(x), v, 1e-14, `erfc(${x})`);
  // log erfc never underflows: erfc(100) = 6.40596142492173204e-4346, ln = −10005.1775851226643 (mpmath).
  closeRel(logErfc(100), -10005.1775851226643, 1e-15, 'logErfc(100)');
  closeRel(logErfc(2), Math.log(0.004677734981047266), 1e-14, 'logErfc(2)');
  assert.equal(logErfc(Infinity), -Infinity);
  closeRel(logErfc(-Infinity), Math.LN2, 1e-15, 'logErfc(−∞)');
});

test('DEFAULT_ORDERS is dp_accounting\'s DEFAULT_RDP_ORDERS', () => {
  // rdp_privacy_accountant.py: [1 + x / 10. for x in range(1, 100)] + list(range(11, 64)) + [128, 256, 512, 1024]
  assert.equal(DEFAULT_ORDERS.length, 99 + 53 + 4);
  assert.equal(DEFAULT_ORDERS[0], 1.1);
  assert.equal(DEFAULT_ORDERS[98], 10.9);
  assert.equal(DEFAULT_ORDERS[99], 11);
  assert.equal(DEFAULT_ORDERS[151], 63);
  assert.deepEqual(DEFAULT_ORDERS.slice(152), [128, 256, 512, 1024]);
  assert.ok(Object.isFrozen(DEFAULT_ORDERS));
});

test('compute_rdp: published values of TF Privacy / dp_accounting', () => {
  // rdp_accountant_test.py test_compute_rdp_no_data: compute_rdp(0, 10, 1, 20) == 0
  assert.equal(rdpSampledGaussian(0, 10, 1, [20])[0], 0);
  // test_compute_rdp_no_sampling: compute_rdp(1, 10, 1, 20) == 0.1 ("q = 1, RDP = alpha/2 * sigma^2")
  assert.equal(rdpSampledGaussian(1, 10, 1, [20])[0], 0.1);
  // test_compute_rdp_scalar: compute_rdp(0.1, 2, 10, 5) ≈ 0.07737 (places = 5)
  closeAbs(rdpSampledGaussian(0.1, 2, 10, [5])[0], 0.07737, 5e-6, 'compute_rdp(0.1, 2, 10, 5)');
  // test_compute_rdp_sequence (and dp_accounting's test_compute_rdp_poisson_sampled_gaussian):
  // compute_rdp(0.01, 2.5, 50, [1.5, 2.5, 5, 50, 100, inf]) ≈ [6.5007e-04, …, inf], rtol = 1e-4
  const rdp = rdpSampledGaussian(0.01, 2.5, 50, [1.5, 2.5, 5, 50, 100, Infinity]);
  const expected = [6.5007e-4, 1.0854e-3, 2.1808e-3, 2.3846e-2, 1.6742e2];
  expected.forEach((v, k) => closeRel(rdp[k], v, 1e-4, `compute_rdp sequence, order ${[1.5, 2.5, 5, 50, 100][k]}`));
  assert.equal(rdp[5], Infinity);
  // dp_accounting test_compute_rdp_gaussian: GaussianDpEvent(2.71828) at order 3.14159 = α / (2σ²)
  closeRel(rdpSampledGaussian(1, 2.71828, 1, [3.14159])[0], 3.14159 / (2 * 2.71828 ** 2), 1e-15, 'Gaussian RDP');
  // dp_accounting test_epsilon_non_private_gaussian: GaussianDpEvent(0) → ε = inf at δ = 0.1
  assert.equal(epsilonFromRdp(rdpSampledGaussian(1, 0, 1, [3.14159]), 0.1, [3.14159]).epsilon, Infinity);
});

test('get_privacy_spent: published values for constant RDP and for the Gaussian mechanism', () => {
  // rdp_accountant_test.py test_get_privacy_spent_check_target_delta / dp_accounting
  // test_compute_epsilon_delta_pure_dp: orders 2..32, rdp ≡ 1.1, δ = 1e-5 → ε = 1.32783806176 at order 32.
  const orders = range(2, 33);
  const constant = orders.map(() => 1.1);
  const { epsilon, order } = epsilonFromRdp(constant, 1e-5, orders);
  almostEqual7(epsilon, 1.32783806176, 'ε of constant RDP');
  assert.equal(order, 32);
  const back = deltaFromRdp(constant, 1.32783806176, orders);
  almostEqual7(back.delta, 1e-5, 'δ of constant RDP');
  assert.equal(back.order, 32);

  // Same tests, second part: "Scale is chosen to obtain exactly (1,1e-6)-DP": Gaussian, z = 4.530877117, orders
  // 0.001·i for i in range(1000, 100000) → ε ≈ 1 at δ = 1e-6, and δ ≈ 1e-6 at ε = 1 (places = 7).
  const fine = range(1000, 100000).map((i) => 0.001 * i);
  const rdpG = rdpSampledGaussian(1, 4.530877117, 1, fine);
  almostEqual7(epsilonFromRdp(rdpG, 1e-6, fine).epsilon, 1, 'ε of z = 4.530877117');
  almostEqual7(deltaFromRdp(rdpG, 1, fine).delta, 1e-6, 'δ of z = 4.530877117');
});

test('compute_dp_sgd_privacy: published (ε, order) of DP-SGD settings', () => {
  // compute_dp_sgd_privacy_test.py test_compute_dp_sgd_privacy, with compute_dp_sgd_privacy_lib.py's orders
  // [1.25, 1.5, 1.75, 2., 2.25, 2.5, 3., 3.5, 4., 4.5] + range(5, 64) + [128, 256, 512], q = batch / n,
  // steps = ceil(epochs · n / batch). Published with assertAlmostEqual (places = 7) and an exact order.
  const orders = [1.25, 1.5, 1.75, 2, 2.25, 2.5, 3, 3.5, 4, 4.5, ...range(5, 64), 128, 256, 512];
  const cases: [n: number, batch: number, z: number, epochs: number, delta: number, eps: number, order: number][] = [
    [60000, 150, 1.3, 15, 1e-5, 0.7242234026109595, 19], // Test0
    [100000, 100, 1.0, 30, 1e-7, 1.4154988495444842, 13], // Test1
    [100000000, 1024, 0.1, 10, 1e-7, 5907982.3113978775, 1.25], // Test2
  ];
  for (const [n, batch, z, epochs, delta, eps, order] of cases) {
    const steps = Math.ceil((epochs * n) / batch);
    const got = epsilonFromRdp(rdpSampledGaussian(batch / n, z, steps, orders), delta, orders);
    // places = 7 for the first two; the third is 5.9e6, where 7 decimals are 1e-14 relative (past float64 sums of
    // 1e5 terms, and scipy versions differ there too): 1e-9 relative instead.
    if (eps < 10) almostEqual7(got.epsilon, eps, `DP-SGD n=${n}`);
    else closeRel(got.epsilon, eps, 1e-9, `DP-SGD n=${n}`);
    assert.equal(got.order, order, `optimal order for n=${n}`);
  }
});

test('composition: heterogeneous releases add up (published) and stay below the old bound', () => {
  // rdp_accountant_test.py test_compute_heterogeneous_rdp_different_sampling_probabilities:
  // q = [0, 1], z = [10, 10], steps [1, 1], order 20 → 0.1
  const acc = new RdpAccountant([20]);
  acc.compose(10, 0);
  acc.compose(10, 1);
  assert.equal(acc.toJSON().rdp[0], 0.1);
  assert.equal(acc.releases, 2);

  // test_check_composition: (q = 1e-4, z = 0.4, 40000 steps) + (q = 0.1, z = 2, 100 steps) at δ = 1e-5 gave
  // ε = 8.509656 with the old conversion; the improved one must not exceed it.
  const orders = [1.25, 1.5, 1.75, 2, 2.5, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 64, 256];
  const het = new RdpAccountant(orders);
  het.compose(0.4, 1e-4, 40000);
  het.compose(2, 0.1, 100);
  const eps = het.epsilon(1e-5);
  assert.ok(eps > 0 && eps <= 8.509656, `composed ε = ${eps}`);
  // Order by order, composing is adding.
  const a = rdpSampledGaussian(1e-4, 0.4, 40000, orders);
  const b = rdpSampledGaussian(0.1, 2, 100, orders);
  het.toJSON().rdp.forEach((r, k) => closeRel(r, a[k] + b[k], 1e-15, `sum at order ${orders[k]}`));
});

test('ε ↔ δ consistency over q, z, δ (dp_accounting test_epsilon_delta_consistency)', () => {
  const orders = range(2, 50);
  for (const q of [0, 0.01, 0.1, 0.8, 1]) {
    for (const z of [0, 0.1, 1, 10, 100]) {
      const acc = new RdpAccountant(orders);
      acc.compose(z, q);
      const rdp = acc.toJSON().rdp;
      for (const delta of [0.99, 0.9, 0.1, 0.01, 1e-3, 1e-5, 1e-9, 1e-12]) {
        const epsilon = acc.epsilon(delta);
        const delta2 = deltaFromRdp(rdp, epsilon, orders).delta;
        const what = `q=${q} z=${z} δ=${delta}`;
        if (epsilon === Infinity) assert.equal(delta2, 1, what);
        else if (epsilon === 0) assert.ok(delta2 <= delta, what);
        else almostEqual7(delta2, delta, what);
      }
    }
  }
});

/** Exact δ(ε) of the Gaussian mechanism with noise multiplier z (Balle & Wang 2018, Theorem 8). */
function gaussianDelta(eps: number, z: number): number {
  const d = erfc((eps * z - 0.5 / z) / Math.SQRT2) / 2 - (Math.exp(eps) * erfc((eps * z + 0.5 / z) / Math.SQRT2)) / 2;
  return Math.max(0, d);
}

test('the RDP conversion is sound and not loose: exact Gaussian δ ≤ RDP δ ≤ the standard bound', () => {
  // rdp_accountant_test.py test_get_privacy_spent_gaussian / dp_accounting test_delta_bounds_gaussian: z = 1, orders
  // 0.1·x for x in range(10, 505), ε = 0.1·x for x in range(500).
  const orders = range(10, 505).map((x) => 0.1 * x);
  const rdp = rdpSampledGaussian(1, 1, 1, orders);
  for (let x = 0; x < 500; x++) {
    const eps = 0.1 * x;
    const { delta } = deltaFromRdp(rdp, eps, orders);
    assert.ok(gaussianDelta(eps, 1) <= delta + 1e-300, `exact δ ≤ RDP δ at ε = ${eps}`);
    const standard = eps >= 0.5 ? Math.exp(-0.5 * (eps - 0.5) ** 2) : 1;
    assert.ok(delta <= standard + 1e-300, `RDP δ ≤ standard bound at ε = ${eps}`);
  }
});

test('analytic facts: q = 1 is α·steps/(2z²) exactly; z = 0 is ∞; no NaN at extreme q, z, α', () => {
  for (const z of [0.3, 1, 4.2, 50]) {
    const r = rdpSampledGaussian(1, z, 7);
    DEFAULT_ORDERS.forEach((a, k) => closeRel(r[k], (7 * a) / (2 * z * z), 1e-15, `q=1 z=${z} α=${a}`));
    assert.ok(rdpSampledGaussian(0.1, 0, 1).every((v) => v === Infinity), 'z = 0');
  }
  assert.ok(rdpSampledGaussian(0.3, 1, 0).every((v) => v === 0), 'no steps, nothing spent');
  // Order 1 (KL): exact for q = 1, bounded by order 2 otherwise (the library's series is 0/0 there).
  assert.equal(rdpSampledGaussian(1, 2, 1, [1])[0], 1 / 8);
  const [kl, two] = rdpSampledGaussian(0.1, 1, 1, [1, 2]);
  assert.equal(kl, two);
  assert.ok(rdpSampledGaussian(0.3, Infinity, 5).every((v) => v === 0), 'infinite noise');
  const orders = [...DEFAULT_ORDERS, 256.1, 1023.5, Infinity];
  for (const q of [1e-300, 1e-12, 1e-3, 0.5, 1 - 1e-12]) {
    for (const z of [0.05, 0.5, 5, 500]) {
      const r = rdpSampledGaussian(q, z, 3, orders);
      for (let k = 0; k < orders.length; k++) assert.ok(r[k] >= 0, `q=${q} z=${z} α=${orders[k]}: ${r[k]}`);
      // RDP is non-decreasing in the order (where the values are above float noise).
      const sorted = orders.map((a, k) => [a, r[k]]).sort((x, y) => x[0] - y[0]);
      for (let k = 1; k < sorted.length; k++) {
        const what = `monotone in α at q=${q} z=${z} α=${sorted[k][0]}`;
        assert.ok(sorted[k][1] >= sorted[k - 1][1] * (1 - 1e-9) - 1e-20, what);
      }
    }
  }
  // The fractional-order series of the reference library stops before the binomial bulk when α is large and q = ½
  // (it returns a negative RDP there). Ours must sit between the neighbouring integer orders.
  const [r256, r2561, r257] = rdpSampledGaussian(0.5, 500, 1, [256, 256.1, 257]);
  assert.ok(r256 <= r2561 && r2561 <= r257 && r2561 > 0, `${r256} ≤ ${r2561} ≤ ${r257}`);
});

test('monotonicity: more noise → smaller ε; more steps or a higher rate → larger ε', () => {
  const eps = (q: number, z: number, steps: number): number =>
    epsilonFromRdp(rdpSampledGaussian(q, z, steps), 1e-5).epsilon;
  let prev = Infinity;
  for (const z of [0.5, 0.8, 1, 1.5, 2, 4, 8, 16]) {
    const e = eps(0.05, z, 100);
    assert.ok(e < prev, `z=${z}: ${e} < ${prev}`);
    prev = e;
  }
  prev = 0;
  for (const steps of [1, 2, 10, 100, 1000]) {
    const e = eps(0.05, 1.1, steps);
    assert.ok(e > prev, `steps=${steps}: ${e} > ${prev}`);
    prev = e;
  }
  prev = 0;
  for (const q of [0.001, 0.01, 0.1, 0.5, 1]) {
    const e = eps(q, 1.1, 10);
    assert.ok(e > prev, `q=${q}: ${e} > ${prev}`);
    prev = e;
  }
});

test('calibrateNoiseMultiplier: the smallest z (to 1e-3) reaching ε, sound against the exact Gaussian', () => {
  const cases = [
    { epsilon: 1, delta: 1e-5, steps: 20 },
    { epsilon: 4, delta: 1e-5, steps: 20 },
    { epsilon: 8, delta: 1e-5, steps: 20 },
    { epsilon: 0.5, delta: 1e-6, steps: 1 },
    { epsilon: 2, delta: 1e-5, steps: 200, q: 0.1 },
  ];
  for (const c of cases) {
    const z = calibrateNoiseMultiplier(c);
    const q = c.q ?? 1;
    const at = (m: number): number => epsilonFromRdp(rdpSampledGaussian(q, m, c.steps), c.delta).epsilon;
    assert.ok(at(z) <= c.epsilon, `${JSON.stringify(c)}: ε(z = ${z}) = ${at(z)}`);
    assert.ok(at(z * (1 - 1e-3)) > c.epsilon, `${JSON.stringify(c)}: z = ${z} is not the smallest`);
    if (q === 1) {
      // `steps` Gaussian releases of multiplier z are one release of z/√steps; the exact curve must allow ε at δ.
      assert.ok(gaussianDelta(c.epsilon, z / Math.sqrt(c.steps)) <= c.delta, `sound: ${JSON.stringify(c)}`);
    }
  }
  // One release at ε = 1, δ = 1e-6 needs z = 4.530877117 exactly (the published test above): RDP over the default
  // orders is a little looser, never tighter.
  const z1 = calibrateNoiseMultiplier({ epsilon: 1, delta: 1e-6, steps: 1 });
  assert.ok(z1 >= 4.530877117 && z1 < 4.530877117 * 1.1, `z for (1, 1e-6) = ${z1}`);
  assert.equal(calibrateNoiseMultiplier({ epsilon: Infinity, delta: 1e-5, steps: 10 }), 0);
});

test('calibrateNoiseMultiplier and the RDP functions refuse nonsense with a clear error', () => {
  const ok = { epsilon: 1, delta: 1e-5, steps: 10, q: 0.5 };
  const bad: [Partial<typeof ok>, RegExp][] = [
    [{ epsilon: 0 }, /ε must be > 0/],
    [{ epsilon: -1 }, /ε must be > 0/],
    [{ epsilon: NaN }, /ε must be > 0/],
    [{ delta: 0 }, /δ must be in \(0, 1\)/],
    [{ delta: 1 }, /δ must be in \(0, 1\)/],
    [{ delta: NaN }, /δ must be in \(0, 1\)/],
    [{ steps: 0 }, /steps must be an integer ≥ 1/],
    [{ steps: 1.5 }, /steps must be an integer ≥ 1/],
    [{ q: 0 }, /q must be in \(0, 1\]/],
    [{ q: 1.5 }, /q must be in \(0, 1\]/],
  ];
  for (const [patch, re] of bad) {
    assert.throws(() => calibrateNoiseMultiplier({ ...ok, ...patch }), re, JSON.stringify(patch));
  }
  assert.throws(() => rdpSampledGaussian(1.2, 1, 1), /sampling rate q must be in \[0, 1\]/);
  assert.throws(() => rdpSampledGaussian(0.5, -1, 1), /noise multiplier must be a number ≥ 0/);
  assert.throws(() => rdpSampledGaussian(0.5, NaN, 1), /noise multiplier/);
  assert.throws(() => rdpSampledGaussian(0.5, 1, -1), /steps must be an integer ≥ 0/);
  assert.throws(() => rdpSampledGaussian(0.5, 1, 1, [0.5]), /order must be a number ≥ 1/);
  assert.throws(() => rdpSampledGaussian(0.5, 1, 1, []), /non-empty/);
  assert.throws(() => epsilonFromRdp([0.1, 0.2], 1e-5, [2]), /2 RDP values for 1 orders/);
  assert.throws(() => epsilonFromRdp([-0.1], 1e-5, [2]), /RDP values must be ≥ 0/);
  assert.throws(() => epsilonFromRdp([NaN], 1e-5, [2]), /RDP values must be ≥ 0/);
  assert.throws(() => epsilonFromRdp([0.1], 0, [2]), /δ must be in \(0, 1\)/);
});

test('RdpAccountant: ε before/after releases, epsilonIfComposed does not compose, z = 0 is ∞', () => {
  const acc = new RdpAccountant();
  assert.equal(acc.releases, 0);
  assert.equal(acc.epsilon(1e-5), 0);
  const peek = acc.epsilonIfComposed(2, 1e-5);
  assert.equal(acc.releases, 0, 'peeking composes nothing');
  assert.equal(acc.epsilon(1e-5), 0);
  acc.compose(2);
  assert.equal(acc.epsilon(1e-5), peek);
  const e1 = acc.epsilon(1e-5);
  const peek2 = acc.epsilonIfComposed(1, 1e-5, 0.5);
  acc.compose(1, 0.5);
  assert.equal(acc.epsilon(1e-5), peek2);
  assert.ok(peek2 > e1);
  assert.equal(acc.releases, 2);
  // Many releases of the same z at once = one at a time.
  const batch = new RdpAccountant();
  batch.compose(1.3, 0.2, 25);
  const single = new RdpAccountant();
  for (let i = 0; i < 25; i++) single.compose(1.3, 0.2);
  closeRel(batch.epsilon(1e-5), single.epsilon(1e-5), 1e-12, 'steps = 25 vs 25 × compose');
  assert.equal(batch.releases, 25);
  // A release without noise makes the whole history non-private.
  assert.equal(acc.epsilonIfComposed(0, 1e-5), Infinity);
  acc.compose(0);
  assert.equal(acc.epsilon(1e-5), Infinity);
  assert.throws(() => acc.compose(-1), /noise multiplier/);
  assert.throws(() => acc.epsilon(0), /δ must be in \(0, 1\)/);
  assert.throws(() => new RdpAccountant([2, Infinity]), /finite/);
});

test('RdpAccountant: toJSON/fromJSON round-trip (also through JSON text with an infinite RDP)', () => {
  const acc = new RdpAccountant();
  acc.compose(1.1, 0.01, 500);
  acc.compose(3, 1, 2);
  const copy = RdpAccountant.fromJSON(JSON.parse(JSON.stringify(acc)));
  assert.equal(copy.releases, acc.releases);
  assert.equal(copy.epsilon(1e-5), acc.epsilon(1e-5));
  assert.deepEqual(copy.toJSON(), acc.toJSON());
  copy.compose(2);
  acc.compose(2);
  assert.equal(copy.epsilon(1e-6), acc.epsilon(1e-6), 'a restored accountant keeps composing the same way');

  const custom = new RdpAccountant([1.5, 2, 8, 32]);
  custom.compose(0);
  const text = JSON.stringify(custom); // Infinity → null in JSON
  assert.match(text, /null/);
  const back = RdpAccountant.fromJSON(JSON.parse(text));
  assert.equal(back.epsilon(1e-5), Infinity);
  assert.deepEqual(back.orders, [1.5, 2, 8, 32]);
});

test('RdpAccountant.fromJSON refuses garbage', () => {
  const good = { orders: [2, 4], rdp: [0.1, 0.3], releases: 1 };
  assert.equal(RdpAccountant.fromJSON(good).releases, 1);
  const bad: unknown[] = [
    null,
    undefined,
    42,
    'accountant',
    [],
    {},
    { ...good, orders: [] },
    { ...good, orders: [0.5, 4] },
    { ...good, orders: [2, NaN] },
    { ...good, orders: [2, Infinity] },
    { ...good, orders: ['2', 4] },
    { ...good, orders: 'abc' },
    { ...good, rdp: [0.1] },
    { ...good, rdp: [0.1, -0.3] },
    { ...good, rdp: [0.1, 'x'] },
    { ...good, rdp: [0.1, NaN] },
    { ...good, rdp: null },
    { ...good, releases: -1 },
    { ...good, releases: 1.5 },
    { ...good, releases: '1' },
    { ...good, releases: undefined },
    { ...good, releases: 0 }, // spent privacy with no release recorded
  ];
  for (const x of bad) {
    assert.throws(() => RdpAccountant.fromJSON(x), /RdpAccountant\.fromJSON: /, JSON.stringify(x) ?? String(x));
  }
});
