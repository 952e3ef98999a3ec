"""Random-matrix theory of products of Gaussian matrices: Lyapunov spectra, the limits of rho, width two.

The chapter *The asymptotic rank-volume theorem* (``book/rank_volume_theorem.ipynb``) states and
proves what this module computes. Notation: ``P_d = W_d ... W_1`` with i.i.d. ``n x n`` factors
whose entries are i.i.d. ``N(0, variance)`` (default ``variance = 1/n``); ``rho`` is the spectral
entropy of ``P_d`` (``support.rank.spectral_entropy``), which does not depend on the variance.

Lyapunov exponents and products

* :func:`lyapunov_spectrum`: Newman's exact Lyapunov exponents
  ``lambda_i = (1/2) [log(2 variance) + digamma((n - i + 1) / 2)]``.
* :func:`lyapunov_qr`: the QR (Benettin) estimator of the same exponents from simulated products.
* :func:`renormalised_products`, :func:`gaussian_products`: products renormalised as they are
  formed (no overflow at any depth); the one product chain of the library.

The Fuss-Catalan law (width ``n -> infinity`` at fixed depth)

* :func:`fuss_catalan_moment`: its Mellin transform in closed form;
* :func:`fuss_catalan_beta_parameters`, :func:`sample_fuss_catalan`: the law as ``K_d`` times a
  product of independent Beta variables (the chapter derives it from Gauss's multiplication
  formula), and samples drawn that way;
* :func:`fuss_catalan_density`, :func:`fuss_catalan_expectation`: its density in Haagerup-Moller
  parametrisation and expectations under it by quadrature (an independent check).

The two limits of ``rho - log n``

* :func:`entropy_gap_large_width`: ``g(d) = lim_n (rho(P_d) - log n)`` at fixed depth, closed form;
* :func:`entropy_gap_large_depth`: the Lyapunov (Gibbs) approximation ``H(softmax(d lambda)) - log n``
  and its ``n -> infinity`` limit ``L(d) = d/(d+2) - log(1 + d/2)``;
* :func:`entropy_gap_difference`, :func:`entropy_gap_difference_slope`,
  :func:`entropy_gap_difference_kernel`: ``L(d) - g(d)``, its derivative, and the positive function
  whose Laplace transform that derivative is (the proof that ``g < L`` at every depth).

Width two, where the volume fraction is proved monotone at every depth

* :func:`two_by_two_entropy`: ``rho`` of a ``2 x 2`` matrix as a function of ``x = log(s_1/s_2)``;
* :func:`two_by_two_log_ratio_samples`: the Markov chain ``x_d`` sampled by its scalar recursion;
* :func:`two_by_two_transition_cdf`: its transition kernel ``P(x_{d+1} <= y | x_d = x)``;
* :func:`two_by_two_log_ratio_cdf`: the exact law of ``x_d``, by iterating the kernel on a grid;
* :func:`two_by_two_entropy_drift`: ``E[rho_{d+1} | x_d = x] - rho_d`` by quadrature.

One step of the product at any width

* :func:`entropy_drift`: Monte Carlo of ``E rho(W Sigma) - rho(Sigma)``, the drift whose sign the
  chapter's supermartingale conjecture is about.

Numerics. Everything analytic is float64 numpy and accurate at every argument it accepts: where
a closed form would lose digits to cancellation (large or tiny depths, large arguments of
log-Gamma differences, the edges of the Fuss-Catalan density) an asymptotic expansion or a
rearranged formula takes over, and ``tests/test_rmt.py`` checks against 50-digit ``mpmath``.
The samplers use torch (CPU or GPU) and ``support.seeding``.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import integrate, special

from support.checks import check_fits, check_increasing, check_int, check_real
from support.hardware import resolve_device, resolve_dtype
from support.rank import entropy_of_spectrum

__all__ = [
    "lyapunov_spectrum",
    "lyapunov_qr",
    "renormalised_products",
    "gaussian_products",
    "fuss_catalan_moment",
    "fuss_catalan_beta_parameters",
    "sample_fuss_catalan",
    "fuss_catalan_density",
    "fuss_catalan_expectation",
    "entropy_gap_large_width",
    "entropy_gap_large_depth",
    "entropy_gap_difference",
    "entropy_gap_difference_slope",
    "entropy_gap_difference_kernel",
    "two_by_two_entropy",
    "two_by_two_log_ratio_samples",
    "two_by_two_transition_cdf",
    "two_by_two_log_ratio_cdf",
    "two_by_two_entropy_drift",
    "entropy_drift",
    "C_INFINITY",
]

C_INFINITY = 0.5 - special.gammaln(1.5) + 0.5 * special.digamma(1.5)
"""``lim_{d -> inf} g(d) + log(d/2)``: the constant of the large-width gap at large depth."""


# ----------------------------------------------------------------------------- argument checks


def _check_variance(variance, n: int) -> float:
    if variance is None:
        return 1.0 / n
    return check_real(variance, "variance", minimum=0.0, strict=True)


def _check_depth(depth, *, minimum: float = 0.0, name: str = "depth"):
    """Depth as a float64 array (real depths allowed: the formulas are analytic in the depth)."""
    d = np.asarray(depth, dtype=np.float64)
    if not np.all(np.isfinite(d)):
        raise ValueError(f"{name} must be finite, got {depth!r}")
    if np.any(d < minimum):
        raise ValueError(f"{name} must be >= {minimum:g}, got {depth!r}")
    return d


def _check_log_ratio(x, name: str = "log_ratio"):
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)) or np.any(x < 0):
        raise ValueError(f"{name} = log(s_1/s_2) must be finite and >= 0, got {x!r}")
    return x


def _scalar_or_array(value, like):
    return float(value) if np.ndim(like) == 0 else value


# ----------------------------------------------------------------------------- numerical helpers


@functools.cache
def _gauss_legendre_01(nodes: int):
    """Gauss-Legendre nodes and weights on (0, 1) (weights sum to one)."""
    x, w = np.polynomial.legendre.leggauss(nodes)
    return (x + 1) / 2, w / 2


def _bernoulli_polynomial(n: int, x):
    """Bernoulli polynomial ``B_n(x)`` (``B_1(x) = x - 1/2``), from the Bernoulli numbers."""
    numbers = special.bernoulli(n)
    x = np.asarray(x, dtype=np.float64)
    return sum(math.comb(n, k) * numbers[k] * x ** (n - k) for k in range(n + 1))


_SERIES_TERMS = 16
_SERIES_FROM = 40.0


def _log_gamma_ratio(z, a, b):
    """``log Gamma(z + a) - log Gamma(z + b)`` for ``z > 0``, ``z + a, z + b > 0``.

    The plain difference of ``gammaln`` values loses ``log10(z log z)`` digits when ``z`` is large;
    there the Stirling series with Bernoulli polynomials (DLMF 5.11.8) is used instead,
    ``(a - b) log z + sum_k (-1)^(k+1) [B_{k+1}(a) - B_{k+1}(b)] / (k (k+1) z^k)``, whose terms
    shrink like ``(max(|a|, |b|, 1) / z)^k`` once ``z >= 40 max(|a|, |b|, 1)``.
    """
    z, a, b = np.broadcast_arrays(
        np.asarray(z, np.float64), np.asarray(a, np.float64), np.asarray(b, np.float64)
    )
    out = np.empty(z.shape)
    big = z >= _SERIES_FROM * np.maximum(1.0, np.maximum(np.abs(a), np.abs(b)))
    small = ~big
    out[small] = special.gammaln(z[small] + a[small]) - special.gammaln(
        z[small] + b[small]
    )
    if np.any(big):
        zb, ab, bb = z[big], a[big], b[big]
        inv = 1.0 / zb
        total = (ab - bb) * np.log(zb)
        power = np.ones_like(zb)
        for k in range(1, _SERIES_TERMS + 1):
            power = power * inv
            diff = _bernoulli_polynomial(k + 1, ab) - _bernoulli_polynomial(k + 1, bb)
            total = total + (-1) ** (k + 1) * diff * power / (k * (k + 1))
        out[big] = total
    return out


def _log_cosh(y):
    """``log cosh(y)`` without overflow."""
    y = np.abs(y)
    return y + _log_cosh_excess(y)


def _log_cosh_excess(y):
    """``log cosh(y) - |y|`` (between ``-log 2`` and 0), without forming ``log cosh(y)``."""
    return np.log1p(np.exp(-2 * np.abs(y))) - math.log(2.0)


def _arccosh_from_log(log_w):
    """``arccosh(w)`` from ``log w >= 0`` (no overflow for huge ``w``, exact near ``w = 1``)."""
    log_w = np.maximum(log_w, 0.0)
    return log_w + np.log1p(np.sqrt(-np.expm1(-2 * log_w)))


def _cot_minus_inverse(y):
    """``cot(y) - 1/y`` for ``0 < y < pi``, by its Taylor series near 0 (no cancellation)."""
    y = np.asarray(y, dtype=np.float64)
    out = np.empty_like(y)
    near = np.abs(y) < 0.5
    far = ~near
    out[far] = 1 / np.tan(y[far]) - 1 / y[far]
    if np.any(near):
        yn = y[near]
        total = np.zeros_like(yn)
        numbers = special.bernoulli(2 * 12)
        # cot y - 1/y = sum_k (-1)^k 2^(2k) B_2k y^(2k-1) / (2k)!
        for k in range(1, 13):
            total += (
                (-1) ** k
                * 2 ** (2 * k)
                * numbers[2 * k]
                * yn ** (2 * k - 1)
                / math.factorial(2 * k)
            )
        out[near] = total
    return out


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
    doubled = 2.0 * variance
    log_2v = (
        math.log(doubled)
        if math.isfinite(doubled)
        else math.log(2.0) + math.log(variance)
    )
    return 0.5 * (log_2v + special.digamma(k / 2.0))


def _torch_setup(device, dtype, seed, purpose):
    """Resolve device (default CPU) and dtype (float32 or float64, default float64) through
    :mod:`support.hardware`; a generator for the stream ``(seed, purpose)``."""
    import torch

    from support.seeding import torch_generator

    device = resolve_device(device, default="cpu")
    dtype = resolve_dtype(dtype)
    return torch, device, dtype, torch_generator(seed, purpose, device=device)


def _check_batch_fits(batch: int, n: int, dtype, device, what: str, buffers: int = 3):
    """Refuse a batch of ``buffers`` ``(batch, n, n)`` tensors that would not fit in memory."""
    import torch

    itemsize = torch.finfo(dtype).bits // 8
    check_fits(buffers * batch * n * n * itemsize, what, device)


def lyapunov_qr(
    n: int,
    depth: int,
    batch: int = 16,
    variance: float | None = None,
    *,
    seed: int = 0,
    device="cpu",
    dtype=None,
) -> np.ndarray:
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
    torch, device, dtype, gen = _torch_setup(device, dtype, seed, "lyapunov_qr")
    _check_batch_fits(batch, n, dtype, device, f"lyapunov_qr(n={n}, batch={batch})")
    q = torch.eye(n, dtype=dtype, device=device).expand(batch, n, n)
    total = torch.zeros(batch, n, dtype=torch.float64, device=device)
    std = math.sqrt(variance)
    for _ in range(depth):
        w = torch.randn(batch, n, n, generator=gen, dtype=dtype, device=device) * std
        q, r = torch.linalg.qr(w @ q)
        total += torch.log(torch.diagonal(r, dim1=-2, dim2=-1).abs().to(torch.float64))
    return (total / depth).cpu().numpy()


def renormalised_products(draw, depths, shape, *, dtype, device):
    """Yield ``(d, P, log_scale)`` along one chain ``W_d ... W_1`` at each depth ``d`` in ``depths``.

    ``draw(out)`` fills a tensor of ``shape`` (``(batch, n, n)``) with the next factor of every
    chain, in place. Before each multiplication the running product is divided by its Frobenius
    norm, so nothing overflows or underflows at any depth; ``log_scale`` (float64, ``(batch,)``)
    is the log of what was divided out, so the true product is ``exp(log_scale) * P``. ``P`` is
    a buffer the next step overwrites: use it (or copy it) before asking for the next depth.
    ``depths`` must be strictly increasing. The one product chain of the library: the samplers of
    ``support.simulate`` and :func:`gaussian_products` both run on it.
    """
    import torch

    depths = check_increasing(depths)
    factor, prod, spare = (
        torch.empty(shape, dtype=dtype, device=device) for _ in range(3)
    )
    log_scale = torch.zeros(shape[0], dtype=torch.float64, device=device)
    tiny = torch.finfo(dtype).tiny
    draw(prod)
    for depth in range(1, depths[-1] + 1):
        if depth > 1:
            norm = torch.linalg.matrix_norm(prod).clamp_min_(tiny)
            log_scale = log_scale + torch.log(norm.to(torch.float64))
            prod.div_(norm[:, None, None])
            draw(factor)
            torch.bmm(factor, prod, out=spare)
            prod, spare = spare, prod
        if depth in depths:
            yield depth, prod, log_scale


def gaussian_products(
    n: int,
    depths,
    batch: int = 1,
    variance: float | None = None,
    *,
    seed: int = 0,
    device="cpu",
    dtype=None,
) -> dict:
    """Sample ``batch`` products ``P_d = W_d ... W_1`` of i.i.d. Gaussian factors, at each depth in ``depths``.

    One chain serves all requested depths (the depth-``d`` product of a chain is the depth-``d``
    prefix of the deeper ones; marginally each is an exact sample), formed by
    :func:`renormalised_products`, so nothing overflows or underflows at any depth; the scale is
    kept separately. Returns ``{d: (P, log_scale)}`` with ``P`` a torch tensor of shape
    ``(batch, n, n)`` of unit Frobenius norm and ``log_scale`` of shape ``(batch,)`` (float64) such
    that the true product is ``exp(log_scale) * P``. Scale-invariant quantities (rho) use ``P``;
    growth rates (Furstenberg-Kesten) use ``log_scale``. See book/rank_volume_theorem.ipynb.
    """
    n = check_int(n, "n")
    batch = check_int(batch, "batch")
    wanted = sorted({check_int(d, "depth") for d in np.atleast_1d(depths).tolist()})
    variance = _check_variance(variance, n)
    torch, device, dtype, gen = _torch_setup(device, dtype, seed, "gaussian_products")
    _check_batch_fits(
        batch,
        n,
        dtype,
        device,
        f"gaussian_products(n={n}, batch={batch})",
        3 + len(wanted),
    )
    std = math.sqrt(variance)

    def draw(out):
        out.normal_(0.0, std, generator=gen)

    out = {}
    for d, p, log_scale in renormalised_products(
        draw, wanted, (batch, n, n), dtype=dtype, device=device
    ):
        norm = torch.linalg.matrix_norm(p)
        out[d] = (
            p / norm[:, None, None],
            log_scale + torch.log(norm.to(torch.float64)),
        )
    return out


# ----------------------------------------------------------------------------- Fuss-Catalan law
def fuss_catalan_moment(depth, t):
    """Mellin transform ``E[x^t]`` of the Fuss-Catalan law of order ``depth`` (real ``t > -1/(depth+1)``).

    ``E[x^t] = Gamma((d+1) t + 1) / (Gamma(t + 1) Gamma(d t + 2))``; at integer ``t = k`` these are
    the Fuss-Catalan numbers ``binom((d+1)k, k) / (dk + 1)``, the limiting moments of the squared
    singular values of a product of ``d`` Gaussian matrices with variance ``1/n`` (Penson &
    Zyczkowski 2011). Depth 1 is Marchenko-Pastur. Broadcasts over ``depth`` and ``t``; the
    log-Gamma difference is evaluated by :func:`_log_gamma_ratio`, so large ``depth * t`` keeps
    full relative accuracy. See book/rank_volume_theorem.ipynb for the proof (via
    :func:`fuss_catalan_beta_parameters`) that this is the law's Mellin transform.
    """
    d = _check_depth(depth, minimum=0.0)
    t = np.asarray(t, dtype=np.float64)
    if np.any(~np.isfinite(t)) or np.any(t * (d + 1) <= -1):
        raise ValueError(
            f"fuss_catalan_moment needs finite t > -1/(depth+1), got t={t!r}"
        )
    d, t = np.broadcast_arrays(d, t)
    log_m = np.empty(d.shape)
    z = d * t  # log M = log Gamma(z + t + 1) - log Gamma(z + 2) - log Gamma(t + 1)
    positive = z > 0
    log_m[positive] = _log_gamma_ratio(
        z[positive], t[positive] + 1, 2.0
    ) - special.gammaln(t[positive] + 1)
    rest = ~positive
    log_m[rest] = (
        special.gammaln((d[rest] + 1) * t[rest] + 1)
        - special.gammaln(t[rest] + 1)
        - special.gammaln(d[rest] * t[rest] + 2)
    )
    with np.errstate(over="ignore"):
        value = np.exp(log_m)
    return float(value) if value.ndim == 0 else value


def fuss_catalan_beta_parameters(depth: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The Fuss-Catalan law of order ``d`` as ``K_d B_1 ... B_d`` with independent Beta variables.

    Returns ``(alpha, beta, K_d)``: ``B_j ~ Beta(alpha_j, beta_j)`` with ``alpha_j = j/(d+1)``,
    ``beta_j = (j+1)/d - j/(d+1)`` (``j = 1..d``) and ``K_d = (d+1)^(d+1) / d^d``, the right end of
    the support. Gauss's multiplication formula turns :func:`fuss_catalan_moment` into
    ``K_d^t prod_j Gamma(t + alpha_j) Gamma(alpha_j + beta_j) / (Gamma(alpha_j) Gamma(t + alpha_j + beta_j))``
    (the Mellin transform of that product); book/rank_volume_theorem.ipynb gives the derivation.
    """
    d = check_int(depth, "depth")
    j = np.arange(1, d + 1, dtype=np.float64)
    alpha = j / (d + 1)
    beta = (j + 1) / d - alpha
    return alpha, beta, math.exp((d + 1) * math.log(d + 1) - d * math.log(d))


