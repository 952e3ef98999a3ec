"""Tests of support.rmt: Lyapunov spectra, the limits of rho, the width-two chain and the one-step drift.

References are independent of the code under test: one-dimensional quadrature of chi-square and
normal densities, binomial Fuss-Catalan numbers, the quarter-circle and Marchenko-Pastur
densities, direct softmax entropies, 50-digit mpmath evaluations at extreme arguments, and small
Monte Carlo runs whose tolerances come from the known variances or the DKW inequality. The
chapter book/rank_volume_theorem.ipynb proves what is tested here.
"""

import math

import mpmath
import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import integrate, special, stats

from support import rmt
from support.rank import spectral_entropy


# ----------------------------------------------------------------------------- Newman's spectrum
@pytest.mark.parametrize("n", [1, 2, 5, 16])
def test_newman_top_exponent_is_mean_log_norm_growth(n):
    """lambda_1 = E log |W v| for a unit vector v: |W v|^2 ~ variance * chi^2_n (quadrature)."""
    variance = 0.7
    e_log_chi2 = stats.chi2(n).expect(np.log)
    assert rmt.lyapunov_spectrum(n, variance)[0] == pytest.approx(
        0.5 * (math.log(variance) + e_log_chi2), abs=1e-8
    )


def test_newman_sum_is_expected_log_determinant():
    """sum_i lambda_i = E log|det W|, compared with a Monte Carlo of slogdet (5 standard errors)."""
    n, samples = 6, 20000
    w = np.random.default_rng(1).standard_normal((samples, n, n)) / math.sqrt(n)
    logdet = np.linalg.slogdet(w)[1]
    se = logdet.std() / math.sqrt(samples)
    assert abs(rmt.lyapunov_spectrum(n).sum() - logdet.mean()) < 5 * se


def test_newman_spectrum_shape_order_and_variance_shift():
    lam = rmt.lyapunov_spectrum(16)
    # simple spectrum, decreasing
    assert lam.shape == (16,) and np.all(np.diff(lam) < 0)
    np.testing.assert_allclose(
        rmt.lyapunov_spectrum(16, 2.0) - lam, 0.5 * math.log(32.0)
    )
    # n = 1: E log |g| for g ~ N(0, 1), by quadrature of the normal density
    e_log = integrate.quad(lambda x: math.log(x) * 2 * stats.norm.pdf(x), 0, np.inf)[0]
    assert rmt.lyapunov_spectrum(1, 1.0)[0] == pytest.approx(e_log, abs=1e-8)


@pytest.mark.parametrize("n", [3, 8])
def test_qr_estimator_agrees_with_newman_within_standard_errors(n):
    """Each estimate is a mean of depth*batch i.i.d. (1/2) log(chi^2_k / n) terms: variance psi'(k/2)/4."""
    depth, batch = 300, 16
    est = rmt.lyapunov_qr(n, depth, batch, seed=3)
    assert est.shape == (batch, n)
    k = np.arange(n, 0, -1)
    se = np.sqrt(0.25 * special.polygamma(1, k / 2) / (depth * batch))
    assert np.all(np.abs(est.mean(0) - rmt.lyapunov_spectrum(n)) < 5 * se)


def test_qr_estimator_is_seeded():
    a = rmt.lyapunov_qr(4, 10, 2, seed=5)
    np.testing.assert_array_equal(a, rmt.lyapunov_qr(4, 10, 2, seed=5))
    assert not np.array_equal(a, rmt.lyapunov_qr(4, 10, 2, seed=6))


# ----------------------------------------------------------------------------- renormalised products
def test_products_are_renormalised_and_consistent():
    out = rmt.gaussian_products(5, [1, 3, 40], batch=4, seed=2)
    assert sorted(out) == [1, 3, 40]
    for p, log_scale in out.values():
        assert p.shape == (4, 5, 5) and log_scale.dtype == torch.float64
        torch.testing.assert_close(
            torch.linalg.matrix_norm(p), torch.ones(4, dtype=p.dtype)
        )
    # depth 1: exp(log_scale) P is one Gaussian factor, so E |P_1|_F^2 = n * variance * n ... = n
    big = rmt.gaussian_products(4, 1, batch=4000, seed=0)[1][1]
    fro2 = torch.exp(2 * big)
    assert abs(fro2.mean().item() - 4.0) < 5 * fro2.std().item() / math.sqrt(4000)


