"""Batched Monte Carlo of the spectral entropy rho at random initialisation.

The chapter *Finite-width simulations* (``book/finite_width.ipynb``) explains and uses this
module. Two samplers:

* :func:`sample_product_entropy` -- rho of end-to-end matrices ``W_depth ... W_1`` of random
  ``n x n`` factors (linear networks; Normal, Uniform, orthogonal, low-rank and residual
  factors), the paper's ``rho(W_e)``.
* :func:`sample_gram_entropy` -- rho of the Gram matrix ``K`` of the outputs of a random fully
  connected network (linear, ReLU, ...) on random inputs, the paper's ``rho(K)``; its defaults
  are the book's one construction of the paper's Observation 1.

Both are batched over samples (``torch.bmm``), stream in chunks so peak memory stays bounded
whatever ``samples`` is, and run on a GPU when one is given.

Reproducibility. Samples are grouped in fixed blocks of ``BLOCK`` samples; block ``b``
draws from its own generator seeded from ``support.seeding.seed_sequence(seed, b)``. A chunk
is a run of whole blocks, so the same seed gives the same numbers whatever the chunk size or
the number of worker threads (on a given device: CPU and CUDA generators differ).

Speed. On a CPU the cost of a Gaussian product is dominated by drawing the random variates.
For Gaussian factors the sampler draws *Bartlett factors* instead (upper triangular,
chi-distributed diagonal, standard normal above it): by rotation invariance the product of
independent Bartlett factors has the same singular-value law as the product of full Gaussian
matrices (proved in the chapter) and needs about half the variates. The same invariance lets
:func:`sample_gram_entropy` draw a Gaussian layer's outputs from a triangular factor of its
inputs instead of drawing the whole weight matrix. The chapter's benchmark
(``python -m support.experiments.finite_width bench``) times the product sampler against a
plain per-sample numpy loop and against the machine's floor for the same work.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from support.activations import activate, check_activation
from support.checks import (
    check_choice,
    check_fits,
    check_increasing,
    check_int,
    check_real,
)
from support.hardware import resolve_device, resolve_dtype
from support.rank import entropy_of_spectrum, gram_entropy
from support.rmt import renormalised_products
from support.seeding import seed_sequence

BLOCK = 64
"""Samples per random stream, the unit of reproducibility (chunks are whole blocks)."""

PRODUCT_DISTS = ("normal", "uniform", "orthogonal", "lowrank", "residual")
GRAM_KERNELS = ("centred", "raw")
OBSERVATION1 = {"inputs": 16, "input_dim": 16, "width": 64, "kernel": "centred"}
"""Sizes and kernel of the book's construction of the paper's Observation 1 (the defaults of
:func:`sample_gram_entropy_depths`; *Finite-width simulations* explains the choice)."""
# per worker on CPU (cache-sized chunks measured fastest); 128x on GPU
_CHUNK_BYTES = 8 * 2**20


# ----------------------------------------------------------------------------- streams


def block_generator(seed: int, block: int, device=None) -> torch.Generator:
    """The torch generator of block ``block`` for ``seed`` (independent streams via SeedSequence).

    The stream is ``seed_sequence(seed, block)`` with the block index as the only key, and the
    torch seed is its first 64-bit state word -- not :func:`support.seeding.torch_generator`'s
    ``(seed, purpose, ...)`` convention, which came later. It stays as it is because the stored
    results of *Finite-width simulations* were drawn from these streams: any other derivation
    would change every sample and invalidate them.
    """
    state = seed_sequence(seed, block).generate_state(1, np.uint64)[0]
    gen = torch.Generator(device=resolve_device(device, default="cpu"))
    gen.manual_seed(int(state))
    return gen


def _plan(
    samples: int,
    chunk_size: int | None,
    bytes_per_sample: int,
    workers: int,
    device: torch.device,
) -> list[range]:
    """Split ``samples`` into chunks of whole blocks; returns one range of block indices per chunk."""
    blocks = math.ceil(samples / BLOCK)
    if chunk_size is None:
        budget = _CHUNK_BYTES if device.type == "cpu" else 128 * _CHUNK_BYTES
        per_chunk = max(1, budget // (bytes_per_sample * BLOCK))
        # keep every worker busy
        per_chunk = min(per_chunk, math.ceil(blocks / workers))
    else:
        chunk_size = check_int(chunk_size, "chunk_size")
        if chunk_size % BLOCK:
            raise ValueError(
                f"chunk_size must be a multiple of BLOCK={BLOCK}, got {chunk_size}"
            )
        per_chunk = chunk_size // BLOCK
    return [range(b, min(b + per_chunk, blocks)) for b in range(0, blocks, per_chunk)]


def _check_sizes(samples, rows, per_sample, chunk_size, workers, device) -> None:
    """Refuse, before anything is drawn, a result (``rows x samples`` float64, held twice while
    the chunks are joined) or chunks (``workers`` of them at a time) that would not fit in
    memory."""
    padded = math.ceil(samples / BLOCK) * BLOCK
    check_fits(2 * 8 * rows * padded, f"{rows} x {samples} samples", device)
    if chunk_size is not None:
        check_fits(
            workers * per_sample * check_int(chunk_size, "chunk_size"),
            f"chunk_size={chunk_size} with {workers} workers",
            device,
        )


def _map_chunks(fn, chunks, workers: int, device: torch.device) -> list:
    """Run ``fn`` over chunks; on CPU each chunk runs with one intra-op thread, ``workers`` chunks at
    a time in Python threads (small LAPACK calls do not use several cores, whole chunks do)."""
    if device.type != "cpu":
        return [fn(c) for c in chunks]
    previous = torch.get_num_threads()
    # intra-op threads on tiny LAPACK calls only spin, worst on a busy machine
    torch.set_num_threads(1)
    try:
        if workers == 1 or len(chunks) == 1:
            return [fn(c) for c in chunks]
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(fn, chunks))
    finally:
        torch.set_num_threads(previous)


def _default_workers(device: torch.device) -> int:
    return (
        max(1, min(torch.get_num_threads(), os.cpu_count() or 1))
        if device.type == "cpu"
        else 1
    )


# ----------------------------------------------------------------------------- factors


def _draw(
    shape, gen: torch.Generator, dtype: torch.dtype, device, kind: str = "normal"
) -> torch.Tensor:
    """Standard normal (or U(-1, 1)) variates, always drawn in float32 and then converted, so that
    float32 and float64 runs with the same seed see the same matrices."""
    x = torch.empty(shape, dtype=torch.float32, device=device)
    x = (
        x.normal_(generator=gen)
        if kind == "normal"
        else x.uniform_(-1.0, 1.0, generator=gen)
    )
    return x if dtype == torch.float32 else x.to(dtype)


def _bartlett_blocks_(
    top: torch.Tensor, r22: torch.Tensor, gen: torch.Generator
) -> None:
    """Draw ``B`` Bartlett factors in block form, in place: ``top`` (``(B, a, n)``) gets the top
    ``a = ceil(n/2)`` rows, ``r22`` (``(B, b, b)``, ``b = n - a``) the bottom-right block; the
    bottom-left block is zero. Streams: ``B * a * n`` float32 normals, then the ``B * n`` chi
    variates (as square roots of twice Gamma(df/2) variates)."""
    batch, a, n = top.shape
    b = n - a
    x = (
        top
        if top.dtype == torch.float32
        else torch.empty(top.shape, dtype=torch.float32, device=top.device)
    )
    x.normal_(generator=gen)
    half_df = (
        torch.arange(n, 0, -1, dtype=torch.float32, device=top.device)
        .div_(2)
        .expand(batch, n)
    )
    # chi_k = sqrt(2 Gamma(k/2)). torch's public Gamma sampler (torch.distributions.Gamma)
    # takes no generator, so it would draw from the global stream and break the per-block
    # reproducibility above; _standard_gamma is the kernel that sampler calls, with a generator.
    chi = torch._standard_gamma(half_df, generator=gen).mul_(2.0).sqrt_()
    if b:  # strict lower triangle of the last b rows of x, transposed (disjoint from x's strict upper part)
        r22.copy_(x[:, a - b :, :b].mT)
        r22.triu_(1)
        r22.diagonal(dim1=-2, dim2=-1).copy_(chi[:, a:])
    x.triu_(1)
    x.diagonal(dim1=-2, dim2=-1).copy_(chi[:, :a])
    if x is not top:
        top.copy_(x)


def bartlett_(out: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Fill ``out`` (shape ``(B, n, n)``) with independent Bartlett factors, in place.

    A Bartlett factor is the ``R`` of the QR decomposition of an ``n x n`` standard Gaussian
    matrix: upper triangular, ``R_ii ~ chi_{n-i}`` (i = 0..n-1), ``R_ij ~ N(0, 1)`` for j > i,
    all independent. The ``n(n-1)/2`` normals are drawn as one contiguous ``(a, n)`` block per
    matrix (``a = ceil(n/2)``): its strict upper triangle fills the top ``a`` rows, and its
    strict lower triangle, transposed, the bottom-right ``b x b`` block (``b = n - a``).
    """
    batch, n = out.shape[0], out.shape[-1]
    a = (n + 1) // 2
    top = torch.empty(batch, a, n, dtype=out.dtype, device=out.device)
    r22 = torch.empty(batch, n - a, n - a, dtype=out.dtype, device=out.device)
    _bartlett_blocks_(top, r22, gen)
    out.zero_()
    out[:, :a, :] = top
    out[:, a:, a:] = r22
    return out