def sample_fuss_catalan(depth: int, size: int, *, seed: int = 0) -> np.ndarray:
    """``size`` independent draws from the Fuss-Catalan law of order ``depth`` (float64 numpy array).

    Exact sampler through the Beta-product representation of :func:`fuss_catalan_beta_parameters`
    (no random matrices): a draw is ``K_d`` times a product of ``d`` independent Beta variables.
    Seeded through ``support.seeding`` (stream ``(seed, "fuss_catalan", depth)``).
    """
    from support.seeding import generator

    alpha, beta, k_d = fuss_catalan_beta_parameters(depth)
    size = check_int(size, "size")
    check_fits(16 * size * len(alpha), f"sample_fuss_catalan(size={size})")
    rng = generator(seed, "fuss_catalan", int(depth))
    log_x = np.log(rng.beta(alpha, beta, size=(size, len(alpha)))).sum(axis=1)
    return k_d * np.exp(log_x)


def _fuss_catalan_log_parts(phi, d: float):
    """``log x``, ``log density`` and ``d log x / d phi`` at ``phi`` in ``(0, pi/(d+1))``, stably."""
    s1, sd, sd1 = np.sin(phi), np.sin(d * phi), np.sin((d + 1) * phi)
    log_x = (d + 1) * np.log(sd1) - np.log(s1) - d * np.log(sd)
    log_density = (
        2 * np.log(s1) + (d - 1) * np.log(sd) - d * np.log(sd1) - math.log(math.pi)
    )
    # d log x / d phi = (d+1)^2 cot((d+1) phi) - cot(phi) - d^2 cot(d phi); the 1/phi parts cancel
    # exactly ((d+1) - 1 - d = 0), so subtract them analytically (the edge phi -> 0 is x -> K_d)
    dlogx = (
        (d + 1) ** 2 * _cot_minus_inverse((d + 1) * phi)
        - _cot_minus_inverse(phi)
        - d**2 * _cot_minus_inverse(d * phi)
    )
    return log_x, log_density, dlogx