def test_products_grow_at_the_top_lyapunov_exponent():
    """(1/d) log s_1(P_d) -> lambda_1 (Furstenberg-Kesten); log s_1 = log_scale + log s_1(P)."""
    n, d = 4, 400
    p, log_scale = rmt.gaussian_products(n, d, batch=16, seed=1)[d]
    rate = (log_scale + torch.log(torch.linalg.svdvals(p)[:, 0])) / d
    assert abs(rate.mean().item() - rmt.lyapunov_spectrum(n)[0]) < 0.02


# ----------------------------------------------------------------------------- Fuss-Catalan law
@pytest.mark.parametrize("d", [1, 2, 3, 6])
def test_mellin_transform_gives_fuss_catalan_numbers(d):
    k = np.arange(7)
    expected = special.comb((d + 1) * k, k, exact=False) / (d * k + 1)
    np.testing.assert_allclose(rmt.fuss_catalan_moment(d, k), expected, rtol=1e-10)


def test_mellin_transform_at_one_half_depth_one_is_quarter_circle_mean():
    assert rmt.fuss_catalan_moment(1, 0.5) == pytest.approx(
        8 / (3 * math.pi), rel=1e-12
    )


def test_density_parametrisation_is_marchenko_pastur_at_depth_one():
    phi = np.linspace(0.05, 1.5, 7)
    x, dens, _ = rmt.fuss_catalan_density(phi, 1)
    np.testing.assert_allclose(dens, np.sqrt((4 - x) / x) / (2 * math.pi), rtol=1e-12)


@pytest.mark.parametrize("d", [1, 2, 5, 12])
def test_density_integrates_to_one_and_has_fuss_catalan_moments(d):
    for k in range(4):
        fc = special.comb((d + 1) * k, k, exact=False) / (d * k + 1)
        assert rmt.fuss_catalan_expectation(lambda x, k=k: x**k, d) == pytest.approx(
            fc, rel=1e-7
        )


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 10), st.floats(0.05, 2.5))
def test_mellin_closed_form_matches_quadrature_at_real_t(d, t):
    assert rmt.fuss_catalan_expectation(lambda x: x**t, d) == pytest.approx(
        rmt.fuss_catalan_moment(d, t), rel=1e-7
    )


def test_fuss_catalan_density_derivative():
    phi = np.array([0.2, 0.4])
    h = 1e-6
    _, _, dx = rmt.fuss_catalan_density(phi, 3)
    numeric = (
        rmt.fuss_catalan_density(phi + h, 3)[0]
        - rmt.fuss_catalan_density(phi - h, 3)[0]
    ) / (2 * h)
    np.testing.assert_allclose(dx, numeric, rtol=1e-6)


# ----------------------------------------------------------------------------- large-width limit
def test_large_width_depth_one_is_quarter_circle():
    """s has density sqrt(4 - s^2)/pi on [0, 2]; limit = log E s - E[s log s]/E s = log 0.8050."""
    qc = lambda f: integrate.quad(
        lambda s: f(s) * math.sqrt(4 - s * s) / math.pi, 0, 2, epsabs=1e-13
    )[0]
    es, eslogs = qc(lambda s: s), qc(lambda s: s * math.log(s) if s > 0 else 0.0)
    expected = math.log(es) - eslogs / es
    assert rmt.entropy_gap_large_width(1) == pytest.approx(expected, abs=1e-10)
    assert math.exp(expected) == pytest.approx(0.8050, abs=5e-5)


def test_large_width_closed_form_matches_quadrature():
    d = np.array([1, 2, 3, 5, 8, 16, 32])
    np.testing.assert_allclose(
        rmt.entropy_gap_large_width(d, method="quadrature"),
        rmt.entropy_gap_large_width(d),
        atol=1e-9,
    )


