"""Tests of support.rmt: Lyapunov spectra of Gaussian products and the two limits of rho.

References are independent of the code under test: one-dimensional quadrature of chi-square and
normal densities, binomial Fuss-Catalan numbers, the quarter-circle and Marchenko-Pastur
densities, direct softmax entropies, and small Monte Carlo runs whose tolerances come from the
known variances. The chapter book/rank_volume_theorem.ipynb proves what is tested here.
"""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
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
    assert rmt.lyapunov_spectrum(n, variance)[0] == pytest.approx(0.5 * (math.log(variance) + e_log_chi2), abs=1e-8)


def test_newman_sum_is_expected_log_determinant():
    """sum_i lambda_i = E log|det W|, compared with a Monte Carlo of slogdet (5 standard errors)."""
    n, samples = 6, 20000
    w = np.random.default_rng(1).standard_normal((samples, n, n)) / math.sqrt(n)
    logdet = np.linalg.slogdet(w)[1]
    se = logdet.std() / math.sqrt(samples)
    assert abs(rmt.lyapunov_spectrum(n).sum() - logdet.mean()) < 5 * se


def test_newman_spectrum_shape_order_and_variance_shift():
    lam = rmt.lyapunov_spectrum(16)
    assert lam.shape == (16,) and np.all(np.diff(lam) < 0)  # simple spectrum, decreasing
    np.testing.assert_allclose(rmt.lyapunov_spectrum(16, 2.0) - lam, 0.5 * math.log(32.0))
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
        torch.testing.assert_close(torch.linalg.matrix_norm(p), torch.ones(4, dtype=p.dtype))
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
    assert rmt.fuss_catalan_moment(1, 0.5) == pytest.approx(8 / (3 * math.pi), rel=1e-12)


def test_density_parametrisation_is_marchenko_pastur_at_depth_one():
    phi = np.linspace(0.05, 1.5, 7)
    x, dens, _ = rmt.fuss_catalan_density(phi, 1)
    np.testing.assert_allclose(dens, np.sqrt((4 - x) / x) / (2 * math.pi), rtol=1e-12)


@pytest.mark.parametrize("d", [1, 2, 5, 12])
def test_density_integrates_to_one_and_has_fuss_catalan_moments(d):
    for k in range(4):
        fc = special.comb((d + 1) * k, k, exact=False) / (d * k + 1)
        assert rmt.fuss_catalan_expectation(lambda x: x ** k, d) == pytest.approx(fc, rel=1e-7)


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 10), st.floats(0.05, 2.5))
def test_mellin_closed_form_matches_quadrature_at_real_t(d, t):
    assert rmt.fuss_catalan_expectation(lambda x: x ** t, d) == pytest.approx(rmt.fuss_catalan_moment(d, t), rel=1e-7)


def test_fuss_catalan_density_derivative():
    phi = np.array([0.2, 0.4])
    h = 1e-6
    _, _, dx = rmt.fuss_catalan_density(phi, 3)
    numeric = (rmt.fuss_catalan_density(phi + h, 3)[0] - rmt.fuss_catalan_density(phi - h, 3)[0]) / (2 * h)
    np.testing.assert_allclose(dx, numeric, rtol=1e-6)


# ----------------------------------------------------------------------------- large-width limit
def test_large_width_depth_one_is_quarter_circle():
    """s has density sqrt(4 - s^2)/pi on [0, 2]; limit = log E s - E[s log s]/E s = log 0.8050."""
    qc = lambda f: integrate.quad(lambda s: f(s) * math.sqrt(4 - s * s) / math.pi, 0, 2, epsabs=1e-13)[0]
    es, eslogs = qc(lambda s: s), qc(lambda s: s * math.log(s) if s > 0 else 0.0)
    expected = math.log(es) - eslogs / es
    assert rmt.entropy_gap_large_width(1) == pytest.approx(expected, abs=1e-10)
    assert math.exp(expected) == pytest.approx(0.8050, abs=5e-5)


def test_large_width_closed_form_matches_quadrature():
    d = np.array([1, 2, 3, 5, 8, 16, 32])
    np.testing.assert_allclose(rmt.entropy_gap_large_width(d, method="quadrature"),
                               rmt.entropy_gap_large_width(d), atol=1e-9)