def _check_phi(phi, d: float):
    phi = np.asarray(phi, dtype=np.float64)
    if not np.all((phi > 0) & (phi < math.pi / (d + 1))):  # NaN fails this too
        raise ValueError(
            f"phi must lie in (0, pi/(depth+1)) = (0, {math.pi / (d + 1):.6g})"
        )
    return phi


def fuss_catalan_density(phi, depth: int):
    """Fuss-Catalan density of order ``depth`` in the Haagerup-Moller parametrisation.

    For ``0 < phi < pi/(d+1)``: ``x(phi) = sin((d+1)phi)^(d+1) / (sin(phi) sin(d phi)^d)`` runs
    over the support ``(0, (d+1)^(d+1)/d^d)`` (decreasing in ``phi``) and the density there is
    ``sin(phi)^2 sin(d phi)^(d-1) / (pi sin((d+1)phi)^d)``. Returns ``(x, density, dx_dphi)``.
    Used to integrate against the law without the Mellin closed form (:func:`fuss_catalan_expectation`).
    Computed in logarithms, with the cancelling ``1/phi`` parts of ``dx/dphi`` removed analytically,
    so the edges of the support keep full relative accuracy (the density itself is infinite at
    ``x -> 0``, where it may overflow to ``inf`` for large depths).
    """
    d = float(_check_depth(depth, minimum=1.0))
    phi = _check_phi(phi, d)
    log_x, log_density, dlogx = _fuss_catalan_log_parts(phi, d)
    x = np.exp(log_x)
    with np.errstate(over="ignore"):
        density = np.exp(log_density)
    return x, density, x * dlogx