def test_large_width_limit_is_zero_at_depth_zero_decreasing_with_known_asymptote():
    assert rmt.entropy_gap_large_width(0) == pytest.approx(0.0, abs=1e-14)
    d = np.unique(
        np.concatenate([np.linspace(0, 10, 1001), np.geomspace(10, 1e6, 500)])
    )
    assert np.all(np.diff(rmt.entropy_gap_large_width(d)) < 0)
    constant = 0.5 - special.gammaln(1.5) + 0.5 * special.digamma(1.5)
    assert rmt.entropy_gap_large_width(1e6) + math.log(5e5) == pytest.approx(
        constant, abs=1e-5
    )


def test_large_width_limit_against_monte_carlo():
    """n = 96, depth 2: mean rho - log n within 0.01 of the limit (finite-n bias ~ 1/n)."""
    n, d = 96, 2
    p, _ = rmt.gaussian_products(n, d, batch=24, seed=0)[d]
    gap = spectral_entropy(p).mean().item() - math.log(n)
    assert gap == pytest.approx(rmt.entropy_gap_large_width(d), abs=0.01)


# ----------------------------------------------------------------------------- large-depth prediction
def test_large_depth_finite_n_is_softmax_entropy_of_newman_spectrum():
    d, n = 3.5, 7
    p = special.softmax(d * rmt.lyapunov_spectrum(n))
    assert rmt.entropy_gap_large_depth(d, n) == pytest.approx(
        stats.entropy(p) - math.log(n), abs=1e-12
    )
    assert rmt.entropy_gap_large_depth(0, n) == pytest.approx(0.0, abs=1e-14)
    np.testing.assert_allclose(
        rmt.entropy_gap_large_depth([0.0, 5.0, 50.0], 1), 0.0, atol=1e-14
    )


def test_large_depth_derivative_is_minus_depth_times_variance():
    """Gibbs identity dH/dd = -d Var_p(lambda), p = softmax(d lambda), by central differences."""
    n, d, h = 9, 2.7, 1e-5
    lam = rmt.lyapunov_spectrum(n)
    p = special.softmax(d * lam)
    var = (p * lam**2).sum() - (p * lam).sum() ** 2
    numeric = (
        rmt.entropy_gap_large_depth(d + h, n) - rmt.entropy_gap_large_depth(d - h, n)
    ) / (2 * h)
    assert numeric == pytest.approx(-d * var, rel=1e-6)


def test_large_depth_closed_form_is_the_large_n_limit_and_decreasing():
    d = np.array([0.5, 1, 2, 4, 8, 16, 32, 64])
    np.testing.assert_allclose(
        rmt.entropy_gap_large_depth(d, 20000), rmt.entropy_gap_large_depth(d), atol=2e-3
    )
    dense = np.geomspace(1e-3, 1e5, 400)
    assert np.all(np.diff(rmt.entropy_gap_large_depth(dense)) < 0)
    assert np.all(np.diff(rmt.entropy_gap_large_depth(dense, 16)) <= 0)
    # rho -> 0: rank one
    assert rmt.entropy_gap_large_depth(1e4, 16) + math.log(16) < 1e-6


# ----------------------------------------------------------------------------- accuracy at extreme arguments
def _g_reference(d):
    """g(d) in mpmath with enough digits for the cancellation at large d (reference for the library)."""
    u = mpmath.mpf(d) / 2
    with mpmath.workdps(50 + max(0, int(mpmath.log10(u)))):
        return float(
            mpmath.loggamma(u + 1.5)
            - mpmath.loggamma(u + 2)
            - mpmath.loggamma(1.5)
            - (u + 0.5) * mpmath.digamma(u + 1.5)
            + u * mpmath.digamma(u + 2)
            + mpmath.digamma(1.5) / 2
        )


@pytest.mark.parametrize(
    "d",
    [
        1e-12,
        1e-6,
        0.0199,
        0.02,
        0.0201,
        0.3,
        1,
        7,
        59.9,
        60,
        60.1,
        1e3,
        1e6,
        1e10,
        1e16,
        1e20,
        1e100,
        1e300,
    ],
)
def test_large_width_gap_is_accurate_at_every_depth(d):
    """Regression: the written closed form returned +0.018 at d = 1e20 (cancellation); the value is -44.72."""
    assert rmt.entropy_gap_large_width(d) == pytest.approx(_g_reference(d), rel=2e-13)