def test_large_width_limit_is_zero_at_depth_zero_decreasing_with_known_asymptote():
    assert rmt.entropy_gap_large_width(0) == pytest.approx(0.0, abs=1e-14)
    d = np.unique(np.concatenate([np.linspace(0, 10, 1001), np.geomspace(10, 1e6, 500)]))
    assert np.all(np.diff(rmt.entropy_gap_large_width(d)) < 0)
    constant = 0.5 - special.gammaln(1.5) + 0.5 * special.digamma(1.5)
    assert rmt.entropy_gap_large_width(1e6) + math.log(5e5) == pytest.approx(constant, abs=1e-5)


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
    assert rmt.entropy_gap_large_depth(d, n) == pytest.approx(stats.entropy(p) - math.log(n), abs=1e-12)
    assert rmt.entropy_gap_large_depth(0, n) == pytest.approx(0.0, abs=1e-14)
    np.testing.assert_allclose(rmt.entropy_gap_large_depth([0.0, 5.0, 50.0], 1), 0.0, atol=1e-14)


def test_large_depth_derivative_is_minus_depth_times_variance():
    """Gibbs identity dH/dd = -d Var_p(lambda), p = softmax(d lambda), by central differences."""
    n, d, h = 9, 2.7, 1e-5
    lam = rmt.lyapunov_spectrum(n)
    p = special.softmax(d * lam)
    var = (p * lam ** 2).sum() - (p * lam).sum() ** 2
    numeric = (rmt.entropy_gap_large_depth(d + h, n) - rmt.entropy_gap_large_depth(d - h, n)) / (2 * h)
    assert numeric == pytest.approx(-d * var, rel=1e-6)


def test_large_depth_closed_form_is_the_large_n_limit_and_decreasing():
    d = np.array([0.5, 1, 2, 4, 8, 16, 32, 64])
    np.testing.assert_allclose(rmt.entropy_gap_large_depth(d, 20000), rmt.entropy_gap_large_depth(d), atol=2e-3)
    dense = np.geomspace(1e-3, 1e5, 400)
    assert np.all(np.diff(rmt.entropy_gap_large_depth(dense)) < 0)
    assert np.all(np.diff(rmt.entropy_gap_large_depth(dense, 16)) <= 0)
    assert rmt.entropy_gap_large_depth(1e4, 16) + math.log(16) < 1e-6  # rho -> 0: rank one


def test_limits_do_not_commute():
    """The large-width curve lies below the large-depth (n -> inf) one; the gap tends to a constant."""
    d = np.geomspace(0.1, 1e5, 200)
    diff = rmt.entropy_gap_large_width(d) - rmt.entropy_gap_large_depth(d)
    assert np.all(diff < 0)
    constant = 0.5 - special.gammaln(1.5) + 0.5 * special.digamma(1.5) - 1.0
    assert diff[-1] == pytest.approx(constant, abs=1e-4)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("call, error", [
    (lambda: rmt.lyapunov_spectrum(0), ValueError),
    (lambda: rmt.lyapunov_spectrum(2.5), TypeError),
    (lambda: rmt.lyapunov_spectrum(4, variance=-1.0), ValueError),
    (lambda: rmt.lyapunov_qr(4, 0), ValueError),
    (lambda: rmt.gaussian_products(4, [0, 2]), ValueError),
    (lambda: rmt.gaussian_products(4, 2, dtype=torch.int32), ValueError),
    (lambda: rmt.entropy_gap_large_width(-1), ValueError),
    (lambda: rmt.entropy_gap_large_width(float("nan")), ValueError),
    (lambda: rmt.entropy_gap_large_width(2, method="spline"), ValueError),
    (lambda: rmt.entropy_gap_large_width(0.5, method="quadrature"), ValueError),
    (lambda: rmt.entropy_gap_large_depth(-0.1), ValueError),
    (lambda: rmt.entropy_gap_large_depth(2, n=0), ValueError),
    (lambda: rmt.fuss_catalan_moment(2, -0.5), ValueError),
    (lambda: rmt.fuss_catalan_density(np.array([0.0]), 2), ValueError),
])
def test_bad_input_raises(call, error):
    with pytest.raises(error):
        call()