def bartlett_products(gens, n: int, depths, dtype: torch.dtype, device):
    """Yield the products ``R_d ... R_1`` of Bartlett factors at each depth ``d`` in ``depths``
    (increasing), one per sample (``BLOCK`` samples per generator), all along one chain. The product
    is kept in block form: an upper-triangular ``[[T, X], [0, Z]]`` is stored as its top rows
    ``[T, X]`` and ``Z``, and ``R P`` costs three half-size products (half the FLOPs of a dense
    product): ``[T', X'] = R11 [T, X] + [0, R12 Z]``, ``Z' = R22 Z``."""
    a = (n + 1) // 2
    b = n - a
    size = len(gens) * BLOCK

    def parts():
        return (
            torch.empty(size, a, n, dtype=dtype, device=device),
            torch.empty(size, b, b, dtype=dtype, device=device),
        )

    def draw(top, r22):
        for i, gen in enumerate(gens):
            _bartlett_blocks_(
                top[i * BLOCK : (i + 1) * BLOCK], r22[i * BLOCK : (i + 1) * BLOCK], gen
            )

    (ptop, p22), (ftop, f22), (ntop, n22) = parts(), parts(), parts()
    cross = torch.empty(size, a, b, dtype=dtype, device=device)
    draw(ptop, p22)
    tiny = torch.finfo(dtype).tiny
    for depth in range(1, depths[-1] + 1):
        if depth > 1:
            norm = torch.linalg.vector_norm(ptop, dim=(1, 2)).hypot_(
                torch.linalg.vector_norm(p22, dim=(1, 2))
            )
            norm.clamp_min_(tiny)
            ptop.div_(norm[:, None, None])
            p22.div_(norm[:, None, None])
            draw(ftop, f22)
            torch.bmm(ftop[:, :, :a], ptop, out=ntop)
            if b:  # (baddbmm_ into the strided view ntop[:, :, a:] would loop over the batch on CPU)
                torch.bmm(ftop[:, :, a:], p22, out=cross)
                ntop[:, :, a:] += cross
                torch.bmm(f22, p22, out=n22)
            ptop, ntop, p22, n22 = ntop, ptop, n22, p22
        if depth in depths:
            prod = torch.zeros(size, n, n, dtype=dtype, device=device)
            prod[:, :a, :] = ptop
            prod[:, a:, a:] = p22
            yield prod