_FUSS_CATALAN_QUADRATURE_MAX_DEPTH = 10_000


def fuss_catalan_expectation(func, depth: int) -> float:
    """``E[func(x)]`` under the Fuss-Catalan law of order ``depth``, by adaptive quadrature.

    Integrates ``func(x(phi)) density(phi) |dx/dphi|`` over ``phi`` in ``(0, pi/(d+1))`` (the
    product evaluated in logarithms, so it stays finite where the density alone overflows); no
    use of the Mellin closed form, hence an independent check of it. ``func`` must accept numpy
    arrays. Depths above 10,000 are refused (ValueError): there the law concentrates on a
    vanishing fraction of ``(0, pi/(d+1))`` and the quadrature can no longer be trusted.
    """
    d = float(_check_depth(depth, minimum=1.0))
    if d > _FUSS_CATALAN_QUADRATURE_MAX_DEPTH:
        raise ValueError(
            f"fuss_catalan_expectation supports depth <= {_FUSS_CATALAN_QUADRATURE_MAX_DEPTH}, "
            f"got {depth}; use fuss_catalan_moment or sample_fuss_catalan"
        )

    def integrand(phi):
        log_x, log_density, dlogx = _fuss_catalan_log_parts(np.asarray(phi), d)
        x = np.exp(log_x)
        weight = np.exp(log_density + log_x + np.log(np.abs(dlogx)))
        return float(func(x) * weight)

    value, _ = integrate.quad(
        integrand, 0.0, math.pi / (d + 1), limit=400, epsabs=1e-13, epsrel=1e-11
    )
    return value


# ----------------------------------------------------------------------------- the two limits
_GAP_SERIES_FROM = 30.0  # u = d/2 from which the large-depth expansion of g is used
_GAP_TAYLOR_BELOW = 1e-2  # u below which the Taylor series at 0 is used
_GAP_TAYLOR_TERMS = 10


@functools.cache
def _gap_asymptotic_coefficients():
    """``c_m`` in ``g = -log u + C_INFINITY + sum_m c_m u^-m`` (``u = d/2``), ``m = 1..16``.

    ``c_m = (-1)^(m+1)/m [B_{m+1}(3/2) - B_{m+1}(2) - B_m(3/2)/2]``, from the Stirling series of
    ``log Gamma(u + a)`` and ``digamma(u + a)`` with Bernoulli polynomials (DLMF 5.11.8 and its
    derivative in ``u``).
    """

    def coefficient(m):
        return (
            (-1) ** (m + 1)
            / m
            * (
                _bernoulli_polynomial(m + 1, 1.5)
                - _bernoulli_polynomial(m + 1, 2.0)
                - _bernoulli_polynomial(m, 1.5) / 2
            )
        )

    return np.array([coefficient(m) for m in range(1, _SERIES_TERMS + 1)])


