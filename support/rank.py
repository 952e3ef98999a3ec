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
from scipy.special import xlogy

from support.checks import check_real

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
        raise ValueError(
            f"{what}: expected a matrix of shape (..., m, n), got shape {tuple(x.shape)}"
        )
    if x.shape[-1] == 0 or x.shape[-2] == 0:
        raise ValueError(f"{what}: empty matrix of shape {tuple(x.shape)}")
    finite = (
        bool(torch.isfinite(x).all()) if _is_torch(x) else bool(np.isfinite(x).all())
    )
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

    ``s`` has shape ``(..., k)``; reduction is over the last axis. The spectrum is divided by
    its largest value before it is summed, so huge values (1e308) do not overflow. Raises
    ValueError where a spectrum is identically zero (the entropy of an all-zero matrix is
    undefined) or has a negative, NaN or infinite entry (not a spectrum).
    """
    if _is_torch(s):
        s = s.to(torch.float64)
        if not bool(torch.isfinite(s).all()) or bool((s < 0).any()):
            raise ValueError(_NOT_A_SPECTRUM)
        top = s.amax(-1, keepdim=True)
        if bool((top <= 0).any()):
            raise ValueError("spectral entropy is undefined for an all-zero matrix")
        scaled = s / top
        p = scaled / scaled.sum(-1, keepdim=True)
        return -torch.xlogy(p, p).sum(-1)
    s = np.asarray(s, dtype=np.float64)
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError(_NOT_A_SPECTRUM)
    top = s.max(-1, keepdims=True)
    if np.any(top <= 0):
        raise ValueError("spectral entropy is undefined for an all-zero matrix")
    scaled = s / top
    p = scaled / scaled.sum(-1, keepdims=True)
    return -xlogy(p, p).sum(-1)


_NOT_A_SPECTRUM = (
    "a spectrum must be finite and >= 0 (got a negative, NaN or infinite entry)"
)


def _power_of_two_scaled(x, spare_bits: int):
    """``x`` with each matrix multiplied by a power of two that brings its largest entry near 1,
    for matrices whose largest entry is beyond ``2**spare_bits`` or below ``2**-spare_bits``
    (others are returned untouched, bit for bit). Exact: a power of two changes only the
    exponent, so scale-invariant measures are unchanged while LAPACK's sums of squares (and the
    squares of :func:`gram_entropy`) can no longer overflow or underflow."""
    if _is_torch(x):
        if not (x.dtype.is_floating_point or x.dtype.is_complex):
            return x
        top = x.abs().amax(dim=(-2, -1), keepdim=True)
        _, exponent = torch.frexp(top)
        far = ((exponent > spare_bits) | (exponent < -spare_bits)) & (top > 0)
        shift = torch.where(far, -exponent, torch.zeros_like(exponent))
        half = torch.div(shift, 2, rounding_mode="floor")
        one = torch.ones_like(top)
        return x * torch.ldexp(one, half) * torch.ldexp(one, shift - half)
    if not np.issubdtype(x.dtype, np.inexact):
        return x
    top = np.abs(x).max(axis=(-2, -1), keepdims=True)
    _, exponent = np.frexp(top)
    far = ((exponent > spare_bits) | (exponent < -spare_bits)) & (top > 0)
    shift = np.where(far, -exponent, 0)
    half = shift // 2
    real = np.finfo(x.dtype).dtype.type
    return x * np.ldexp(real(1), half) * np.ldexp(real(1), shift - half)


def _safe_bits(x) -> int:
    """Exponent range (in bits) within which entries of ``x``'s precision can be squared and
    summed over a matrix without overflow or underflow."""
    dtype = x.dtype
    if _is_torch(x):
        exact = dtype.is_floating_point or dtype.is_complex
        largest = torch.finfo(dtype).max if exact else np.finfo(np.float64).max
    else:
        exact = np.issubdtype(dtype, np.inexact)
        largest = np.finfo(dtype if exact else np.float64).max
    return math.frexp(float(largest))[1] // 2 - 20


def spectral_entropy(x):
    """The paper's rho: entropy (nats) of the singular values of ``x`` normalised to sum 1.

    ``0 <= rho <= log(min(m, n))``; ``rho = 0`` exactly for rank one, ``log r`` exactly when the
    ``r`` nonzero singular values are equal. Invariant under scaling, transposition and
    orthogonal transforms on either side.
    """
    x = _validate(x, "spectral_entropy")
    return entropy_of_spectrum(singular_values(_power_of_two_scaled(x, _safe_bits(x))))


def effective_rank(x):
    """Roy & Vetterli's effective rank ``exp(rho(x))``; ``1 <= erank <= rank(x)``."""
    rho = spectral_entropy(x)
    return torch.exp(rho) if _is_torch(rho) else np.exp(rho)


