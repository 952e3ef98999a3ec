"""Arc-cosine kernels: the Gram matrix a random ReLU network gives its inputs as its width goes to
infinity, and how high rho of that kernel can be.

The chapter *Finite-width simulations* (``book/finite_width.ipynb``) derives and uses them (the
paper's Observation 1). For a network the paper measures rank on a kernel: the Gram matrix
``K = Phi Phi^T`` of the embeddings ``Phi`` (``N x width``, one row per input); ``rho(K)`` is
the entropy of K's normalised eigenvalues (:func:`support.rank.gram_entropy`).

* :func:`arccos_correlation`: Cho & Saul's arc-cosine map, the correlation a ReLU layer passes on;
* :func:`infinite_width_gram`: the kernel of the Observation-1 construction of
  ``support.simulate.sample_gram_entropy`` as width -> infinity;
* :func:`raw_relu_entropy_ceiling`: how high rho of the uncentred ReLU kernel of given inputs
  can be, and :func:`raw_relu_entropy_bound`: how high it can be for any inputs, attained by
  :func:`simplex_inputs`.

Trained networks and their kernels are :mod:`support.mlp_training`.
"""

from __future__ import annotations

import numpy as np
from scipy.special import xlogy

from support.checks import check_int
from support.rank import spectral_entropy


def arccos_correlation(c):
    """Cho & Saul's arc-cosine map of degree 1: the correlation of ``relu(u)`` and ``relu(v)``
    (second moments, not centred) for jointly Gaussian, zero-mean ``u, v`` of correlation ``c``,

    ``f(c) = (sqrt(1 - c^2) + (pi - arccos c) c) / pi``,

    so ``f(0) = 1/pi``, ``f(1) = 1``; increasing and convex on ``[-1, 1]``. Elementwise on numpy
    arrays (``c`` is clipped to ``[-1, 1]`` against rounding). Derived in *Finite-width
    simulations*.
    """
    c = np.clip(np.asarray(c, dtype=np.float64), -1.0, 1.0)
    return (np.sqrt(1.0 - c * c) + (np.pi - np.arccos(c)) * c) / np.pi


def _correlations(gram: np.ndarray):
    """Norms and correlation matrices of input Gram matrices ``(..., N, N)``."""
    gram = np.asarray(gram, dtype=np.float64)
    if gram.ndim < 2 or gram.shape[-1] != gram.shape[-2] or gram.shape[-1] < 2:
        raise ValueError(
            f"gram must have shape (..., N, N) with N >= 2, got {gram.shape}"
        )
    norms = np.sqrt(np.diagonal(gram, axis1=-2, axis2=-1))
    if not np.all(norms > 0):
        raise ValueError("gram: every input must be nonzero (positive diagonal)")
    return norms, gram / (norms[..., :, None] * norms[..., None, :])


def infinite_width_gram(x, depth: int, activation: str = "relu") -> np.ndarray:
    """Kernel of the Observation-1 construction (``support.simulate.sample_gram_entropy``) at
    infinite width, up to a positive factor, for inputs ``x`` (``(..., N, input_dim)``).

    A linear layer of width -> infinity with N(0, 1/fan_in) weights maps the Gram matrix ``G`` of
    its inputs to ``G`` (law of large numbers over its units); a ReLU in front of it maps ``G`` to
    ``D^{1/2} f(C) D^{1/2} / 2``, ``C`` the correlations and ``D`` the diagonal of ``G``, ``f``
    :func:`arccos_correlation` applied entrywise. A depth-``d`` network has ``d - 1`` ReLUs, so
    its kernel is ``D^{1/2} f^{d-1}(C) D^{1/2}`` times ``2^{1-d}`` (dropped: rho is scale
    invariant); for ``activation="linear"`` it is ``x x^T`` at every depth. Float64 numpy.
    """
    depth = check_int(depth, "depth")
    if activation not in ("linear", "relu"):
        raise ValueError(
            f"activation must be 'linear' or 'relu' (closed forms), got {activation!r}"
        )
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 2:
        raise ValueError(f"x must have shape (..., N, input_dim), got {x.shape}")
    gram = x @ np.swapaxes(x, -1, -2)
    if activation == "linear" or depth == 1:
        return gram
    norms, corr = _correlations(gram)
    for _ in range(depth - 1):
        corr = arccos_correlation(corr)
    return corr * norms[..., :, None] * norms[..., None, :]


def centre_gram(gram) -> np.ndarray:
    """``J K J`` with ``J = I - 11^T/N``: the Gram matrix of the embeddings minus their mean over
    the ``N`` inputs, computed from ``K`` (``(..., N, N)``) alone."""
    gram = np.asarray(gram, dtype=np.float64)
    centred = gram - gram.mean(axis=-1, keepdims=True)
    return centred - centred.mean(axis=-2, keepdims=True)


