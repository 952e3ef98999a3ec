"""The rank landscape of the paper's first version (v1 Figure 1): rho over a 2-D slice of parameter space.

The chapter *Effective rank* (``book/effective_rank.ipynb``) draws and quantifies it. A one-layer
map ``W`` and a two-layer map ``W2 W1`` share the same end-to-end matrix at the origin
(``W = W2 W1``). Following Goodfellow et al. (2015), two random directions span a plane through
the parameters: ``f(a, b) = rho(W + a u + b v)`` for one layer and
``f(a, b) = rho((W2 + a u2 + b v2)(W1 + a u1 + b v1))`` for two. Each direction is rescaled to
the Frobenius norm of the weight it perturbs (Li et al. 2018's normalisation, so that ``a = 1``
is a perturbation as large as the weight itself).
"""

from __future__ import annotations

import numpy as np

from support import seeding
from support.checks import check_int, check_real
from support.rank import spectral_entropy


def _direction_like(weight: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A Gaussian direction with the Frobenius norm of ``weight``."""
    u = rng.standard_normal(weight.shape)
    return u * (np.linalg.norm(weight) / np.linalg.norm(u))


def rank_landscape(
    n: int = 4,
    grid: int = 101,
    span: float = 2.0,
    seed: int = 0,
    normalise: bool = True,
) -> dict:
    """rho of the one- and two-layer maps over the ``grid x grid`` square ``[-span, span]^2``.

    Factors ``W1, W2`` have i.i.d. N(0, 1/n) entries and ``W = W2 W1``. Returns a dict with
    ``alpha`` (the grid coordinates, shape ``(grid,)``), ``one_layer`` and ``two_layer``
    (shape ``(grid, grid)``, indexed ``[alpha, beta]``), divided by ``log n`` when ``normalise``
    (so values lie in [0, 1], the range of the paper's z-axis). Both surfaces agree at the origin
    when ``grid`` is odd. See book/effective_rank.ipynb.
    """
    n = check_int(n, "n", minimum=2)
    grid = check_int(grid, "grid", minimum=2)
    span = check_real(span, "span", minimum=0.0, strict=True)
    rng = seeding.generator(seed, "rank-landscape")
    w1 = rng.standard_normal((n, n)) / np.sqrt(n)
    w2 = rng.standard_normal((n, n)) / np.sqrt(n)
    w = w2 @ w1
    u, v = _direction_like(w, rng), _direction_like(w, rng)
    u1, v1, u2, v2 = (_direction_like(x, rng) for x in (w1, w1, w2, w2))
    alpha = np.linspace(-span, span, grid)
    a = alpha[:, None, None, None]
    b = alpha[None, :, None, None]
    one = spectral_entropy(w + a * u + b * v)
    two = spectral_entropy((w2 + a * u2 + b * v2) @ (w1 + a * u1 + b * v1))
    scale = np.log(n) if normalise else 1.0
    return {"alpha": alpha, "one_layer": one / scale, "two_layer": two / scale}


def low_rho_fraction(surface: np.ndarray, thresholds) -> np.ndarray:
    """Fraction of the slice (grid points, i.e. area) where rho is below each threshold.

    ``surface`` has shape ``(..., grid, grid)``; returns shape ``(..., len(thresholds))``.
    """
    surface = np.asarray(surface)
    thresholds = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    if surface.ndim < 2:
        raise ValueError(
            f"surface must have shape (..., grid, grid), got {surface.shape}"
        )
    flat = surface.reshape(*surface.shape[:-2], -1)
    return (flat[..., None, :] < thresholds[:, None]).mean(-1)