def stable_rank(x):
    """Stable rank ``||x||_F^2 / ||x||_2^2`` (sum of squared singular values over the largest one).

    Computed from the singular values divided by the largest, so it cannot overflow."""
    x = _validate(x, "stable_rank")
    s = singular_values(_power_of_two_scaled(x, _safe_bits(x)))
    top = s[..., :1]
    if bool((top <= 0).any()):
        raise ValueError("stable_rank is undefined for an all-zero matrix")
    return ((s / top) ** 2).sum(-1)


def numerical_rank(x, rtol: float | None = None):
    """Number of singular values above ``rtol * sigma_max``.

    The default tolerance is numpy's: ``max(m, n) * eps`` of the input's precision (for complex
    input, the precision of its real and imaginary parts). ``rtol`` must be a finite number
    >= 0. Returns integers (numpy int64 or torch int64).
    """
    x = _validate(x, "numerical_rank")
    m, n = x.shape[-2], x.shape[-1]
    if rtol is None:
        rtol = max(m, n) * _machine_epsilon(x)
    else:
        rtol = check_real(rtol, "numerical_rank: rtol", minimum=0.0)
    s = singular_values(_power_of_two_scaled(x, _safe_bits(x)))
    above = s > rtol * s[..., :1]
    return above.sum(-1) if _is_torch(x) else above.sum(-1).astype(np.int64)


def _machine_epsilon(x) -> float:
    """Machine epsilon of a floating (or complex) input's precision; float64's for integers."""
    dtype = x.dtype
    if _is_torch(x):
        if dtype.is_floating_point or dtype.is_complex:
            return torch.finfo(dtype).eps
        return float(np.finfo(np.float64).eps)
    if np.issubdtype(dtype, np.inexact):
        return float(np.finfo(dtype).eps)
    return float(np.finfo(np.float64).eps)


def max_entropy(m: int, n: int) -> float:
    """Largest possible spectral entropy of an m x n matrix: ``log(min(m, n))``."""
    return math.log(min(m, n))


def gram_entropy(phi, centre: bool = False):
    """rho(K) (nats) of the Gram matrix ``K = Phi Phi^T`` of embeddings ``phi`` (``(..., N, width)``).

    The eigenvalues of K are the squared singular values of Phi, so rho(K) is computed from
    those without forming K (cheaper, and accurate where K's small eigenvalues would drown in
    rounding). ``centre=True`` first subtracts the mean embedding over the N inputs, which
    removes the direction every embedding shares (large after ReLU-like activations; chapter
    *Non-linear networks* explains why the paper's values need it). Batched like the rest.
    """
    phi = _validate(phi, "gram_entropy")
    if _is_torch(phi):
        phi = phi.to(torch.complex128 if phi.dtype.is_complex else torch.float64)
        if centre:
            phi = phi - phi.mean(dim=-2, keepdim=True)
    else:
        phi = np.asarray(
            phi, dtype=np.complex128 if np.iscomplexobj(phi) else np.float64
        )
        if centre:
            phi = phi - phi.mean(axis=-2, keepdims=True)
    # squared after a power-of-two scaling that keeps the squares in range (1e154 and 1e-162
    # would overflow or underflow); entropies are scale invariant
    phi = _power_of_two_scaled(phi, _safe_bits(phi) // 2)
    return entropy_of_spectrum(singular_values(phi) ** 2)