def _fill_factor(
    out: torch.Tensor,
    gen: torch.Generator,
    dist: str,
    rank: int | None,
    residual_scale: float,
) -> None:
    """Fill ``out`` (shape ``(B, n, n)``) with one random factor per sample."""
    n, batch, dtype, device = out.shape[-1], out.shape[0], out.dtype, out.device
    if dist in ("normal", "uniform"):
        out.copy_(_draw(out.shape, gen, dtype, device, dist))
    elif dist == "orthogonal":
        q, r = torch.linalg.qr(_draw(out.shape, gen, dtype, device))
        # Haar measure
        out.copy_(q * torch.sgn(r.diagonal(dim1=-2, dim2=-1)).unsqueeze(-2))
    elif dist == "lowrank":
        f = _draw((2, batch, n, rank), gen, dtype, device)
        torch.bmm(f[0], f[1].mT, out=out)
    elif dist == "residual":
        out.copy_(_draw(out.shape, gen, dtype, device)).mul_(
            residual_scale / math.sqrt(n)
        )
        out.diagonal(dim1=-2, dim2=-1).add_(1.0)
    else:  # pragma: no cover - validated by the caller
        raise ValueError(f"unknown dist {dist!r}")


def _dense_products(
    gens,
    n: int,
    depths,
    dtype: torch.dtype,
    device,
    dist: str,
    rank,
    residual_scale: float,
):
    """Yield the products ``W_d ... W_1`` of dense random factors at each depth ``d`` in ``depths``
    (increasing), ``BLOCK`` samples per generator, along :func:`support.rmt.renormalised_products`."""

    def draw(buffer):
        for i, gen in enumerate(gens):
            _fill_factor(
                buffer[i * BLOCK : (i + 1) * BLOCK], gen, dist, rank, residual_scale
            )

    for _, prod, _ in renormalised_products(
        draw, depths, (len(gens) * BLOCK, n, n), dtype=dtype, device=device
    ):
        yield prod


