"""Random-matrix theory of products of Gaussian matrices: Lyapunov spectra and the two limits of rho.

The chapter *The asymptotic rank-volume theorem* (``book/rank_volume_theorem.ipynb``) states and
proves what this module computes. Notation: ``P_d = W_d ... W_1`` with i.i.d. ``n x n`` factors
whose entries are i.i.d. ``N(0, variance)`` (default ``variance = 1/n``); ``rho`` is the spectral
entropy of ``P_d`` (``support.rank.spectral_entropy``), which does not depend on the variance.

* :func:`lyapunov_spectrum`: Newman's exact Lyapunov exponents
  ``lambda_i = (1/2) [log(2 variance) + digamma((n - i + 1) / 2)]``.
* :func:`lyapunov_qr`: the QR (Benettin) estimator of the same exponents from simulated products.
* :func:`gaussian_products`: products renormalised as they are formed (no overflow at any depth).
* :func:`fuss_catalan_moment`, :func:`fuss_catalan_density`, :func:`fuss_catalan_expectation`:
  the limiting law (width ``n -> infinity``, depth fixed) of the squared singular values of
  ``P_d``: its Mellin transform in closed form, its density in Haagerup-Moller parametrisation,
  and expectations under it by quadrature (an independent check of the closed form).
* :func:`entropy_gap_large_width`: ``lim_{n->inf} (rho(P_d) - log n)`` at fixed depth, in closed form.
* :func:`entropy_gap_large_depth`: the Lyapunov (Gibbs) prediction ``H(softmax(d lambda)) - log n``
  for finite ``n``, and its ``n -> infinity`` closed form ``d/(d+2) - log(1 + d/2)``.

Everything analytic here is float64 numpy and fast (microseconds to milliseconds), so chapters can
overlay these curves freely. The samplers use torch (CPU or GPU).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import integrate, special

from support.checks import check_int
from support.rank import entropy_of_spectrum

__all__ = [
    "lyapunov_spectrum", "lyapunov_qr", "gaussian_products",
    "fuss_catalan_moment", "fuss_catalan_density", "fuss_catalan_expectation",
    "entropy_gap_large_width", "entropy_gap_large_depth",
]


# ----------------------------------------------------------------------------- argument checks

def _check_variance(variance, n: int) -> float:
    if variance is None:
        return 1.0 / n
    variance = float(variance)
    if not (math.isfinite(variance) and variance > 0):
        raise ValueError(f"variance must be a positive finite number, got {variance}")
    return variance


def _check_depth(depth, *, minimum: float = 0.0):
    """Depth as a float64 array (real depths allowed: the formulas are analytic in the depth)."""
    d = np.asarray(depth, dtype=np.float64)
    if not np.all(np.isfinite(d)):
        raise ValueError(f"depth must be finite, got {depth!r}")
    if np.any(d < minimum):
        raise ValueError(f"depth must be >= {minimum:g}, got {depth!r}")
    return d


def _scalar_or_array(value, like):
    return float(value) if np.ndim(like) == 0 else value


# ----------------------------------------------------------------------------- Lyapunov exponents
def lyapunov_spectrum(n: int, variance: float | None = None) -> np.ndarray:
    """Exact Lyapunov exponents of products of ``n x n`` matrices with i.i.d. ``N(0, variance)`` entries.

    Newman (1986): ``lambda_i = (1/2) [log(2 variance) + digamma((n - i + 1)/2)]``, ``i = 1..n``,
    returned in decreasing order (float64, shape ``(n,)``). The default variance ``1/n`` is the
    one of the book's figures. Reason: in the QR recursion of :func:`lyapunov_qr` the squared
    diagonal entries ``R_ii^2`` are independent ``variance * chi^2_{n-i+1}`` variables, and
    ``E log chi^2_k = log 2 + digamma(k/2)``. See book/rank_volume_theorem.ipynb.
    """
    n = check_int(n, "n")
    variance = _check_variance(variance, n)
    k = np.arange(n, 0, -1, dtype=np.float64)  # n - i + 1 for i = 1..n
    return 0.5 * (math.log(2.0 * variance) + special.digamma(k / 2.0))


def _torch_setup(device, dtype, seed):
    """Resolve device and dtype (default float64) and make a seeded generator on that device."""
    import torch

    from support.hardware import resolve_device

    device = resolve_device(device) if isinstance(device, str) else torch.device(device)
    dtype = torch.float64 if dtype is None else dtype
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed))
    return torch, device, dtype, generator


def lyapunov_qr(n: int, depth: int, batch: int = 16, variance: float | None = None, *,
                seed: int = 0, device="cpu", dtype=None) -> np.ndarray:
    """QR (Benettin) estimates of the Lyapunov exponents from ``batch`` simulated products.

    Recursion: ``Q_0 = I``; ``W_t Q_{t-1} = Q_t R_t`` (QR); the estimate is
    ``(1/depth) sum_t log |R_t,ii|``. Orthogonalising at every step keeps it numerically exact at
    any depth (the plain product loses all but its top singular values after ~10 factors). Returns
    a float64 numpy array of shape ``(batch, n)``, one row of estimates per independent chain;
    average the rows for the estimate, use their spread for its error bar. The rows are not sorted:
    column ``i`` estimates ``lambda_{i+1}`` because QR orders the exponents itself. See
    book/rank_volume_theorem.ipynb.
    """
    n = check_int(n, "n")
    depth = check_int(depth, "depth")
    batch = check_int(batch, "batch")
    variance = _check_variance(variance, n)
    torch, device, dtype, gen = _torch_setup(device, dtype, seed)
    q = torch.eye(n, dtype=dtype, device=device).expand(batch, n, n)
    total = torch.zeros(batch, n, dtype=torch.float64, device=device)
    std = math.sqrt(variance)
    for _ in range(depth):
        w = torch.randn(batch, n, n, generator=gen, dtype=dtype, device=device) * std
        q, r = torch.linalg.qr(w @ q)
        total += torch.log(torch.diagonal(r, dim1=-2, dim2=-1).abs().to(torch.float64))
    return (total / depth).cpu().numpy()


def gaussian_products(n: int, depths, batch: int = 1, variance: float | None = None, *,
                      seed: int = 0, device="cpu", dtype=None) -> dict:
    """Sample ``batch`` products ``P_d = W_d ... W_1`` of i.i.d. Gaussian factors, at each depth in ``depths``.

    One chain serves all requested depths (the depth-``d`` product of a chain is the depth-``d``
    prefix of the deeper ones; marginally each is an exact sample). The running product is divided
    by its Frobenius norm after every factor, so nothing overflows or underflows at any depth;
    the scale is kept separately. Returns ``{d: (P, log_scale)}`` with ``P`` a torch tensor of shape
    ``(batch, n, n)`` of unit Frobenius norm and ``log_scale`` of shape ``(batch,)`` (float64) such
    that the true product is ``exp(log_scale) * P``. Scale-invariant quantities (rho) use ``P``;
    growth rates (Furstenberg-Kesten) use ``log_scale``. See book/rank_volume_theorem.ipynb.
    """
    n = check_int(n, "n")
    batch = check_int(batch, "batch")
    wanted = sorted({check_int(d, "depth") for d in np.atleast_1d(depths).tolist()})
    variance = _check_variance(variance, n)
    torch, device, dtype, gen = _torch_setup(device, dtype, seed)
    std = math.sqrt(variance)
    p = torch.eye(n, dtype=dtype, device=device).expand(batch, n, n)
    log_scale = torch.zeros(batch, dtype=torch.float64, device=device)
    out = {}
    for d in range(1, wanted[-1] + 1):
        p = (torch.randn(batch, n, n, generator=gen, dtype=dtype, device=device) * std) @ p
        norm = torch.linalg.matrix_norm(p)
        p = p / norm[:, None, None]
        log_scale = log_scale + torch.log(norm.to(torch.float64))
        if d in wanted:
            out[d] = (p, log_scale)
    return out


# ----------------------------------------------------------------------------- Fuss-Catalan law
def fuss_catalan_moment(depth, t):
    """Mellin transform ``E[x^t]`` of the Fuss-Catalan law of order ``depth`` (real ``t > -1/(depth+1)``).

    ``E[x^t] = Gamma((d+1) t + 1) / (Gamma(t + 1) Gamma(d t + 2))``; at integer ``t = k`` these are
    the Fuss-Catalan numbers ``binom((d+1)k, k) / (dk + 1)``, the limiting moments of the squared
    singular values of a product of ``d`` Gaussian matrices with variance ``1/n`` (Penson &
    Zyczkowski 2011). Depth 1 is Marchenko-Pastur. Broadcasts over ``depth`` and ``t``.
    See book/rank_volume_theorem.ipynb for the proof that this is the law's Mellin transform.
    """
    d = _check_depth(depth, minimum=0.0)
    t = np.asarray(t, dtype=np.float64)
    if np.any(~np.isfinite(t)) or np.any(t * (d + 1) <= -1):
        raise ValueError(f"fuss_catalan_moment needs finite t > -1/(depth+1), got t={t!r}")
    value = np.exp(special.gammaln((d + 1) * t + 1) - special.gammaln(t + 1) - special.gammaln(d * t + 2))
    return float(value) if value.ndim == 0 else value


def fuss_catalan_density(phi, depth: int):
    """Fuss-Catalan density of order ``depth`` in the Haagerup-Moller parametrisation.

    For ``0 < phi < pi/(d+1)``: ``x(phi) = sin((d+1)phi)^(d+1) / (sin(phi) sin(d phi)^d)`` runs
    over the support ``(0, (d+1)^(d+1)/d^d)`` (decreasing in ``phi``) and the density there is
    ``sin(phi)^2 sin(d phi)^(d-1) / (pi sin((d+1)phi)^d)``. Returns ``(x, density, dx_dphi)``.
    Used to integrate against the law without the Mellin closed form (:func:`fuss_catalan_expectation`).
    """
    d = float(_check_depth(depth, minimum=1.0))
    phi = np.asarray(phi, dtype=np.float64)
    if np.any((phi <= 0) | (phi >= math.pi / (d + 1))):
        raise ValueError(f"phi must lie in (0, pi/(depth+1)) = (0, {math.pi / (d + 1):.6g})")
    s1, sd, sd1 = np.sin(phi), np.sin(d * phi), np.sin((d + 1) * phi)
    log_x = (d + 1) * np.log(sd1) - np.log(s1) - d * np.log(sd)
    x = np.exp(log_x)
    density = np.exp(2 * np.log(s1) + (d - 1) * np.log(sd) - d * np.log(sd1)) / math.pi
    dlogx = (d + 1) ** 2 / np.tan((d + 1) * phi) - 1 / np.tan(phi) - d ** 2 / np.tan(d * phi)
    return x, density, x * dlogx


def fuss_catalan_expectation(func, depth: int) -> float:
    """``E[func(x)]`` under the Fuss-Catalan law of order ``depth``, by adaptive quadrature.

    Integrates ``func(x(phi)) density(phi) |dx/dphi|`` over ``phi`` in ``(0, pi/(d+1))``; no use of
    the Mellin closed form, hence an independent check of it. ``func`` must accept numpy arrays.
    """
    d = float(_check_depth(depth, minimum=1.0))

    def integrand(phi):
        x, dens, dx = fuss_catalan_density(phi, d)
        return float(func(x) * dens * -dx)

    value, _ = integrate.quad(integrand, 0.0, math.pi / (d + 1), limit=400, epsabs=1e-13, epsrel=1e-11)
    return value


# ----------------------------------------------------------------------------- the two limits
def entropy_gap_large_width(depth, method: str = "closed_form"):
    """``lim_{n -> inf} rho(W_d ... W_1) - log n`` at fixed depth ``d`` (almost surely), i.i.d. Gaussian factors.

    With ``s = sqrt(x)`` and ``x`` Fuss-Catalan of order ``d``, the limit is
    ``log E[s] - E[s log s] / E[s]``. Closed form (``u = d/2``, psi = digamma)::

        g(d) = log Gamma(u + 3/2) - log Gamma(u + 2) - log Gamma(3/2)
               - (u + 1/2) psi(u + 3/2) + u psi(u + 2) + psi(3/2)/2

    ``g(0) = 0``, ``g(1) = log 0.8050 = -0.2169`` (quarter-circle law), ``g`` strictly decreasing
    and ``g(d) + log(d/2) -> 1/2 - log Gamma(3/2) + psi(3/2)/2`` as ``d -> inf``. ``method="quadrature"``
    evaluates the same expectations by numerical integration of the density instead (slow; checks).
    Real depths ``>= 0`` are accepted (``>= 1`` for quadrature). See book/rank_volume_theorem.ipynb.
    """
    if method == "closed_form":
        d = _check_depth(depth)
        u = d / 2.0
        g = (special.gammaln(u + 1.5) - special.gammaln(u + 2.0) - special.gammaln(1.5)
             - (u + 0.5) * special.digamma(u + 1.5) + u * special.digamma(u + 2.0)
             + 0.5 * special.digamma(1.5))
        return _scalar_or_array(g, depth)
    if method == "quadrature":
        d = _check_depth(depth, minimum=1.0)
        values = []
        for di in np.atleast_1d(d):
            es = fuss_catalan_expectation(np.sqrt, di)
            eslogs = fuss_catalan_expectation(lambda x: 0.5 * np.sqrt(x) * np.log(x), di)
            values.append(math.log(es) - eslogs / es)
        return _scalar_or_array(np.array(values).reshape(d.shape), depth)
    raise ValueError(f"method must be 'closed_form' or 'quadrature', got {method!r}")


def entropy_gap_large_depth(depth, n: int | None = None):
    """Lyapunov (Gibbs) prediction of ``rho(W_d ... W_1) - log n``: the entropy of ``softmax(d lambda)`` minus ``log n``.

    Replacing the singular values ``s_i`` by their large-depth asymptotics ``exp(d lambda_i)``
    (Furstenberg-Kesten / Oseledets, Newman's ``lambda_i``) gives a Gibbs distribution at inverse
    temperature ``d``; its entropy decreases strictly with ``d`` and tends to 0. For finite ``n`` the
    exact Newman spectrum is used (independent of the variance); ``n=None`` gives the
    ``n -> infinity`` limit ``d/(d+2) - log(1 + d/2)`` (triangle law: ``exp(2 lambda)`` uniform on
    [0, 1]). Depths may be real and ``>= 0``. See book/rank_volume_theorem.ipynb.
    """
    d = _check_depth(depth)
    if n is None:
        gap = d / (d + 2.0) - np.log1p(d / 2.0)
        return _scalar_or_array(gap, depth)
    n = check_int(n, "n")
    lam = lyapunov_spectrum(n)
    logits = d[..., None] * (lam - lam[0])           # shape (..., n), max 0: exp never overflows
    gap = entropy_of_spectrum(np.exp(logits)) - math.log(n)
    return _scalar_or_array(gap, depth)