@functools.cache
def _gap_taylor_coefficients():
    """``a_k`` in ``g(u) = sum_k a_k u^k`` near ``u = 0``, from
    ``dg/du = -(u+1/2) psi'(u+3/2) + u psi'(u+2)``."""

    def poly(j, z):  # psi^{(j)}(z)
        return special.polygamma(j, z)

    slope = [-0.5 * poly(1, 1.5)]  # b_0
    for j in range(1, _GAP_TAYLOR_TERMS):
        slope.append(
            -0.5 * poly(j + 1, 1.5) / math.factorial(j)
            - poly(j, 1.5) / math.factorial(j - 1)
            + poly(j, 2.0) / math.factorial(j - 1)
        )
    # a_{k+1} = b_k / (k + 1)
    return np.array([b / (k + 1) for k, b in enumerate(slope)])


def _gap_closed_form(u):
    return (
        special.gammaln(u + 1.5)
        - special.gammaln(u + 2.0)
        - special.gammaln(1.5)
        - (u + 0.5) * special.digamma(u + 1.5)
        + u * special.digamma(u + 2.0)
        + 0.5 * special.digamma(1.5)
    )


def _gap_large_width(d):
    """``g(d)`` at full relative accuracy for every ``d >= 0`` (three formulas, by range of ``u = d/2``)."""
    u = np.asarray(d, dtype=np.float64) / 2.0
    out = np.empty(u.shape)
    tiny = u < _GAP_TAYLOR_BELOW
    large = u >= _GAP_SERIES_FROM
    middle = ~(tiny | large)
    out[middle] = _gap_closed_form(u[middle])
    if np.any(tiny):
        ut = u[tiny]
        out[tiny] = ut * np.polyval(_gap_taylor_coefficients()[::-1], ut)
    if np.any(large):
        ul = u[large]
        inv = 1.0 / ul
        out[large] = (
            -np.log(ul)
            + C_INFINITY
            + inv * np.polyval(_gap_asymptotic_coefficients()[::-1], inv)
        )
    return out


def entropy_gap_large_width(depth, method: str = "closed_form"):
    """``lim_{n -> inf} rho(W_d ... W_1) - log n`` at fixed depth ``d`` (in probability), i.i.d. Gaussian factors.

    With ``s = sqrt(x)`` and ``x`` Fuss-Catalan of order ``d``, the limit is
    ``log E[s] - E[s log s] / E[s]``. Closed form (``u = d/2``, psi = digamma)::

        g(d) = log Gamma(u + 3/2) - log Gamma(u + 2) - log Gamma(3/2)
               - (u + 1/2) psi(u + 3/2) + u psi(u + 2) + psi(3/2)/2

    ``g(0) = 0``, ``g(1) = log 0.8050 = -0.2169`` (quarter-circle law), ``g`` strictly decreasing
    and ``g(d) + log(d/2) -> C_INFINITY = 1/2 - log Gamma(3/2) + psi(3/2)/2`` as ``d -> inf``.
    The closed form is evaluated as written for ``1/50 <= d < 60``; below, its Taylor series at 0,
    and from 60 on, its asymptotic expansion in ``2/d`` (the written form cancels terms of size
    ``d log d`` down to ``log d`` and would lose every digit by ``d ~ 1e16``). Relative accuracy is
    about 1e-14 at every depth. ``method="quadrature"`` evaluates the same expectations by numerical
    integration of the density instead (slow; checks; depths 1 to 10,000). Real depths ``>= 0`` are
    accepted (``>= 1`` for quadrature). See book/rank_volume_theorem.ipynb.
    """
    if method == "closed_form":
        d = _check_depth(depth)
        return _scalar_or_array(_gap_large_width(d), depth)
    if method == "quadrature":
        d = _check_depth(depth, minimum=1.0)
        values = []
        for di in np.atleast_1d(d):
            es = fuss_catalan_expectation(np.sqrt, di)
            eslogs = fuss_catalan_expectation(
                lambda x: 0.5 * special.xlogy(np.sqrt(x), x), di
            )
            values.append(math.log(es) - eslogs / es)
        return _scalar_or_array(np.array(values).reshape(d.shape), depth)
    raise ValueError(f"method must be 'closed_form' or 'quadrature', got {method!r}")


def _gibbs_limit(d):
    """``L(d) = d/(d+2) - log(1 + d/2)``, via its Taylor series for small ``d`` (both terms ~ d/2 cancel)."""
    a = np.asarray(d, dtype=np.float64) / 2.0
    out = np.empty(a.shape)
    small = a < 1e-2
    big = ~small
    out[big] = a[big] / (1 + a[big]) - np.log1p(a[big])
    if np.any(small):  # log1p(a) - a/(1+a) = sum_{k>=2} (-1)^k (k-1)/k a^k
        s = a[small]
        out[small] = -sum((-1) ** k * (k - 1) / k * s**k for k in range(2, 14))
    return out


def entropy_gap_large_depth(depth, n: int | None = None):
    """Lyapunov (Gibbs) approximation of ``rho(W_d ... W_1) - log n``: ``H(softmax(d lambda)) - log n``.

    Replacing the singular values ``s_i`` by their large-depth asymptotics ``exp(d lambda_i)``
    (Furstenberg-Kesten / Oseledets, Newman's ``lambda_i``) gives a Gibbs distribution at inverse
    temperature ``d``; its entropy decreases strictly with ``d`` and tends to 0. For finite ``n`` the
    exact Newman spectrum is used (independent of the variance; the result is clipped at 0, its
    exact upper bound, against rounding); ``n=None`` gives the ``n -> infinity`` limit of that
    approximation, ``L(d) = d/(d+2) - log(1 + d/2)`` (triangle law: ``exp(2 lambda)`` uniform on
    [0, 1]), which is *not* an iterated limit of ``rho`` itself (``rho -> 0`` as ``d -> inf`` at every
    ``n``). Depths may be real and ``>= 0``. See book/rank_volume_theorem.ipynb.
    """
    d = _check_depth(depth)
    if n is None:
        return _scalar_or_array(_gibbs_limit(d), depth)
    n = check_int(n, "n")
    lam = lyapunov_spectrum(n)
    logits = d[..., None] * (lam - lam[0])  # shape (..., n), max 0: exp never overflows
    gap = np.minimum(entropy_of_spectrum(np.exp(logits)) - math.log(n), 0.0)
    return _scalar_or_array(gap, depth)