def test_large_width_gap_at_1e20_and_its_asymptotic_constant_against_mpmath():
    """The large-depth branch against an independent reference: -44.72 at d = 1e20 (mpmath), and
    C_INFINITY as g(d) + log(d/2) evaluated in mpmath where the remainder is below 1e-30."""
    assert rmt.entropy_gap_large_width(1e20) == pytest.approx(
        _g_reference(1e20), rel=1e-14
    )
    assert _g_reference(1e20) == pytest.approx(-44.7195, abs=1e-4)
    u = mpmath.mpf(10) ** 40
    with mpmath.workdps(90):
        g = (
            mpmath.loggamma(u + 1.5)
            - mpmath.loggamma(u + 2)
            - mpmath.loggamma(1.5)
            - (u + 0.5) * mpmath.digamma(u + 1.5)
            + u * mpmath.digamma(u + 2)
            + mpmath.digamma(1.5) / 2
        )
        constant = float(g + mpmath.log(u))
    assert rmt.C_INFINITY == pytest.approx(constant, abs=1e-15)


@pytest.mark.parametrize("d", [1e-12, 1e-5, 0.0199, 0.02, 0.0201, 1, 1e3, 1e20, 1e300])
def test_gibbs_limit_is_accurate_at_every_depth(d):
    x = mpmath.mpf(d)
    with mpmath.workdps(60):
        expected = float(x / (x + 2) - mpmath.log(1 + x / 2))
    assert rmt.entropy_gap_large_depth(d) == pytest.approx(expected, rel=1e-14)


@pytest.mark.parametrize(
    "d, t",
    [
        (1, 0.5),
        (3, 2.5),
        (1e5, 0.5),
        (1e7, 10.0),
        (1e9, 3.0),
        (1e12, 0.5),
        (1e15, 1e-3),
        (50.0, -0.01),
        (1e6, 1e-9),
    ],
)
def test_fuss_catalan_moment_is_accurate_for_large_depth_times_t(d, t):
    """The plain log-Gamma difference lost 1e-2 relative at d = 1e12, t = 3; the Stirling series keeps it."""
    dd, tt = mpmath.mpf(d), mpmath.mpf(t)
    with mpmath.workdps(80):
        expected = mpmath.exp(
            mpmath.loggamma((dd + 1) * tt + 1)
            - mpmath.loggamma(tt + 1)
            - mpmath.loggamma(dd * tt + 2)
        )
    assert rmt.fuss_catalan_moment(d, t) == pytest.approx(float(expected), rel=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.floats(1e-3, 1e12), st.floats(-0.9, 30.0), st.floats(-0.9, 30.0))
def test_log_gamma_ratio_matches_mpmath(z, a, b):
    assume(z + a > 0.05 and z + b > 0.05)  # away from the poles of Gamma
    with mpmath.workdps(60):
        expected = float(
            mpmath.loggamma(mpmath.mpf(z) + a) - mpmath.loggamma(mpmath.mpf(z) + b)
        )
    assert rmt._log_gamma_ratio(z, a, b) == pytest.approx(
        expected, rel=1e-12, abs=1e-12
    )


def test_fuss_catalan_density_is_finite_and_normalised_at_large_depth():
    """Depth 1000: the density alone overflows near x = 0, the quadrature weight stays finite."""
    for d in (300, 1000):
        assert rmt.fuss_catalan_expectation(np.ones_like, d) == pytest.approx(
            1.0, abs=1e-11
        )
        assert rmt.fuss_catalan_expectation(lambda x: x, d) == pytest.approx(
            1.0, abs=1e-11
        )
    by_quadrature = rmt.entropy_gap_large_width(1000, method="quadrature")
    assert by_quadrature == pytest.approx(rmt.entropy_gap_large_width(1000), abs=1e-10)


