"""Tests of support.simulate: exact reproduction of the sampled matrices, invariance to chunking,
the Bartlett law, the Gaussian-layer shortcut, closed-form limits, precision, and input validation."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from support.rank import spectral_entropy
from support.simulate import (
    BLOCK,
    bartlett_,
    block_generator,
    sample_gram_entropy,
    sample_gram_entropy_depths,
    sample_product_entropy,
)


def _manual_products(n, depth, seed, dist):
    """The first block's products, formed one sample at a time in numpy float64 from the same stream."""
    gen = block_generator(seed, 0)
    draw = (
        (lambda: torch.empty(BLOCK, n, n).normal_(generator=gen))
        if dist == "normal"
        else (lambda: torch.empty(BLOCK, n, n).uniform_(-1, 1, generator=gen))
    )
    prod = draw().double().numpy()
    for _ in range(depth - 1):
        w = draw().double().numpy()
        prod = np.stack([w[i] @ prod[i] for i in range(BLOCK)])
    return prod


@pytest.mark.parametrize("dist", ["normal", "uniform"])
def test_products_match_a_direct_per_sample_computation(dist):
    rho = sample_product_entropy(6, 3, BLOCK, dist=dist, seed=5, bartlett=False)
    expected = spectral_entropy(_manual_products(6, 3, 5, dist))
    np.testing.assert_allclose(rho, expected, atol=1e-10)


@pytest.mark.parametrize("spectrum", ["gram", "svd"])
def test_spectrum_methods_agree(spectrum):
    ref = spectral_entropy(_manual_products(8, 4, 1, "uniform"))
    rho = sample_product_entropy(8, 4, BLOCK, dist="uniform", seed=1, spectrum=spectrum)
    np.testing.assert_allclose(rho, ref, atol=1e-8)


@settings(max_examples=12, deadline=None)
@given(
    n=st.integers(1, 9),
    depth=st.integers(1, 5),
    samples=st.integers(1, 3 * BLOCK),
    dist=st.sampled_from(["normal", "uniform", "residual"]),
    chunk=st.integers(1, 3),
)
def test_same_seed_same_numbers_whatever_the_chunking(n, depth, samples, dist, chunk):
    ref = sample_product_entropy(
        n, depth, samples, dist=dist, seed=3, chunk_size=BLOCK, workers=1
    )
    other = sample_product_entropy(
        n, depth, samples, dist=dist, seed=3, chunk_size=chunk * BLOCK, workers=2
    )
    assert ref.shape == (samples,)
    np.testing.assert_array_equal(ref, other)


def test_seeds_give_different_numbers_and_are_reproducible():
    a = sample_product_entropy(8, 2, 100, seed=0)
    assert np.array_equal(a, sample_product_entropy(8, 2, 100, seed=0))
    assert not np.allclose(a, sample_product_entropy(8, 2, 100, seed=1))


def test_bartlett_factor_law():
    n, batch = 6, 20000
    r = bartlett_(torch.empty(batch, n, n, dtype=torch.float64), block_generator(0, 0))
    assert torch.equal(r, torch.triu(r)), "Bartlett factors are upper triangular"
    diag2 = r.diagonal(dim1=-2, dim2=-1).square().numpy()
    for i in range(n):  # R_ii^2 ~ chi^2 with n - i degrees of freedom
        assert stats.kstest(diag2[:, i], stats.chi2(n - i).cdf).pvalue > 1e-3
    above = r[:, 0, 1:].reshape(-1).numpy()
    assert stats.kstest(above, "norm").pvalue > 1e-3


def test_bartlett_products_have_the_gaussian_law_of_rho():
    bart = sample_product_entropy(8, 4, 3000, seed=0)
    full = sample_product_entropy(8, 4, 3000, seed=1, bartlett=False)
    assert stats.ks_2samp(bart, full).pvalue > 1e-3
    assert abs(bart.mean() - full.mean()) < 4 * math.hypot(
        bart.std(), full.std()
    ) / math.sqrt(3000)


def test_single_factor_approaches_the_quarter_circle_limit():
    # rho - log n -> log(0.8050) for one N(0,1) n x n matrix as n -> infinity (quarter-circle law)
    rho = sample_product_entropy(128, 1, BLOCK, seed=0)
    assert abs(rho.mean() - math.log(128) - math.log(0.8050)) < 0.01


def test_depth_lowers_rho_at_n16():
    means = [sample_product_entropy(16, d, 256, seed=0).mean() for d in (1, 4, 16)]
    assert means[0] > means[1] + 0.3 > means[2] + 0.6


def test_closed_forms_of_the_other_inits():
    n = 10
    orth = sample_product_entropy(n, 8, 70, dist="orthogonal")
    np.testing.assert_allclose(orth, math.log(n), atol=1e-9)
    ident = sample_product_entropy(n, 5, 70, dist="residual", residual_scale=0.0)
    np.testing.assert_allclose(ident, math.log(n), atol=1e-12)
    low = sample_product_entropy(n, 3, 70, dist="lowrank", rank=3)
    assert np.all(low <= math.log(3) + 1e-6) and np.all(low > 0)


