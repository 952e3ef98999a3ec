"""Tests of support.arccos_kernels: the arc-cosine map and the infinite-width kernels."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize
from scipy.special import xlogy

from support import arccos_kernels as k
from support.rank import (
    spectral_entropy,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_arccos_map_closed_values_monotone_and_convex():
    assert k.arccos_correlation(0.0) == pytest.approx(1 / math.pi)
    assert k.arccos_correlation(1.0) == pytest.approx(1.0)
    assert k.arccos_correlation(-1.0) == pytest.approx(0.0, abs=1e-12)
    c = np.linspace(-1, 1, 401)
    f = k.arccos_correlation(c)
    assert np.all(np.diff(f) > 0) and np.all(np.diff(f, 2) > 0)
    assert np.all(f >= c - 1e-12)  # correlations only grow


@pytest.mark.parametrize("c", [-0.8, -0.3, 0.0, 0.4, 0.9])
def test_arccos_map_is_the_correlation_of_relu_features(c):
    z = np.random.default_rng(0).standard_normal((2, 400_000))
    u, v = z[0], c * z[0] + math.sqrt(1 - c * c) * z[1]
    ru, rv = np.maximum(u, 0), np.maximum(v, 0)
    assert np.mean(ru * rv) / np.mean(ru * ru) == pytest.approx(
        float(k.arccos_correlation(c)), abs=5e-3
    )


def test_infinite_width_relu_layer_matches_a_very_wide_layer():
    """One ReLU then a linear layer of width M: (1/M) Z Z^T -> D^(1/2) f(C) D^(1/2) / 2 for the
    pre-activations of a wide layer; the library drops the positive factor."""
    x = np.random.default_rng(1).standard_normal((5, 3))
    gram = x @ x.T
    z = np.linalg.cholesky(gram + 1e-12 * np.eye(5)) @ np.random.default_rng(
        2
    ).standard_normal((5, 400_000))
    wide = np.maximum(z, 0) @ np.maximum(z, 0).T / z.shape[1]
    np.testing.assert_allclose(
        wide, k.infinite_width_gram(x, 2) / 2, atol=0.02 * np.abs(gram).max()
    )
    np.testing.assert_allclose(k.infinite_width_gram(x, 1), gram)
    np.testing.assert_allclose(k.infinite_width_gram(x, 5, "linear"), gram)


def test_infinite_width_entropy_and_centring():
    x = np.random.default_rng(3).standard_normal((4, 6, 6))  # a batch of 4 input sets
    lin = k.infinite_width_gram_entropy(x, [1, 2, 8], "linear")
    assert lin.shape == (3, 4) and np.allclose(
        lin, lin[0]
    )  # linear: no depth effect at infinite width
    phi = x - x.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(
        k.centre_gram(x @ np.swapaxes(x, 1, 2)),
        phi @ np.swapaxes(phi, 1, 2),
        atol=1e-12,
    )
    raw = k.infinite_width_gram_entropy(x, [1, 4, 16], "relu", kernel="raw")
    assert np.all(np.diff(raw, axis=0) < 0)
    with pytest.raises(ValueError, match="kernel"):
        k.infinite_width_gram_entropy(x, [1], kernel="cosine")
    with pytest.raises(ValueError, match="activation"):
        k.infinite_width_gram(x, 2, "tanh")


def test_raw_relu_ceiling_is_exact_for_equicorrelated_inputs():
    # equal norms, equal correlations c0: K = (1 - c) I + c 11^T with c = f^(d-1)(c0)
    for n, depth in ((10, 2), (16, 8)):
        for x, c0 in ((np.eye(n), 0.0), (k.simplex_inputs(n), -1 / (n - 1))):
            c = c0
            for _ in range(depth - 1):
                c = float(k.arccos_correlation(c))
            a = (1 + (n - 1) * c) / n
            b = (1 - a) / (n - 1)
            expected = -xlogy(a, a) - (n - 1) * xlogy(b, b)
            exact = float(spectral_entropy(k.infinite_width_gram(x, depth)))
            assert exact == pytest.approx(expected)
            assert float(k.raw_relu_entropy_ceiling(x @ x.T, depth)) == pytest.approx(
                expected
            )
    # ten orthogonal inputs at depths 2, 4, 8, 16
    np.testing.assert_allclose(
        [float(k.raw_relu_entropy_ceiling(np.eye(10), d)) for d in (2, 4, 8, 16)],
        [2.02, 1.43, 0.84, 0.40],
        atol=0.006,
    )


def test_simplex_inputs_have_equal_norms_and_the_most_negative_correlation():
    x = k.simplex_inputs(5)
    gram = x @ x.T
    np.testing.assert_allclose(np.diag(gram), np.full(5, gram[0, 0]))
    corr = gram / gram[0, 0]
    np.testing.assert_allclose(corr[~np.eye(5, dtype=bool)], -1 / 4)
    assert (
        np.linalg.matrix_rank(gram) == 4
    )  # the weighted mean correlation is at -s/(1-s)


def test_raw_relu_bound_is_attained_at_the_simplex_and_beats_orthogonal_inputs():
    for n in (2, 3, 10, 16):
        for depth in range(2, 17):
            bound = k.raw_relu_entropy_bound(n, depth)
            simplex = float(
                spectral_entropy(k.infinite_width_gram(k.simplex_inputs(n), depth))
            )
            orthogonal = float(
                spectral_entropy(k.infinite_width_gram(np.eye(n), depth))
            )
            assert simplex == pytest.approx(bound, abs=1e-9)
            assert orthogonal < bound
    # 16 inputs at depths 2, 4, 8, 16, as re-derived independently of this code
    depths = (2, 4, 8, 16)
    np.testing.assert_allclose(
        [k.raw_relu_entropy_bound(16, d) for d in depths],
        [2.448, 1.701, 0.970, 0.459],
        atol=6e-4,
    )
    np.testing.assert_allclose(
        [float(k.raw_relu_entropy_ceiling(np.eye(16), d)) for d in depths],
        [2.385, 1.662, 0.954, 0.455],
        atol=6e-4,
    )


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 8),
    dim=st.integers(1, 8),
    depth=st.integers(1, 12),
    seed=st.integers(0, 10_000),
    near_simplex=st.booleans(),
)
def test_raw_relu_ceiling_and_bound_hold_for_every_input_set(
    n, dim, depth, seed, near_simplex
):
    rng = np.random.default_rng(seed)
    if near_simplex:  # the most negatively correlated inputs, perturbed
        x = k.simplex_inputs(n) + 0.05 * rng.standard_normal((n, n))
    else:
        x = rng.standard_normal((n, dim))
    x = x * rng.uniform(0.2, 3.0, (n, 1))  # unequal norms
    exact = float(spectral_entropy(k.infinite_width_gram(x, depth)))
    ceiling = float(k.raw_relu_entropy_ceiling(x @ x.T, depth))
    assert exact <= ceiling + 1e-9
    if depth >= 2:
        assert ceiling <= k.raw_relu_entropy_bound(n, depth) + 1e-9


@pytest.mark.parametrize("n, depth", [(3, 2), (4, 3), (5, 6)])
def test_numerical_maximum_over_inputs_is_the_simplex_bound(n, depth):
    # maximise rho of the exact kernel over all inputs from random starts: the best found
    # reaches the bound and never exceeds it
    def negative_rho(flat):
        x = flat.reshape(n, n)
        return -float(spectral_entropy(k.infinite_width_gram(x, depth)))

    rng = np.random.default_rng(n * 100 + depth)
    best = max(
        -optimize.minimize(
            negative_rho,
            rng.standard_normal(n * n),
            method="Nelder-Mead",
            options={"maxiter": 20_000, "xatol": 1e-10, "fatol": 1e-12},
        ).fun
        for _ in range(4)
    )
    bound = k.raw_relu_entropy_bound(n, depth)
    assert best <= bound + 1e-9
    assert best == pytest.approx(bound, abs=1e-4)


def test_infinite_width_rejects_bad_inputs():
    with pytest.raises(ValueError, match="nonzero"):
        k.infinite_width_gram(np.array([[1.0, 0.0], [0.0, 0.0]]), 3)
    with pytest.raises(ValueError, match="gram"):
        k.raw_relu_entropy_ceiling(np.ones((2, 3)), 2)
    with pytest.raises(ValueError, match="depth"):
        k.raw_relu_entropy_ceiling(np.eye(3), 0)
    with pytest.raises(ValueError, match="inputs"):
        k.raw_relu_entropy_bound(1, 3)
    with pytest.raises(ValueError, match="depth"):
        k.raw_relu_entropy_bound(3, 1)  # no ReLU: the simplex is not the maximiser