def test_fuss_catalan_density_derivative_is_accurate_at_the_upper_edge():
    """Near phi = 0 (x -> K_d) dx/dphi = -d (d+1) phi K_d (1 + O(phi^2)); the three cot terms cancel there."""
    for d in (2, 100):
        phi = np.array([1e-9, 1e-6]) / (d + 1)
        x, _, dx = rmt.fuss_catalan_density(phi, d)
        np.testing.assert_allclose(dx, -d * (d + 1) * phi * x, rtol=1e-6)


# ----------------------------------------------------------------------------- Fuss-Catalan as a Beta product
@pytest.mark.parametrize("d", [1, 2, 3, 7])
def test_beta_product_has_the_fuss_catalan_mellin_transform(d):
    """E[(K_d prod B_j)^t] from Beta moments equals the closed form at real t (Gauss multiplication)."""
    alpha, beta, k_d = rmt.fuss_catalan_beta_parameters(d)
    assert k_d == pytest.approx((d + 1) ** (d + 1) / d**d, rel=1e-14)
    assert np.all(alpha > 0) and np.all(beta > 0)
    for t in (-0.4 / (d + 1), 0.3, 0.5, 1.0, 2.7):
        beta_moments = np.exp(
            special.gammaln(alpha + t)
            + special.gammaln(alpha + beta)
            - special.gammaln(alpha)
            - special.gammaln(alpha + beta + t)
        )
        assert k_d**t * beta_moments.prod() == pytest.approx(
            rmt.fuss_catalan_moment(d, t), rel=1e-12
        )


def test_beta_parameters_at_depth_one_give_marchenko_pastur():
    """d = 1: x = 4 B, B ~ Beta(1/2, 3/2), whose density sqrt((1-b)/b) is Marchenko-Pastur's sqrt((4-x)/x)."""
    alpha, beta, k_d = rmt.fuss_catalan_beta_parameters(1)
    np.testing.assert_allclose([alpha[0], beta[0], k_d], [0.5, 1.5, 4.0])


@pytest.mark.parametrize("d", [1, 3])
def test_fuss_catalan_samples_have_fuss_catalan_moments(d):
    x = rmt.sample_fuss_catalan(d, 100_000, seed=4)
    assert x.min() >= 0 and x.max() <= (d + 1) ** (d + 1) / d**d
    for k in (1, 2):
        fc = special.comb((d + 1) * k, k) / (d * k + 1)
        se = (x**k).std() / math.sqrt(len(x))
        assert abs((x**k).mean() - fc) < 5 * se
    np.testing.assert_array_equal(x, rmt.sample_fuss_catalan(d, 100_000, seed=4))


# ----------------------------------------------------------------------------- g < L at every depth
def test_gap_difference_is_zero_at_zero_increasing_to_one_minus_c_infinity():
    assert rmt.entropy_gap_difference(0) == 0.0
    d = np.unique(np.concatenate([np.geomspace(1e-6, 1e8, 2000), [1.0, 2.0]]))
    diff = rmt.entropy_gap_difference(d)
    assert np.all(diff > 0) and np.all(np.diff(diff) > 0)
    assert rmt.entropy_gap_difference(1e300) == pytest.approx(
        1 - rmt.C_INFINITY, abs=1e-14
    )
    direct = rmt.entropy_gap_large_depth(d) - rmt.entropy_gap_large_width(d)
    np.testing.assert_allclose(diff, direct, atol=1e-14)


def test_gap_difference_slope_is_its_derivative_and_the_laplace_transform_of_the_kernel():
    d = np.array([0.0, 0.3, 1.0, 5.0, 40.0, 199.0, 201.0, 1e4, 1e8])
    closed = rmt.entropy_gap_difference_slope(d)
    np.testing.assert_allclose(
        closed, rmt.entropy_gap_difference_slope(d, method="laplace"), rtol=1e-11
    )
    # A(0)/2 = psi'(3/2)/4
    assert closed[0] == pytest.approx(0.25 * special.polygamma(1, 1.5), rel=1e-14)
    assert np.all(closed > 0)
    for di in (0.5, 3.0, 30.0):
        h = 1e-4 * max(1.0, di)
        numeric = (
            rmt.entropy_gap_difference(di + h) - rmt.entropy_gap_difference(di - h)
        ) / (2 * h)
        assert numeric == pytest.approx(rmt.entropy_gap_difference_slope(di), rel=1e-6)
    # A(u) ~ 1/(4 u^2) at large u
    assert rmt.entropy_gap_difference_slope(1e8) == pytest.approx(
        0.5 / (4 * (5e7) ** 2), rel=1e-6
    )