def entropy_gap_difference(depth):
    """``L(d) - g(d)``: how far the large-width limit of the Gibbs approximation lies above the exact gap.

    Zero at ``d = 0``, strictly increasing (:func:`entropy_gap_difference_slope` is positive),
    tending to ``1 - C_INFINITY ~ 0.361`` nats. Accurate at every depth (both terms are).
    """
    d = _check_depth(depth)
    u = d / 2.0
    out = np.asarray(_gibbs_limit(d) - _gap_large_width(d), dtype=np.float64)
    # both terms ~ -log u: subtract their expansions, not their values
    large = u >= _GAP_SERIES_FROM
    if np.any(large):
        ul = u[large]
        inv = 1.0 / ul
        out[large] = (
            1
            - C_INFINITY
            - 1 / (1 + ul)
            - np.log1p(inv)
            - inv * np.polyval(_gap_asymptotic_coefficients()[::-1], inv)
        )
    return _scalar_or_array(out, depth)


def entropy_gap_difference_kernel(t):
    """``k(t)`` with ``(L - g)'(d) = (1/2) int_0^inf k(t) exp(-t d/2) dt``, ``t >= 0``.

    ``k(t) = e^-t (t - 1 + e^-t) / ((1 + e^(-t/2))^2 (1 - e^(-t/2)))``, positive for ``t > 0``
    because ``t > 1 - e^-t``; ``k(t) ~ t/4`` near 0 (evaluated there by its Taylor series).
    book/rank_volume_theorem.ipynb derives it from ``psi'(z) = int t e^(-zt) / (1 - e^-t) dt``.
    """
    t = np.asarray(t, dtype=np.float64)
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError(f"t must be finite and >= 0, got {t!r}")
    small = t < 1e-2
    # t - 1 + e^-t near 0
    taylor = t * t * (0.5 - t / 6 + t * t / 24 - t**3 / 120 + t**4 / 720)
    numerator = np.where(small, taylor, t + np.expm1(-t))
    half = -np.expm1(-t / 2)  # 1 - e^(-t/2) ~ t/2
    ratio = np.where(t > 0, numerator / np.where(t > 0, half, 1.0), 0.0)
    out = np.exp(-t) * ratio / (1 + np.exp(-t / 2)) ** 2
    return _scalar_or_array(out, t)


_LAGUERRE = np.polynomial.laguerre.laggauss(80)


def entropy_gap_difference_slope(depth, method: str = "closed_form"):
    """``d/dd [L(d) - g(d)] = A(d/2)/2`` with ``A(u) = (u+1/2) psi'(u+3/2) - u psi'(u+2) - u/(u+1)^2``.

    ``method="closed_form"`` evaluates ``A`` with trigamma functions for ``d/2 < 100``, and from there
    by Gauss-Laguerre quadrature of its Laplace representation (``A ~ 1/(4u^2)`` while its terms are
    of size ``1/u``, so the written form would cancel); ``method="laplace"`` integrates
    ``(1/2) int k(t) e^(-t d/2) dt`` with :func:`entropy_gap_difference_kernel` by adaptive
    quadrature at every depth (an independent check). Positive at every ``d >= 0``: this is the
    proof that ``g(d) < L(d)`` for ``d > 0``.
    """
    d = _check_depth(depth)
    u = d / 2.0
    if method == "laplace":
        # for u >= 1 in the scaled variable s = u t, where the weight is e^-s
        def laplace(
            ui,
        ):
            if ui < 1:
                f, scale = (
                    (lambda t: entropy_gap_difference_kernel(t) * math.exp(-ui * t)),
                    1.0,
                )
            else:
                f, scale = (
                    (lambda s: entropy_gap_difference_kernel(s / ui) * math.exp(-s)),
                    1.0 / ui,
                )
            return (
                scale
                * integrate.quad(f, 0, np.inf, limit=400, epsabs=0, epsrel=1e-12)[0]
            )

        values = [laplace(ui) for ui in np.atleast_1d(u).ravel()]
        return _scalar_or_array(0.5 * np.array(values).reshape(u.shape), depth)
    if method != "closed_form":
        raise ValueError(f"method must be 'closed_form' or 'laplace', got {method!r}")
    u_arr = np.atleast_1d(u).astype(np.float64)
    out = np.empty(u_arr.shape)
    large = u_arr >= 100
    um = u_arr[~large]
    out[~large] = (
        (um + 0.5) * special.polygamma(1, um + 1.5)
        - um * special.polygamma(1, um + 2.0)
        - um / (um + 1) ** 2
    )
    if np.any(large):  # A(u) = (1/u) int k(s/u) e^-s ds
        nodes, weights = _LAGUERRE
        ul = u_arr[large]
        out[large] = (
            entropy_gap_difference_kernel(nodes[None, :] / ul[:, None]) * weights
        ).sum(-1) / ul
    return _scalar_or_array(0.5 * out.reshape(u.shape), depth)


# ----------------------------------------------------------------------------- width two
def two_by_two_entropy(log_ratio):
    """``rho`` of a ``2 x 2`` matrix with singular values ``s_1 >= s_2``, from ``x = log(s_1/s_2) >= 0``.

    With ``r = s_2/s_1 = e^-x``: ``rho = log(1 + r) + x r/(1 + r)``, strictly decreasing in ``x``
    from ``log 2`` (``x = 0``) to 0 (rank one, ``x -> inf``). ``x = inf`` (rank one) gives 0.
    """
    x = np.asarray(log_ratio, dtype=np.float64)
    if np.any(np.isnan(x)) or np.any(x < 0):
        raise ValueError(f"log_ratio must be >= 0, got {log_ratio!r}")
    with np.errstate(invalid="ignore"):
        r = np.exp(-x)
        value = np.log1p(r) + np.where(np.isinf(x), 0.0, x * r / (1 + r))
    return _scalar_or_array(value, log_ratio)