def test_float32_agrees_with_float64():
    r32 = sample_product_entropy(64, 16, BLOCK, dtype=torch.float32)
    r64 = sample_product_entropy(64, 16, BLOCK, dtype=torch.float64)
    assert np.abs(r32 - r64).max() < 1e-4


def test_block_streams_are_seed_sequence_streams():
    """The block generators' states are SeedSequence([seed, block]) states, as they always were,
    so stored results made before the seeding helper existed reproduce."""
    for seed, block in ((0, 0), (3, 17)):
        state = np.random.SeedSequence([seed, block]).generate_state(1, np.uint64)[0]
        expected = torch.empty(5).normal_(
            generator=torch.Generator().manual_seed(int(state))
        )
        assert torch.equal(
            torch.empty(5).normal_(generator=block_generator(seed, block)), expected
        )


def _manual_gram_entropy(
    depth, activation, kernel, dist, inputs=7, input_dim=3, width=5, seed=4
):
    """The first block's rho(K), one network at a time in numpy float64, from the sampler's stream
    (Gaussian inputs, then one full weight matrix per layer)."""
    gen = block_generator(seed, 0)

    def draw(*shape, law=dist):
        x = torch.empty(BLOCK, *shape)
        x = (
            x.normal_(generator=gen)
            if law == "normal"
            else x.uniform_(-1, 1, generator=gen)
        )
        return x.double().numpy()

    h = draw(inputs, input_dim, law="normal")
    for layer in range(depth):
        if layer and activation == "relu":
            h = np.maximum(h, 0)
        fan_in = h.shape[-1]
        w = draw(width, fan_in) * (
            1 / math.sqrt(fan_in) if dist == "normal" else math.sqrt(3 / fan_in)
        )
        h = np.stack([h[i] @ w[i].T for i in range(BLOCK)])
    if kernel == "centred":
        h = h - h.mean(axis=1, keepdims=True)
    return spectral_entropy(np.einsum("bij,bkj->bik", h, h))


@pytest.mark.parametrize(
    "activation,kernel,dist",
    [
        ("linear", "raw", "normal"),
        ("relu", "centred", "normal"),
        ("relu", "raw", "uniform"),
    ],
)
def test_gram_matches_a_direct_computation(activation, kernel, dist):
    rho = sample_gram_entropy(
        3,
        BLOCK,
        activation=activation,
        kernel=kernel,
        dist=dist,
        inputs=7,
        input_dim=3,
        width=5,
        shortcut=False,
        seed=4,
    )
    np.testing.assert_allclose(
        rho, _manual_gram_entropy(3, activation, kernel, dist), atol=1e-8
    )


@pytest.mark.parametrize(
    "activation,kernel", [("relu", "raw"), ("relu", "centred"), ("linear", "centred")]
)
def test_gaussian_shortcut_has_the_law_of_full_weight_matrices(activation, kernel):
    kw = {
        "activation": activation,
        "kernel": kernel,
        "inputs": 6,
        "input_dim": 4,
        "width": 12,
    }
    fast = sample_gram_entropy_depths([1, 3], 2048, seed=0, **kw)
    full = sample_gram_entropy_depths([1, 3], 2048, seed=1, shortcut=False, **kw)
    for a, b in zip(fast, full):
        assert stats.ks_2samp(a, b).pvalue > 1e-3


def test_a_depth_one_network_is_linear_whatever_the_activation():
    relu = sample_gram_entropy(1, 100, activation="relu", seed=2)
    np.testing.assert_array_equal(
        relu, sample_gram_entropy(1, 100, activation="linear", seed=2)
    )
    assert not np.allclose(
        sample_gram_entropy(2, 100, activation="relu", seed=2),
        sample_gram_entropy(2, 100, activation="linear", seed=2),
    )


@pytest.mark.parametrize("shortcut", [True, False])
def test_gram_depth_checkpoints_equal_separate_runs(shortcut):
    kw = {"inputs": 5, "input_dim": 3, "width": 7, "seed": 9, "shortcut": shortcut}
    path = sample_gram_entropy_depths([1, 2, 4], 70, chunk_size=BLOCK, **kw)
    assert path.shape == (3, 70)
    for row, d in zip(path, [1, 2, 4]):
        np.testing.assert_array_equal(row, sample_gram_entropy(d, 70, workers=1, **kw))


def test_gram_chunking_and_rank_bounds():
    kw = {
        "activation": "linear",
        "kernel": "raw",
        "inputs": 12,
        "input_dim": 4,
        "width": 6,
    }
    a = sample_gram_entropy(3, 2 * BLOCK, chunk_size=BLOCK, **kw)
    b = sample_gram_entropy(3, 2 * BLOCK, workers=1, **kw)
    np.testing.assert_array_equal(a, b)
    assert np.all(a <= math.log(4) + 1e-9)  # a linear network's K has rank <= input_dim
    centred = sample_gram_entropy(2, BLOCK, inputs=6, input_dim=10, width=20)
    # centring removes one dimension of N = 6 inputs
    assert np.all(centred <= math.log(5) + 1e-9)
    assert np.all(centred > 0)


