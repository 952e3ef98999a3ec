"""Tests of support.rank: spectral entropy (the paper's rho), effective, stable and numerical rank.

Property-based (hypothesis) tests check the invariances and bounds proved in
book/effective_rank.ipynb against matrices built with a known spectrum; known values come from
closed forms.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import ortho_group

from support import rank

SETTINGS = settings(max_examples=60, deadline=None)

shapes = st.tuples(st.integers(1, 7), st.integers(1, 7))
entries = st.floats(-10, 10, allow_nan=False, allow_infinity=False, width=64)


@st.composite
def matrices(draw):
    """A nonzero matrix with bounded entries (an all-zero one has no rho)."""
    a = draw(arrays(np.float64, draw(shapes), elements=entries))
    assume(np.abs(a).max() > 1e-3)
    return a


@st.composite
def spectra(draw):
    """A spectrum ``s`` (descending, with at least one positive value) and the matrix U diag(s) V^T."""
    m, n = draw(shapes)
    k = min(m, n)
    s = np.array(
        sorted(
            draw(st.lists(st.floats(0.0, 5.0), min_size=k, max_size=k)), reverse=True
        )
    )
    assume(s[0] > 1e-2)
    s[s < 1e-6 * s[0]] = 0.0  # exact zeros or clearly nonzero values only
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    u = ortho_group.rvs(m, random_state=rng) if m > 1 else np.ones((1, 1))
    v = ortho_group.rvs(n, random_state=rng) if n > 1 else np.ones((1, 1))
    a = u[:, :k] @ np.diag(s) @ v[:, :k].T
    return s, a


def direct_entropy(s):
    """Entropy of s / sum(s) by the definition (independent reference, zeros skipped)."""
    p = np.asarray([x for x in s if x > 0]) / sum(s)
    return float(-(p * np.log(p)).sum())


# ----------------------------------------------------------------------------- invariances
@SETTINGS
@given(matrices(), st.floats(1e-3, 1e3), st.booleans())
def test_rho_invariant_under_scaling(a, c, negative):
    c = -c if negative else c
    assert rank.spectral_entropy(c * a) == pytest.approx(
        rank.spectral_entropy(a), abs=1e-9
    )


@SETTINGS
@given(matrices())
def test_rho_invariant_under_transposition(a):
    assert rank.spectral_entropy(a.T) == pytest.approx(
        rank.spectral_entropy(a), abs=1e-10
    )


@SETTINGS
@given(matrices(), st.integers(0, 2**31 - 1))
def test_rho_invariant_under_orthogonal_transforms(a, seed):
    rng = np.random.default_rng(seed)
    m, n = a.shape
    u = ortho_group.rvs(m, random_state=rng) if m > 1 else -np.ones((1, 1))
    v = ortho_group.rvs(n, random_state=rng) if n > 1 else -np.ones((1, 1))
    assert rank.spectral_entropy(u @ a @ v) == pytest.approx(
        rank.spectral_entropy(a), abs=1e-8
    )


# ----------------------------------------------------------------------------- bounds and equality
@SETTINGS
@given(spectra())
def test_rho_matches_definition_on_known_spectrum(case):
    s, a = case
    assert rank.spectral_entropy(a) == pytest.approx(direct_entropy(s), abs=1e-8)


@SETTINGS
@given(spectra())
def test_erank_between_one_and_rank(case):
    s, a = case
    r = int((s > 0).sum())
    e = rank.effective_rank(a)
    assert 1.0 - 1e-9 <= e <= r + 1e-8
    assert rank.numerical_rank(a) == r


@SETTINGS
@given(
    st.integers(1, 7),
    st.integers(0, 7),
    st.floats(1e-2, 1e2),
    st.integers(0, 2**31 - 1),
)
def test_erank_equals_rank_when_nonzero_singular_values_are_equal(
    r, extra, value, seed
):
    m = r + extra
    rng = np.random.default_rng(seed)
    u = ortho_group.rvs(m, random_state=rng) if m > 1 else np.ones((1, 1))
    a = value * u[:, :r] @ u[:, :r].T  # rank r, r equal singular values, m x m
    assert rank.effective_rank(a) == pytest.approx(r, rel=1e-9)
    assert rank.spectral_entropy(a) == pytest.approx(math.log(r), abs=1e-9)


@SETTINGS
@given(spectra())
def test_erank_below_rank_when_nonzero_singular_values_differ(case):
    s, a = case
    nonzero = s[s > 0]
    assume(nonzero.max() / nonzero.min() > 1.01)
    # strict, with a margin: log r - H(p) = KL(p || uniform) >= |p - u|_1^2 / 2 >= |p - u|_2^2 / 2 (Pinsker)
    p = nonzero / nonzero.sum()
    margin = 0.5 * ((p - 1 / len(p)) ** 2).sum()
    assert rank.spectral_entropy(a) < math.log(len(p)) - 0.9 * margin


@SETTINGS
@given(spectra())
def test_stable_rank_below_effective_rank_below_rank(case):
    """srank = sum s^2 / s_1^2 <= sum s / s_1 <= exp(H(p)) <= rank (proved in the chapter)."""
    s, a = case
    e = rank.effective_rank(a)
    srank = rank.stable_rank(a)
    assert srank == pytest.approx((s**2).sum() / s[0] ** 2, rel=1e-9)
    assert srank <= s.sum() / s[0] + 1e-9 <= e + 2e-9
    assert e <= rank.numerical_rank(a) + 1e-8


# ----------------------------------------------------------------------------- known values
def test_known_values():
    assert rank.spectral_entropy(np.eye(5)) == pytest.approx(math.log(5))
    assert rank.spectral_entropy(
        np.outer([1.0, 2.0, 3.0], [1.0, -1.0])
    ) == pytest.approx(0.0, abs=1e-12)
    assert rank.spectral_entropy(np.diag([1.0, 2.0, 3.0])) == pytest.approx(
        -sum(p * math.log(p) for p in (1 / 6, 2 / 6, 3 / 6))
    )
    assert rank.effective_rank(np.diag([2.0, 2.0, 0.0])) == pytest.approx(2.0)
    assert rank.entropy_of_spectrum(np.array([1.0, 0.0, 0.0])) == 0.0
    assert rank.max_entropy(3, 8) == pytest.approx(math.log(3))
    assert rank.numerical_rank(np.diag([1.0, 1e-3, 1e-9]), rtol=1e-6) == 2
    assert rank.stable_rank(np.diag([2.0, 1.0])) == pytest.approx(1.25)


def test_lists_and_integer_inputs():
    assert rank.spectral_entropy([[1, 0], [0, 1]]) == pytest.approx(math.log(2))
    assert float(
        rank.spectral_entropy(torch.eye(3, dtype=torch.int64))
    ) == pytest.approx(math.log(3))
    assert float(
        rank.spectral_entropy(torch.eye(3, dtype=torch.float16))
    ) == pytest.approx(math.log(3))


# ----------------------------------------------------------------------------- backends and batching
@settings(max_examples=30, deadline=None)
@given(st.integers(1, 4), shapes, st.integers(0, 2**31 - 1))
def test_numpy_torch_and_batched_paths_agree(batch, shape, seed):
    x = np.random.default_rng(seed).standard_normal((batch, *shape))
    per_matrix = np.array([rank.spectral_entropy(m) for m in x])
    batched = rank.spectral_entropy(x)
    assert (
        isinstance(batched, np.ndarray)
        and batched.shape == (batch,)
        and batched.dtype == np.float64
    )
    np.testing.assert_allclose(batched, per_matrix, atol=1e-12)
    t64 = rank.spectral_entropy(torch.from_numpy(x))
    assert isinstance(t64, torch.Tensor) and t64.dtype == torch.float64
    np.testing.assert_allclose(t64.numpy(), per_matrix, atol=1e-10)
    t32 = rank.spectral_entropy(torch.from_numpy(x).float())
    assert t32.dtype == torch.float64  # entropy in float64 whatever the input precision
    np.testing.assert_allclose(t32.numpy(), per_matrix, atol=1e-4)
    for fn in (rank.effective_rank, rank.stable_rank, rank.numerical_rank):
        np.testing.assert_allclose(
            np.asarray(fn(torch.from_numpy(x))), fn(x), rtol=1e-9
        )


def test_nested_batch_dimensions():
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    out = rank.spectral_entropy(x)
    assert out.shape == (2, 3)
    assert out[1, 2] == pytest.approx(rank.spectral_entropy(x[1, 2]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_matches_cpu():
    x = torch.randn(8, 16, 16, dtype=torch.float64)
    gpu = rank.spectral_entropy(x.cuda())
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), rank.spectral_entropy(x))


# ----------------------------------------------------------------------------- bad input
BAD = [
    (np.ones(3), "shape"),
    (np.ones((0, 3)), "empty"),
    (np.zeros((3, 3)), "all-zero"),
    (np.array([[1.0, np.nan], [0.0, 1.0]]), "NaN or Inf"),
    (np.array([[1.0, np.inf], [0.0, 1.0]]), "NaN or Inf"),
    (np.stack([np.eye(2), np.zeros((2, 2))]), "all-zero"),
]


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("x, message", BAD)
def test_bad_input_raises_value_error(x, message, backend):
    if backend == "torch":
        x = torch.from_numpy(x)
    for fn in (rank.spectral_entropy, rank.effective_rank):
        with pytest.raises(ValueError, match=message):
            fn(x)


def test_stable_rank_of_zero_matrix_raises():
    with pytest.raises(ValueError, match="all-zero"):
        rank.stable_rank(np.zeros((2, 2)))