def _two_by_two_step(x, z, log_s):
    """``x' = arccosh(cosh(x - z) / s)`` in logarithms (no overflow at any depth)."""
    return _arccosh_from_log(_log_cosh(x - z) - log_s)


def two_by_two_log_ratio_samples(depths, samples: int, *, seed: int = 0) -> np.ndarray:
    """Samples of ``x_d = log(s_1/s_2)`` of a product of ``d`` i.i.d. ``2 x 2`` Gaussian matrices.

    Uses the scalar recursion proved in book/rank_volume_theorem.ipynb instead of matrices:
    ``x_0 = 0`` and ``cosh(x_{d+1}) = cosh(x_d - Z) / |sin theta|`` with ``theta`` uniform on
    ``(0, 2 pi)`` and ``Z`` of density ``1/(2 cosh^2 z)`` (half a standard logistic variable),
    independent. Returns a float64 array of shape ``(len(depths), samples)``, the depths being
    checkpoints along the same chains (``depths`` strictly increasing, each ``>= 1``).
    """
    from support.seeding import generator

    depths = check_increasing(depths)
    samples = check_int(samples, "samples")
    check_fits(
        8 * samples * (len(depths) + 6), f"two_by_two_log_ratio_samples({samples})"
    )
    rng = generator(seed, "two_by_two_log_ratio")
    x = np.zeros(samples)
    out = np.empty((len(depths), samples))
    wanted = {d: i for i, d in enumerate(depths)}
    for d in range(1, depths[-1] + 1):
        z = 0.5 * rng.logistic(size=samples)
        log_s = np.log(np.abs(np.sin(rng.uniform(0.0, 2 * math.pi, size=samples))))
        x = _two_by_two_step(x, z, log_s)
        if d in wanted:
            out[wanted[d]] = x
    return out


def two_by_two_transition_cdf(log_ratio, threshold, *, nodes: int = 64):
    """``P(x_{d+1} <= y | x_d = x)`` for the width-two chain of :func:`two_by_two_log_ratio_samples`.

    ``x_{d+1} <= y`` iff ``|x - Z| <= b(theta) = arccosh(|sin theta| cosh y)`` (when
    ``|sin theta| cosh y >= 1``; impossible otherwise), and ``P(|x - Z| <= b) = F(x + b) - F(x - b)``
    with ``F(z) = (1 + tanh z)/2``, written as ``sinh(2b) / (2 cosh(x+b) cosh(x-b))`` to keep its
    relative accuracy in the tails. The average over ``theta`` is a ``nodes``-point Gauss-Legendre
    rule after the substitution ``phi = phi_0 + (pi/2 - phi_0) v^2`` that removes the square-root
    behaviour at ``phi_0 = arcsin(1/cosh y)``. Broadcasts ``log_ratio`` against ``threshold``.
    """
    x = _check_log_ratio(log_ratio)
    y = _check_log_ratio(threshold, "threshold")
    x, y = np.broadcast_arrays(x, y)
    v, w = _gauss_legendre_01(check_int(nodes, "nodes"))
    with np.errstate(over="ignore", divide="ignore"):  # exp(-huge) = 0 is intended
        return _transition_cdf(x, y, v, w)


def _transition_cdf(x, y, v, w):
    """The body of :func:`two_by_two_transition_cdf` (arguments checked and broadcast)."""
    ys = y[..., None]
    log_cosh_y = _log_cosh(ys)
    phi0 = np.arcsin(np.minimum(1.0, np.exp(-log_cosh_y)))
    span = math.pi / 2 - phi0
    phi = phi0 + span * v**2
    log_sin = np.log(np.sin(phi))
    log_w = log_sin + log_cosh_y
    b = _arccosh_from_log(log_w)
    # x - b as (x - y) - (b - y): for huge x and y (1e15 and beyond) b cannot be formed to
    # the accuracy of their difference, which is all the tail depends on
    b_minus_y = np.where(
        log_w > 0,
        log_sin
        + _log_cosh_excess(ys)
        + np.log1p(np.sqrt(-np.expm1(-2 * np.maximum(log_w, 0.0)))),
        -ys,
    )
    gap = (x[..., None] - ys) - b_minus_y
    # log P = log sinh(2b) - log 2 - log cosh(x + b) - log cosh(x - b), with the large parts
    # 2b - (x + b) - |x - b| = -gap - |gap| combined exactly
    log_p = (
        -gap
        - np.abs(gap)
        + np.log(-np.expm1(-4 * b))
        - np.log1p(np.exp(-2 * (x[..., None] + b)))
        - np.log1p(np.exp(-2 * np.abs(gap)))
    )
    integrand = np.exp(log_p) * 2 * span * v
    cdf = np.clip((2 / math.pi) * (integrand * w).sum(-1), 0.0, 1.0)
    return float(cdf) if cdf.ndim == 0 else cdf


def two_by_two_log_ratio_cdf(
    depths, grid, *, nodes: int = 64, tail_tolerance: float = 1e-7
) -> dict:
    """Exact law of ``x_d = log(s_1/s_2)`` at width two: ``{d: P(x_d <= grid)}`` for each depth.

    Starts from ``x_0 = 0`` (the identity) and applies the transition kernel
    (:func:`two_by_two_transition_cdf`) depth by depth, the law at each depth being represented by
    the masses of the cells between grid points, placed at the cell midpoints (midpoint rule for
    the Stieltjes integral; error of order ``spacing^2``). ``grid`` must start at 0 and increase
    strictly; it must reach far enough that the mass beyond its end stays below
    ``tail_tolerance`` at every requested depth (ValueError otherwise, naming the depth).
    """
    grid = np.asarray(grid, dtype=np.float64)
    if grid.ndim != 1 or grid.size < 3 or grid[0] != 0 or np.any(np.diff(grid) <= 0):
        raise ValueError(
            "grid must be a strictly increasing 1-d array starting at 0 (at least 3 points)"
        )
    depths = [check_int(d, "depth") for d in np.atleast_1d(depths).tolist()]
    tail_tolerance = check_real(tail_tolerance, "tail_tolerance", minimum=0.0)
    midpoints = (grid[:-1] + grid[1:]) / 2
    kernel = np.stack(
        [two_by_two_transition_cdf(m, grid, nodes=nodes) for m in midpoints]
    )
    cdf = two_by_two_transition_cdf(0.0, grid, nodes=nodes)
    out = {}
    for d in range(1, max(depths) + 1):
        if d > 1:
            cdf = np.diff(cdf) @ kernel
        if d in depths:
            if 1 - cdf[-1] > tail_tolerance:
                raise ValueError(
                    f"grid ends at {grid[-1]:g} but depth {d} puts mass {1 - cdf[-1]:.2e} "
                    f"beyond it; extend the grid"
                )
            out[d] = cdf.copy()
    return out