def infinite_width_gram_entropy(
    x, depths, activation: str = "relu", kernel: str = "centred"
) -> np.ndarray:
    """rho(K) of :func:`infinite_width_gram` at each of ``depths``: shape ``(len(depths), ...)``
    for inputs ``x`` (``(..., N, input_dim)``); ``kernel`` is "centred" (:func:`centre_gram`) or
    "raw", as in ``support.simulate.sample_gram_entropy``."""
    if kernel not in ("centred", "raw"):
        raise ValueError(f"kernel must be 'centred' or 'raw', got {kernel!r}")
    rows = []
    for depth in depths:
        gram = infinite_width_gram(x, depth, activation)
        rows.append(
            spectral_entropy(centre_gram(gram) if kernel == "centred" else gram)
        )
    return np.stack(rows)


def _top_share_entropy(share, n):
    """Largest entropy of a distribution on ``n`` points whose largest mass is ``share`` (>= 1/n):
    the rest spread evenly, ``-a log a - (1 - a) log((1 - a) / (n - 1))``."""
    rest = np.clip(1.0 - share, 0.0, None)
    return -xlogy(share, share) - xlogy(rest, rest / (n - 1))


def raw_relu_entropy_ceiling(gram, depth: int):
    """Upper bound on rho of the uncentred infinite-width ReLU kernel (:func:`infinite_width_gram`)
    after ``depth - 1`` ReLUs, for inputs with Gram matrix ``gram`` (``(..., N, N)``).

    With weights ``w_i = G_ii / tr G``, ``s = sum w_i^2`` and ``m`` the ``w``-weighted mean of the
    off-diagonal input correlations, the largest eigenvalue of K carries at least
    ``a = s + (1 - s) f^{depth-1}(m)`` of its trace (``f`` = :func:`arccos_correlation`), so
    ``rho(K) <= -a log a - (1 - a) log((1 - a) / (N - 1))``. Equality for equal norms and equal
    correlations, e.g. orthogonal inputs or the regular simplex. Its largest value over all
    inputs is :func:`raw_relu_entropy_bound`. Proved in *Finite-width simulations*.
    """
    depth = check_int(depth, "depth")
    norms, corr = _correlations(gram)
    n = corr.shape[-1]
    w = norms**2 / (norms**2).sum(axis=-1, keepdims=True)
    s = (w**2).sum(axis=-1)
    pair = w[..., :, None] * w[..., None, :]
    mean = ((pair * corr).sum(axis=(-2, -1)) - s) / (1.0 - s)
    for _ in range(depth - 1):
        mean = arccos_correlation(mean)
    return _top_share_entropy(np.maximum(s + (1.0 - s) * mean, 1.0 / n), n)


def simplex_inputs(inputs: int) -> np.ndarray:
    """The vertices of a regular simplex centred at the origin, one per row (``inputs x
    inputs``, rank ``inputs - 1``): equal norms and every correlation ``-1/(inputs - 1)``, the
    most negative mean correlation a Gram matrix of ``inputs`` vectors allows. They attain
    :func:`raw_relu_entropy_bound`."""
    inputs = check_int(inputs, "inputs", 2)
    return np.eye(inputs) - 1.0 / inputs


def raw_relu_entropy_bound(inputs: int, depth: int) -> float:
    """The largest rho of the uncentred infinite-width ReLU kernel over ALL sets of ``inputs``
    nonzero inputs after ``depth - 1 >= 1`` ReLUs, attained by the regular simplex
    (:func:`simplex_inputs`).

    :func:`raw_relu_entropy_ceiling` is largest when its top share ``a`` is smallest. Positive
    semidefiniteness of the correlations gives ``s + (1 - s) m >= 0``; since ``f^{depth-1}`` is
    increasing and convex, ``a`` is smallest at equal norms (``s = 1/N``) and
    ``m = -1/(N - 1)``, where the kernel is ``(1 - c) I + c 11^T`` with
    ``c = f^{depth-1}(-1/(N - 1))``: eigenvalues ``1 + (N - 1) c`` once and ``1 - c``
    ``N - 1`` times. Proved in *Finite-width simulations*; cheap for any number of inputs.
    """
    inputs = check_int(inputs, "inputs", 2)
    depth = check_int(depth, "depth", 2)
    c = -1.0 / (inputs - 1)
    for _ in range(depth - 1):
        c = float(arccos_correlation(c))
    return float(_top_share_entropy((1.0 + (inputs - 1) * c) / inputs, inputs))
