"""Tests of support.landscape (the rank landscape of book/effective_rank.ipynb)."""

import numpy as np
import pytest

from support import landscape, seeding, simulate
from support.rank import spectral_entropy


def test_surfaces_share_the_origin_and_are_normalised():
    out = landscape.rank_landscape(n=4, grid=11, seed=3)
    assert out["one_layer"].shape == out["two_layer"].shape == (11, 11)
    assert out["one_layer"][5, 5] == pytest.approx(out["two_layer"][5, 5], abs=1e-12)
    for key in ("one_layer", "two_layer"):
        assert np.all((out[key] >= -1e-12) & (out[key] <= 1 + 1e-12))


def test_surface_matches_direct_computation_at_a_corner():
    """Rebuild the corner (alpha, beta) = (span, -span) by hand from the same random draws."""
    n, seed = 3, 7
    rng = seeding.generator(seed, "rank-landscape")
    w1 = rng.standard_normal((n, n)) / np.sqrt(n)
    w2 = rng.standard_normal((n, n)) / np.sqrt(n)
    w = w2 @ w1
    dirs = []
    for ref in (w, w, w1, w1, w2, w2):
        d = rng.standard_normal(ref.shape)
        dirs.append(d * np.linalg.norm(ref) / np.linalg.norm(d))
    u, v, u1, v1, u2, v2 = dirs
    out = landscape.rank_landscape(n=n, grid=5, span=1.5, seed=seed, normalise=False)
    a, b = 1.5, -1.5
    assert out["one_layer"][-1, 0] == pytest.approx(spectral_entropy(w + a * u + b * v))
    assert out["two_layer"][-1, 0] == pytest.approx(
        spectral_entropy((w2 + a * u2 + b * v2) @ (w1 + a * u1 + b * v1))
    )


def test_low_rho_fraction():
    surface = np.array([[0.1, 0.5], [0.7, 0.9]])
    np.testing.assert_allclose(
        landscape.low_rho_fraction(surface, [0.0, 0.6, 1.0]), [0.0, 0.5, 1.0]
    )
    stacked = np.stack([surface, 1 - surface])
    assert landscape.low_rho_fraction(stacked, 0.55).shape == (2, 1)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"n": 1}, ValueError, "n must be >= 2"),
        ({"grid": 1}, ValueError, "grid must be >= 2"),
        ({"span": 0.0}, ValueError, "span must be > 0"),
        ({"span": float("nan")}, ValueError, "span must be finite"),
        ({"n": 2.5}, TypeError, "n must be an integer"),
    ],
)
def test_bad_input(kwargs, error, message):
    with pytest.raises(error, match=message):
        landscape.rank_landscape(**kwargs)


def test_low_rho_fraction_needs_a_surface():
    with pytest.raises(ValueError, match="surface must have shape"):
        landscape.low_rho_fraction(np.ones(3), 0.5)


@pytest.mark.parametrize("n", [3, 6, 8])
def test_two_layers_put_more_volume_on_low_rho_at_other_sizes(n):
    """The chapter's comparison at n = 4 is not special: at every threshold where the fractions
    differ, two-layer products put more initialisation volume below it (2,000 draws each)."""
    taus = np.linspace(0.5, 0.95, 10)
    one, two = (
        simulate.volume_fraction(
            simulate.sample_product_entropy(n, d, 2000, seed=1) / np.log(n), taus
        )
        for d in (1, 2)
    )
    assert np.all(two >= one - 0.02) and np.any(two > one + 0.1)