def _spectrum(p: torch.Tensor, method: str) -> torch.Tensor:
    """Singular values of a batch of matrices: LAPACK SVD, or eigenvalues of the Gram matrix
    ``P^T P`` formed and diagonalised in float64 (faster; accurate to ~1e-8 of the largest
    singular value, below float32 rounding of the product itself)."""
    if method == "svd":
        return torch.linalg.svdvals(p)
    p64 = p.to(torch.float64)
    return torch.linalg.eigvalsh(p64.mT @ p64).clamp_min(0).sqrt()


# ----------------------------------------------------------------------------- public API


def sample_product_entropy(
    n: int,
    depth: int,
    samples: int,
    *,
    dist: str = "normal",
    seed: int = 0,
    device=None,
    dtype: torch.dtype = torch.float64,
    rank: int | None = None,
    residual_scale: float = 1.0,
    bartlett: bool = True,
    spectrum: str = "gram",
    chunk_size: int | None = None,
    workers: int | None = None,
) -> np.ndarray:
    """rho (nats) of ``samples`` independent products ``W_depth ... W_1`` of random ``n x n`` factors.

    ``dist`` picks the factors:

    * ``"normal"``: i.i.d. N(0, 1) entries (drawn as Bartlett factors unless ``bartlett=False``;
      same law of singular values, about half the variates);
    * ``"uniform"``: i.i.d. U(-1, 1) entries;
    * ``"orthogonal"``: Haar-random orthogonal factors (every product is orthogonal, rho = log n);
    * ``"lowrank"``: ``A B^T`` with ``A, B`` ``n x rank`` standard Gaussian (needs ``rank``);
    * ``"residual"``: ``I + residual_scale * G / sqrt(n)``, G standard Gaussian.

    The entry scale is irrelevant because rho is scale invariant; the running product is
    renormalised to unit Frobenius norm after each factor so deep products neither overflow nor
    underflow. ``spectrum`` is ``"gram"`` (float64 eigenvalues of ``P^T P``, default) or ``"svd"``
    (``torch.linalg.svdvals`` in ``dtype``). Returns a float64 numpy array of length ``samples``.
    See book/finite_width.ipynb.
    """
    return sample_product_entropy_depths(
        n,
        [depth],
        samples,
        dist=dist,
        seed=seed,
        device=device,
        dtype=dtype,
        rank=rank,
        residual_scale=residual_scale,
        bartlett=bartlett,
        spectrum=spectrum,
        chunk_size=chunk_size,
        workers=workers,
    )[0]


def sample_product_entropy_depths(
    n: int,
    depths,
    samples: int,
    *,
    dist: str = "normal",
    seed: int = 0,
    device=None,
    dtype: torch.dtype = torch.float64,
    rank: int | None = None,
    residual_scale: float = 1.0,
    bartlett: bool = True,
    spectrum: str = "gram",
    chunk_size: int | None = None,
    workers: int | None = None,
) -> np.ndarray:
    """rho at several depths along the same chains: row ``k`` of the result (shape
    ``(len(depths), samples)``) equals ``sample_product_entropy(n, depths[k], samples, ...)`` with the
    same arguments, but all depths cost one chain of ``max(depths)`` factors (the depth-``d`` product
    is the first ``d`` factors of the deepest one). ``depths`` must be strictly increasing."""
    n = check_int(n, "n")
    depths = check_increasing(depths)
    samples = check_int(samples, "samples")
    check_choice(dist, "dist", PRODUCT_DISTS)
    if dist == "lowrank":
        if rank is None:
            raise ValueError("dist='lowrank' needs rank")
        rank = check_int(rank, "rank")
        if rank > n:
            raise ValueError(f"rank must be <= n={n}, got {rank}")
    residual_scale = check_real(residual_scale, "residual_scale")
    check_choice(spectrum, "spectrum", ("gram", "svd"))
    dtype = resolve_dtype(dtype)
    device = resolve_device(device, default="cpu")
    workers = (
        _default_workers(device) if workers is None else check_int(workers, "workers")
    )
    itemsize = torch.finfo(dtype).bits // 8
    per_sample = 3 * n * n * itemsize
    _check_sizes(samples, len(depths), per_sample, chunk_size, workers, device)
    chunks = _plan(samples, chunk_size, per_sample, workers, device)

    def run(blocks: range) -> torch.Tensor:
        gens = [block_generator(seed, b, device) for b in blocks]
        if dist == "normal" and bartlett:
            products = bartlett_products(gens, n, depths, dtype, device)
        else:
            products = _dense_products(
                gens, n, depths, dtype, device, dist, rank, residual_scale
            )
        return torch.stack(
            [entropy_of_spectrum(_spectrum(p, spectrum)).cpu() for p in products]
        )

    rho = torch.cat(_map_chunks(run, chunks, workers, device), dim=1)[:, :samples]
    return rho.numpy()