def test_gap_difference_kernel_is_positive_and_linear_at_zero():
    t = np.geomspace(1e-9, 60, 500)
    k = rmt.entropy_gap_difference_kernel(t)
    assert np.all(k > 0)
    assert rmt.entropy_gap_difference_kernel(1e-9) == pytest.approx(1e-9 / 4, rel=1e-6)
    x = np.exp(-t / 2)  # the closed form, evaluated naively where it is accurate
    direct = np.exp(-t) * (t - 1 + np.exp(-t)) / ((1 + x) ** 2 * (1 - x))
    np.testing.assert_allclose(k[t > 0.1], direct[t > 0.1], rtol=1e-12)


def test_trigamma_laplace_representation_behind_the_kernel():
    """psi'(z) = int_0^inf t e^(-zt) / (1 - e^-t) dt, the identity the kernel is derived from."""
    for z in (1.5, 2.0, 7.3):
        value = integrate.quad(
            lambda t, z=z: t * math.exp(-z * t) / -math.expm1(-t), 0, np.inf
        )[0]
        assert value == pytest.approx(special.polygamma(1, z), rel=1e-10)


# ----------------------------------------------------------------------------- width two
def test_two_by_two_entropy_is_rho_of_the_diagonal_matrix():
    x = np.array([0.0, 0.1, 1.0, 5.0])
    expected = [spectral_entropy(np.diag([1.0, math.exp(-xi)])) for xi in x]
    np.testing.assert_allclose(rmt.two_by_two_entropy(x), expected, rtol=1e-13)
    # far from rank two the library's generic entropy rounds 1 - p_1; mpmath does not
    r = mpmath.exp(-40)
    expected_far = float(mpmath.log(1 + r) - r * mpmath.log(r) / (1 + r))
    assert rmt.two_by_two_entropy(40.0) == pytest.approx(expected_far, rel=1e-13)
    assert rmt.two_by_two_entropy(0.0) == pytest.approx(math.log(2))
    assert rmt.two_by_two_entropy(np.inf) == 0.0
    assert np.all(np.diff(rmt.two_by_two_entropy(np.linspace(0, 30, 300))) < 0)


def test_scalar_recursion_has_the_law_of_two_by_two_gaussian_products():
    """x_d from cosh(x_{d+1}) = cosh(x_d - Z)/|sin theta| vs log(s_1/s_2) of products of 2x2 Gaussians."""
    samples = 20_000
    chain = rmt.two_by_two_log_ratio_samples([1, 3], samples, seed=1)
    products = rmt.gaussian_products(2, [1, 3], batch=samples, seed=2)
    for row, d in enumerate((1, 3)):
        s = torch.linalg.svdvals(products[d][0]).numpy()
        assert stats.ks_2samp(chain[row], np.log(s[:, 0] / s[:, 1])).pvalue > 1e-3
    np.testing.assert_array_equal(
        chain, rmt.two_by_two_log_ratio_samples([1, 3], samples, seed=1)
    )


def test_transition_cdf_against_monte_carlo_and_monotone_in_the_state():
    samples = 200_000
    rng = np.random.default_rng(0)
    z = 0.5 * rng.logistic(size=samples)
    sin = np.abs(np.sin(rng.uniform(0, 2 * math.pi, samples)))
    y = np.array([0.2, 1.0, 2.5, 6.0])
    for x in (0.0, 1.3, 4.0):
        nxt = np.arccosh(np.cosh(x - z) / sin)
        empirical = (nxt[:, None] <= y).mean(0)
        np.testing.assert_allclose(
            rmt.two_by_two_transition_cdf(x, y),
            empirical,
            atol=5 * 0.5 / math.sqrt(samples),
        )
    states = np.linspace(0, 12, 121)
    cdf = rmt.two_by_two_transition_cdf(
        states[:, None], np.array([0.5, 2.0, 8.0])[None, :]
    )
    # larger state, stochastically larger next state
    assert np.all(np.diff(cdf, axis=0) <= 1e-15)
    assert rmt.two_by_two_transition_cdf(3.0, 0.0) == 0.0
    assert rmt.two_by_two_transition_cdf(0.5, 80.0) == pytest.approx(1.0, abs=1e-12)


