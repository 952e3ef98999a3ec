"""Rank measures of matrices: spectral entropy, effective rank, stable and numerical rank.

The chapter *Effective rank* (``book/effective_rank.ipynb``) defines and compares them.

The paper's figures plot the **spectral entropy** ``rho(A) = H(sigma / sum(sigma))`` in nats
(its code returns the entropy, not its exponential); Roy & Vetterli's **effective rank** is
``exp(rho)``. Every function here accepts a numpy array or a torch tensor of shape
``(..., m, n)``, is batched over the leading dimensions and returns the same kind of object
(numpy in, numpy out; torch in, torch out on the input's device). Entropies are computed in
float64 whatever the input precision.
"""
from __future__ import annotations

import math

import numpy as np

try:  # torch is optional for the library as a whole; numpy inputs never need it
    import torch
except ImportError:  # pragma: no cover - exercised only where torch is absent
    torch = None


def _is_torch(x) -> bool:
    return torch is not None and isinstance(x, torch.Tensor)


def _validate(x, what: str):
    """Check shape and values of a (batched) matrix argument; raise ValueError naming the problem."""
    if not (_is_torch(x) or isinstance(x, np.ndarray)):
        x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"{what}: expected a matrix of shape (..., m, n), got shape {tuple(x.shape)}")
    if x.shape[-1] == 0 or x.shape[-2] == 0:
        raise ValueError(f"{what}: empty matrix of shape {tuple(x.shape)}")
    finite = bool(torch.isfinite(x).all()) if _is_torch(x) else bool(np.isfinite(x).all())
    if not finite:
        raise ValueError(f"{what}: input contains NaN or Inf entries")
    return x


def singular_values(x):
    """Singular values of ``x`` (shape ``(..., m, n)``), in descending order, as float64.

    Torch inputs stay on their device (the SVD runs in the input's precision, then the result
    is promoted); integer and boolean tensors are converted to float64 and half-precision ones
    to float32 first, since torch's SVD accepts neither. Numpy inputs use LAPACK through numpy.
    """
    if _is_torch(x):
        if not (x.dtype.is_floating_point or x.dtype.is_complex):
            x = x.to(torch.float64)
        elif x.dtype in (torch.float16, torch.bfloat16):
            x = x.to(torch.float32)
        return torch.linalg.svdvals(x).to(torch.float64)
    return np.linalg.svd(np.asarray(x), compute_uv=False).astype(np.float64)


def entropy_of_spectrum(s):
    """Shannon entropy (nats) of a nonnegative spectrum ``s`` normalised to sum 1, with 0 log 0 = 0.

    ``s`` has shape ``(..., k)``; reduction is over the last axis. Raises ValueError where a
    spectrum is identically zero (the entropy of an all-zero matrix is undefined).
    """
    if _is_torch(s):
        s = s.to(torch.float64)
        total = s.sum(-1, keepdim=True)
        if bool((total <= 0).any()):
            raise ValueError("spectral entropy is undefined for an all-zero matrix")
        p = s / total
        return -torch.xlogy(p, p).sum(-1)
    s = np.asarray(s, dtype=np.float64)
    total = s.sum(-1, keepdims=True)
    if np.any(total <= 0):
        raise ValueError("spectral entropy is undefined for an all-zero matrix")
    p = s / total
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return -terms.sum(-1)


def spectral_entropy(x):
    """The paper's rho: entropy (nats) of the singular values of ``x`` normalised to sum 1.

    ``0 <= rho <= log(min(m, n))``; ``rho = 0`` exactly for rank one, ``log r`` exactly when the
    ``r`` nonzero singular values are equal. Invariant under scaling, transposition and
    orthogonal transforms on either side.
    """
    x = _validate(x, "spectral_entropy")
    return entropy_of_spectrum(singular_values(x))


def effective_rank(x):
    """Roy & Vetterli's effective rank ``exp(rho(x))``; ``1 <= erank <= rank(x)``."""
    rho = spectral_entropy(x)
    return torch.exp(rho) if _is_torch(rho) else np.exp(rho)


def stable_rank(x):
    """Stable rank ``||x||_F^2 / ||x||_2^2`` (sum of squared singular values over the largest one)."""
    x = _validate(x, "stable_rank")
    s2 = singular_values(x) ** 2
    top = s2[..., 0]
    if bool((top <= 0).any()):
        raise ValueError("stable_rank is undefined for an all-zero matrix")
    return s2.sum(-1) / top


def numerical_rank(x, rtol: float | None = None):
    """Number of singular values above ``rtol * sigma_max``.

    The default tolerance is numpy's: ``max(m, n) * eps`` of the input's precision. Returns
    integers (numpy int64 or torch int64).
    """
    x = _validate(x, "numerical_rank")
    m, n = x.shape[-2], x.shape[-1]
    if rtol is None:
        eps = _machine_epsilon(x)
        rtol = max(m, n) * eps
    s = singular_values(x)
    above = s > rtol * s[..., :1]
    return above.sum(-1) if _is_torch(x) else above.sum(-1).astype(np.int64)


def _machine_epsilon(x) -> float:
    """Machine epsilon of a floating input's precision (float64's for integer inputs)."""
    dtype = x.dtype
    if _is_torch(x):
        return torch.finfo(dtype).eps if dtype.is_floating_point else np.finfo(np.float64).eps
    return np.finfo(dtype).eps if np.issubdtype(dtype, np.floating) else np.finfo(np.float64).eps


def max_entropy(m: int, n: int) -> float:
    """Largest possible spectral entropy of an m x n matrix: ``log(min(m, n))``."""
    return math.log(min(m, n))