def sample_gram_entropy(depth: int, samples: int, **kwargs) -> np.ndarray:
    """rho(K) (nats) of ``samples`` random networks of depth ``depth``: row ``0`` of
    :func:`sample_gram_entropy_depths` with ``depths=[depth]`` and the same keyword arguments
    (whose defaults are the book's construction of the paper's Observation 1)."""
    return sample_gram_entropy_depths([depth], samples, **kwargs)[0]


def sample_gram_entropy_depths(
    depths,
    samples: int,
    *,
    activation: str = "relu",
    kernel: str = OBSERVATION1["kernel"],
    inputs: int = OBSERVATION1["inputs"],
    input_dim: int = OBSERVATION1["input_dim"],
    width: int = OBSERVATION1["width"],
    dist: str = "normal",
    shortcut: bool = True,
    seed: int = 0,
    device=None,
    dtype: torch.dtype | None = None,
    chunk_size: int | None = None,
    workers: int | None = None,
) -> np.ndarray:
    """rho(K) (nats) of Gram matrices of random networks' outputs at initialisation, at each of
    ``depths`` (strictly increasing): an array of shape ``(len(depths), samples)``.

    The construction (the defaults are the one the book uses for the paper's Observation 1; the
    chapter *Finite-width simulations* explains each choice):

    * inputs: ``inputs`` points ``X`` (``inputs x input_dim``) with i.i.d. N(0, 1) coordinates,
      drawn afresh for every network;
    * a network of depth ``d``: ``d`` bias-free fully connected layers of ``width`` units with
      the activation between consecutive layers, ``h_1 = X W_1^T``,
      ``h_{l+1} = act(h_l) W_{l+1}^T``, so ``d - 1`` activations and a linear last layer (a
      depth-1 network is linear whatever the activation); weights i.i.d. N(0, 1/fan_in)
      (``dist="normal"``) or U(-1, 1) * sqrt(3/fan_in) (``"uniform"``);
    * ``Phi = h_d`` (``inputs x width``) and ``K = Phi_c Phi_c^T`` where ``Phi_c`` is ``Phi``
      minus its mean over the inputs (``kernel="centred"``) or ``Phi`` itself (``"raw"``);
      rho(K) comes from the singular values of ``Phi_c`` (:func:`support.rank.gram_entropy`).

    The network of depth ``d`` is the first ``d`` layers of the deepest one, so row ``k`` equals
    ``sample_gram_entropy(depths[k], samples, ...)`` with the same arguments, and all depths cost
    one chain. With Gaussian weights and ``shortcut=True`` a layer's output is drawn as
    ``R^T G^T / sqrt(fan_in)``, where ``h^T = Q R`` is a QR decomposition of the layer's input and
    ``G`` is a ``width x min(fan_in, inputs)`` standard Gaussian matrix: given ``h``, the rows of
    ``W`` projected on the columns of ``Q`` are i.i.d. N(0, I/fan_in), so this has exactly the
    law of ``h W^T`` and costs ``O(width * inputs^2)`` instead of ``O(width^2 * inputs)``.
    ``shortcut=False`` draws the full weight matrices (always so for uniform weights).
    Returns float64 numpy.
    """
    depths = check_increasing(depths)
    samples = check_int(samples, "samples")
    inputs = check_int(inputs, "inputs", 2)
    input_dim = check_int(input_dim, "input_dim")
    width = check_int(width, "width")
    check_activation(activation)
    check_choice(kernel, "kernel", GRAM_KERNELS)
    check_choice(dist, "dist", ("normal", "uniform"))
    dtype = resolve_dtype(dtype)
    device = resolve_device(device, default="cpu")
    workers = (
        _default_workers(device) if workers is None else check_int(workers, "workers")
    )
    from_gram = dist == "normal" and shortcut
    itemsize = torch.finfo(dtype).bits // 8
    fan = max(width, input_dim)
    per_sample = ((inputs if from_gram else width) * fan + 2 * inputs * fan) * itemsize
    _check_sizes(samples, len(depths), per_sample, chunk_size, workers, device)
    chunks = _plan(samples, chunk_size, per_sample, workers, device)
    wanted = set(depths)

    def layer(h: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        fan_in = h.shape[-1]
        if from_gram:
            # (BLOCK, min(fan_in, inputs), inputs)
            r = torch.linalg.qr(h.mT, mode="r")[1]
            g = _draw((BLOCK, width, r.shape[-2]), gen, dtype, device)
            return torch.bmm(r.mT, g.mT).div_(math.sqrt(fan_in))
        w = _draw((BLOCK, width, fan_in), gen, dtype, device, dist)
        w.mul_(1.0 / math.sqrt(fan_in) if dist == "normal" else math.sqrt(3.0 / fan_in))
        return torch.bmm(h, w.mT)

    def run(blocks: range) -> torch.Tensor:
        out = []
        for b in blocks:  # a block is already a batch of BLOCK networks
            gen = block_generator(seed, b, device)
            h = _draw((BLOCK, inputs, input_dim), gen, dtype, device)
            rows = []
            for depth in range(1, depths[-1] + 1):
                h = layer(h if depth == 1 else activate(h, activation), gen)
                if depth in wanted:
                    rows.append(gram_entropy(h, centre=kernel == "centred").cpu())
            out.append(torch.stack(rows))
        return torch.cat(out, dim=1)

    rho = torch.cat(_map_chunks(run, chunks, workers, device), dim=1)[:, :samples]
    return rho.numpy()


# ----------------------------------------------------------------------------- summaries


def product_entropy_sweep(widths, depths, samples: int, **kwargs) -> np.ndarray:
    """rho samples for every (width, depth): array of shape ``(len(widths), len(depths), samples)``.

    Keyword arguments go to :func:`sample_product_entropy_depths`: at each width the depths are
    checkpoints along the same chains (one population of networks made deeper, not independent
    experiments per depth). Widths and depths must be integers (2.7 is refused, not truncated)."""
    widths = [check_int(n, "width") for n in np.atleast_1d(widths).tolist()]
    depths = check_increasing(depths)
    return np.stack(
        [sample_product_entropy_depths(n, depths, samples, **kwargs) for n in widths]
    )


def volume_fraction(rho, thresholds) -> np.ndarray:
    """Fraction of samples with ``rho < tau`` for each threshold: the "percent volume" of the paper's
    claim under the initialisation measure. ``rho`` has shape ``(..., samples)``; the result
    ``(..., len(thresholds))``. NaN samples or thresholds are refused (a NaN sample would count
    silently as "not below")."""
    rho = np.asarray(rho, dtype=np.float64)
    tau = np.asarray(thresholds, dtype=np.float64)
    if tau.ndim != 1 or tau.size == 0:
        raise ValueError("thresholds must be a non-empty 1-d sequence")
    if np.isnan(rho).any() or np.isnan(tau).any():
        raise ValueError(
            f"volume_fraction: {int(np.isnan(rho).sum())} NaN sample(s) and "
            f"{int(np.isnan(tau).sum())} NaN threshold(s); a fraction of them is undefined"
        )
    return (rho[..., :, None] < tau).mean(axis=-2)


def distribution_mode(samples) -> float:
    """Location of the peak of a Gaussian kernel density estimate (Scott's bandwidth) of ``samples``,
    the quantity read off the paper's density plots."""
    from scipy.stats import gaussian_kde

    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 1 or x.size < 2:
        raise ValueError("samples must be a 1-d array of at least 2 values")
    if np.ptp(x) == 0:
        return float(x[0])
    grid = np.linspace(x.min(), x.max(), 2001)
    return float(grid[np.argmax(gaussian_kde(x)(grid))])