def test_exact_law_by_kernel_iteration_is_ordered_in_depth_and_matches_the_chain():
    grid = np.linspace(0, 40, 401)
    law = rmt.two_by_two_log_ratio_cdf([1, 2, 3, 6], grid)
    np.testing.assert_allclose(
        law[1], rmt.two_by_two_transition_cdf(0.0, grid), atol=1e-15
    )
    assert np.all(law[2] <= law[1] + 1e-12) and np.all(law[6] <= law[3] + 1e-12)
    samples = 100_000
    chain = rmt.two_by_two_log_ratio_samples([2, 6], samples, seed=5)
    band = math.sqrt(math.log(2 / 1e-3) / (2 * samples))  # DKW at 99.9%
    for row, d in enumerate((2, 6)):
        empirical = np.searchsorted(np.sort(chain[row]), grid, side="right") / samples
        assert np.abs(law[d] - empirical).max() < band
    with pytest.raises(ValueError, match="extend the grid"):
        rmt.two_by_two_log_ratio_cdf([8], np.linspace(0, 3, 31))


def test_two_by_two_drift_matches_monte_carlo_and_its_rank_one_asymptote():
    for x in (0.0, 1.0):
        drift, se = rmt.entropy_drift([1.0, math.exp(-x)], 100_000, seed=3)
        assert abs(drift - rmt.two_by_two_entropy_drift(x)) < 5 * se
    far = np.array([18.0, 22.0])
    np.testing.assert_allclose(
        rmt.two_by_two_entropy_drift(far) * np.exp(far), -math.log(2), rtol=1e-4
    )
    assert np.all(rmt.two_by_two_entropy_drift(np.linspace(0, 20, 41)) < 0)