def test_default_construction_depth_effect():
    """The book's construction: the raw ReLU kernel collapses with depth, the centred one far less."""
    raw = sample_gram_entropy_depths([1, 16], 128, kernel="raw").mean(1)
    centred = sample_gram_entropy_depths([1, 16], 128).mean(1)
    assert raw[1] < 0.5 < raw[0] - 1.5
    assert centred[1] > raw[1] + 0.5


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"n": 0, "depth": 1, "samples": 1}, "n"),
        ({"n": 2, "depth": 0, "samples": 1}, "depth"),
        ({"n": 2, "depth": 1, "samples": 0}, "samples"),
        ({"n": 2, "depth": 1, "samples": 1, "dist": "cauchy"}, "dist"),
        ({"n": 2, "depth": 1, "samples": 1, "dist": "lowrank"}, "rank"),
        ({"n": 2, "depth": 1, "samples": 1, "dist": "lowrank", "rank": 3}, "rank"),
        ({"n": 2, "depth": 1, "samples": 1, "chunk_size": 10}, "chunk_size"),
        ({"n": 2, "depth": 1, "samples": 1, "dtype": torch.float16}, "dtype"),
        ({"n": 2, "depth": 1, "samples": 1, "spectrum": "qr"}, "spectrum"),
    ],
)
def test_bad_input_raises_naming_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        sample_product_entropy(**kwargs)


def test_bad_gram_input():
    with pytest.raises(ValueError, match="activation"):
        sample_gram_entropy(2, 4, activation="softsign")
    with pytest.raises(ValueError, match="depth"):
        sample_gram_entropy(0, 4)
    with pytest.raises(ValueError, match="dist"):
        sample_gram_entropy(2, 4, dist="orthogonal")
    with pytest.raises(ValueError, match="kernel"):
        sample_gram_entropy(2, 4, kernel="cosine")
    with pytest.raises(ValueError, match="inputs"):
        sample_gram_entropy(2, 4, inputs=1)
    with pytest.raises(ValueError, match="increasing"):
        sample_gram_entropy_depths([2, 2], 4)
    with pytest.raises(ValueError, match="dtype"):
        sample_gram_entropy(2, 4, dtype=torch.float16)
    with pytest.raises(TypeError, match="n"):
        sample_product_entropy(2.5, 1, 1)


def test_block_triangular_products_equal_dense_products_of_bartlett_factors():
    from support.simulate import bartlett_products

    n, depth = 7, 4
    prod = next(
        bartlett_products([block_generator(2, 0)], n, [depth], torch.float64, "cpu")
    )
    gen = block_generator(2, 0)
    dense = bartlett_(torch.empty(BLOCK, n, n, dtype=torch.float64), gen)
    for _ in range(depth - 1):
        dense = bartlett_(torch.empty(BLOCK, n, n, dtype=torch.float64), gen) @ dense
    np.testing.assert_allclose(
        spectral_entropy(prod), spectral_entropy(dense), atol=1e-10
    )
    assert torch.equal(prod, torch.triu(prod))


def test_sweep_shape_and_cells():
    from support.simulate import product_entropy_sweep

    rho = product_entropy_sweep([4, 6], [1, 3], 10, seed=2)
    assert rho.shape == (2, 2, 10)
    np.testing.assert_array_equal(rho[1, 1], sample_product_entropy(6, 3, 10, seed=2))


def test_volume_fraction_counts():
    from support.simulate import volume_fraction

    rho = np.array([[0.1, 0.5, 0.9, 1.3], [1.0, 1.0, 1.0, 2.0]])
    np.testing.assert_allclose(
        volume_fraction(rho, [0.5, 1.0, 5.0]), [[0.25, 0.75, 1.0], [0.0, 0.0, 1.0]]
    )
    with pytest.raises(ValueError, match="thresholds"):
        volume_fraction(rho, [])


def test_distribution_mode_of_a_normal_sample():
    from support.simulate import distribution_mode

    x = np.random.default_rng(0).normal(1.5, 0.1, 20000)
    assert abs(distribution_mode(x) - 1.5) < 0.03  # KDE mode noise ~ 0.01 here
    assert distribution_mode([2.0, 2.0, 2.0]) == 2.0


@pytest.mark.parametrize("dist", ["normal", "uniform"])
def test_depth_checkpoints_equal_separate_runs(dist):
    from support.simulate import sample_product_entropy_depths

    depths = [1, 2, 5]
    path = sample_product_entropy_depths(
        5, depths, 70, dist=dist, seed=9, chunk_size=BLOCK
    )
    assert path.shape == (3, 70)
    for row, d in zip(path, depths):
        np.testing.assert_array_equal(
            row, sample_product_entropy(5, d, 70, dist=dist, seed=9)
        )
    with pytest.raises(ValueError, match="increasing"):
        sample_product_entropy_depths(5, [2, 2], 4)