def two_by_two_entropy_drift(log_ratio, *, nodes: int = 64, points: int = 400):
    """``E[rho(P_{d+1}) | x_d = x] - rho(P_d)`` at width two, by quadrature (no Monte Carlo).

    Integration by parts against the transition kernel: with ``rho_2`` of :func:`two_by_two_entropy`,
    ``-rho_2'(y) = y e^-y / (1 + e^-y)^2`` and ``F(y | x)`` of :func:`two_by_two_transition_cdf`,
    the drift is ``int_0^inf [F(y | x) - 1{y >= x}] (-rho_2'(y)) dy``, integrated by Gauss-Legendre
    rules on ``[0, x]`` and ``[x, x + 60]`` (beyond, the weight is below ``e^-60``).
    """
    x = _check_log_ratio(log_ratio)
    v, w = _gauss_legendre_01(check_int(points, "points"))
    nodes = check_int(nodes, "nodes")
    out = []
    for xi in np.atleast_1d(x).ravel():
        total = 0.0
        for lo, hi, step in ((0.0, xi, 0.0), (xi, xi + 60.0, 1.0)):
            if hi <= lo:
                continue
            y = lo + (hi - lo) * v
            weight = y * np.exp(-y) / (1 + np.exp(-y)) ** 2
            cdf = two_by_two_transition_cdf(xi, y, nodes=nodes)
            total += (hi - lo) * np.sum(w * (cdf - step) * weight)
        out.append(total)
    return _scalar_or_array(np.array(out).reshape(x.shape), log_ratio)


# ----------------------------------------------------------------------------- one step at any width
def _entropy_near_rank_one(s):
    """Entropy of decreasing spectra ``s`` (torch, ``(..., n)``) as ``log1p(R) - sum t log t / (1 + R)``
    with ``t = s_i / s_1`` (``i >= 2``) and ``R = sum t``: the same number as the usual formula, but
    every term is positive, so it keeps its relative accuracy near rank one (where ``1 - p_1``
    would round)."""
    import torch

    t = s[..., 1:] / s[..., :1]
    r = t.sum(-1)
    return torch.log1p(r) - torch.xlogy(t, t).sum(-1) / (1 + r)


def entropy_drift(
    singular_values, samples: int, *, seed: int = 0, device="cpu", chunk: int = 8192
) -> tuple:
    """Monte Carlo of ``E[rho(W Sigma)] - rho(Sigma)`` for a Gaussian ``n x n`` factor ``W``.

    ``rho(W Sigma)`` depends on ``Sigma`` only through its singular values (``W`` is invariant
    under orthogonal maps on either side), so ``Sigma = diag(singular_values)``; a 2-d array of
    shape ``(k, n)`` gives ``k`` spectra, all evaluated with the *same* draws of ``W`` (common
    random numbers: differences between spectra are far less noisy than each value). Returns
    ``(drift, standard_error)``, float64 numpy arrays of shape ``(k,)`` (scalars for one spectrum).
    This is the one-step drift of ``rho`` along the product ``P_{d+1} = W_{d+1} P_d``; the
    chapter's supermartingale conjecture is that it is negative for every ``Sigma`` of rank >= 2.
    """
    import torch

    from support.seeding import torch_generator

    spectra = np.asarray(singular_values, dtype=np.float64)
    single = spectra.ndim == 1
    spectra = np.atleast_2d(spectra)
    if spectra.ndim != 2 or spectra.shape[1] < 2:
        raise ValueError(
            f"singular_values must have shape (n,) or (k, n) with n >= 2, got {spectra.shape}"
        )
    if (
        not np.all(np.isfinite(spectra))
        or np.any(spectra < 0)
        or np.any(spectra.max(1) <= 0)
    ):
        raise ValueError("singular_values must be finite, >= 0 and not all zero")
    samples = check_int(samples, "samples", minimum=2)
    chunk = check_int(chunk, "chunk")
    device = resolve_device(device, default="cpu")
    n = spectra.shape[1]
    _check_batch_fits(
        min(chunk, samples),
        n,
        torch.float64,
        device,
        f"entropy_drift(chunk={chunk})",
        3,
    )
    gen = torch_generator(seed, "entropy_drift", device=device)
    spectra = np.ascontiguousarray(np.sort(spectra, axis=1)[:, ::-1])
    scale = torch.as_tensor(
        spectra / spectra[:, :1], dtype=torch.float64, device=device
    )
    total = torch.zeros(len(spectra), dtype=torch.float64, device=device)
    total_sq = torch.zeros_like(total)
    start = 0
    while start < samples:
        m = min(chunk, samples - start)
        w = torch.randn(m, n, n, generator=gen, dtype=torch.float64, device=device)
        for i in range(len(spectra)):
            rho = _entropy_near_rank_one(torch.linalg.svdvals(w * scale[i]))
            total[i] += rho.sum()
            total_sq[i] += (rho * rho).sum()
        start += m
    mean = (total / samples).cpu().numpy()
    var = (
        np.maximum((total_sq / samples).cpu().numpy() - mean**2, 0.0)
        * samples
        / (samples - 1)
    )
    drift = mean - _entropy_near_rank_one(torch.as_tensor(spectra)).numpy()
    se = np.sqrt(var / samples)
    return (float(drift[0]), float(se[0])) if single else (drift, se)