# ----------------------------------------------------------------------------- one-step drift at any width
def test_entropy_drift_shapes_common_random_numbers_and_identity_value():
    spectra = np.array([[1.0, 1.0, 1.0], [3.0, 2.0, 1.0]])
    drift, se = rmt.entropy_drift(spectra, 4000, seed=1)
    assert drift.shape == se.shape == (2,) and np.all(se > 0)
    single = rmt.entropy_drift(spectra[1], 4000, seed=1)
    # same draws of W for every spectrum
    assert single == pytest.approx((drift[1], se[1]), rel=1e-12)
    assert rmt.entropy_drift(2.5 * spectra[1], 4000, seed=1)[0] == pytest.approx(
        drift[1], rel=1e-12
    )
    reference = np.mean(
        [
            spectral_entropy(w)
            for w in np.random.default_rng(0).standard_normal((4000, 3, 3))
        ]
    )
    assert drift[0] == pytest.approx(
        reference - math.log(3), abs=5 * se[0] + 5 * 0.2 / math.sqrt(4000)
    )


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: rmt.lyapunov_spectrum(0), ValueError, "n must be >= 1"),
        (lambda: rmt.lyapunov_spectrum(2.5), TypeError, "n must be an integer"),
        (
            lambda: rmt.lyapunov_spectrum(4, variance=-1.0),
            ValueError,
            "variance must be > 0",
        ),
        (lambda: rmt.lyapunov_qr(4, 0), ValueError, "depth must be >= 1"),
        (lambda: rmt.gaussian_products(4, [0, 2]), ValueError, "depth must be >= 1"),
        (
            lambda: rmt.gaussian_products(4, 2, dtype=torch.int32),
            ValueError,
            "dtype must be one of \\['torch\\.float32', 'torch\\.floa",
        ),
        (lambda: rmt.entropy_gap_large_width(-1), ValueError, "depth must be >= 0"),
        (
            lambda: rmt.entropy_gap_large_width(float("nan")),
            ValueError,
            "depth must be finite",
        ),
        (
            lambda: rmt.entropy_gap_large_width(2, method="spline"),
            ValueError,
            "method must be 'closed_form' or 'quadrature'",
        ),
        (
            lambda: rmt.entropy_gap_large_width(0.5, method="quadrature"),
            ValueError,
            "depth must be >= 1",
        ),
        (lambda: rmt.entropy_gap_large_depth(-0.1), ValueError, "depth must be >= 0"),
        (lambda: rmt.entropy_gap_large_depth(2, n=0), ValueError, "n must be >= 1"),
        (
            lambda: rmt.fuss_catalan_moment(2, -0.5),
            ValueError,
            "fuss_catalan_moment needs finite t > \\-1/\\(depth\\+1\\)",
        ),
        (
            lambda: rmt.fuss_catalan_density(np.array([0.0]), 2),
            ValueError,
            "phi must lie in",
        ),
        (
            lambda: rmt.fuss_catalan_expectation(np.sqrt, 20000),
            ValueError,
            "fuss_catalan_expectation supports depth <= 10000",
        ),
        (lambda: rmt.fuss_catalan_beta_parameters(0), ValueError, "depth must be >= 1"),
        (lambda: rmt.sample_fuss_catalan(2, 0), ValueError, "size must be >= 1"),
        (
            lambda: rmt.entropy_gap_large_width(float("inf")),
            ValueError,
            "depth must be finite",
        ),
        (lambda: rmt.entropy_gap_difference(-1.0), ValueError, "depth must be >= 0"),
        (
            lambda: rmt.entropy_gap_difference_slope(1.0, method="spline"),
            ValueError,
            "method must be 'closed_form' or 'laplace'",
        ),
        (
            lambda: rmt.entropy_gap_difference_kernel(-0.5),
            ValueError,
            "t must be finite and >= 0",
        ),
        (lambda: rmt.two_by_two_entropy(-0.1), ValueError, "log_ratio must be >= 0"),
        (
            lambda: rmt.two_by_two_log_ratio_samples([2, 1], 10),
            ValueError,
            "depths must be a non\\-empty strictly increasing seq",
        ),
        (
            lambda: rmt.two_by_two_transition_cdf(-1.0, 1.0),
            ValueError,
            "log_ratio = log\\(s_1/s_2\\) must be finite and >= 0",
        ),
        (
            lambda: rmt.two_by_two_log_ratio_cdf([1], np.array([0.5, 1.0, 2.0])),
            ValueError,
            "grid must be a strictly increasing 1\\-d array start",
        ),
        (
            lambda: rmt.entropy_drift([1.0], 10),
            ValueError,
            "singular_values must have shape",
        ),
        (
            lambda: rmt.entropy_drift([1.0, -1.0], 10),
            ValueError,
            "singular_values must be finite, >= 0 and not all z",
        ),
        (lambda: rmt.entropy_drift([1.0, 0.5], 1), ValueError, "samples must be >= 2"),
    ],
)
def test_bad_input_raises(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_renormalised_products_equal_the_plain_product_with_its_scale():
    gen = torch.Generator().manual_seed(0)
    # depth, batch, n, n
    factors = torch.randn(5, 3, 4, 4, generator=gen, dtype=torch.float64)
    drawn = iter(factors)

    def draw(out):
        out.copy_(next(drawn))

    seen = {}
    for d, p, log_scale in rmt.renormalised_products(
        draw, [1, 3, 5], (3, 4, 4), dtype=torch.float64, device="cpu"
    ):
        seen[d] = (p.clone(), log_scale.clone())
    plain = factors[0]
    for d in range(2, 6):
        plain = factors[d - 1] @ plain
        if d in seen:
            p, log_scale = seen[d]
            torch.testing.assert_close(torch.exp(log_scale)[:, None, None] * p, plain)
    assert torch.equal(seen[1][0], factors[0]) and torch.equal(
        seen[1][1], torch.zeros(3, dtype=torch.float64)
    )
    with pytest.raises(ValueError, match="strictly increasing"):
        next(
            rmt.renormalised_products(
                draw, [2, 2], (3, 4, 4), dtype=torch.float64, device="cpu"
            )
        )
