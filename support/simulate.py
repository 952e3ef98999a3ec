"""Batched Monte Carlo of the spectral entropy rho at random initialisation.

The chapter *Finite-width simulations* (``book/finite_width.ipynb``) explains and uses this
module. Two samplers:

* :func:`sample_product_entropy` -- rho of end-to-end matrices ``W_depth ... W_1`` of random
  ``n x n`` factors (linear networks; Normal, Uniform, orthogonal, low-rank and residual
  factors), the paper's ``rho(W_e)``.
* :func:`sample_gram_entropy` -- rho of the Gram matrix ``K = H H^T`` of the last-layer
  embeddings ``H`` of a random fully connected network (linear, ReLU, tanh, ...) applied to
  random inputs, the paper's ``rho(K)``.

Both are batched over samples (``torch.bmm``), stream in chunks so peak memory stays bounded
whatever ``samples`` is, and run on a GPU when one is given.

Reproducibility. Samples are grouped in fixed blocks of :data:`BLOCK` samples; block ``b``
draws from its own generator seeded from ``numpy.random.SeedSequence([seed, b])``. A chunk is
a run of whole blocks, so the same seed gives the same numbers whatever the chunk size or the
number of worker threads (on a given device: CPU and CUDA generators differ).

Speed. On a CPU the cost of a Gaussian product is dominated by drawing the random variates.
For Gaussian factors the sampler draws *Bartlett factors* instead (upper triangular,
chi-distributed diagonal, standard normal above it): by rotation invariance the product of
independent Bartlett factors has the same singular-value law as the product of full Gaussian
matrices (proved in the chapter) and needs about half the variates. ``python -m
support.simulate --bench`` times the sampler against a plain per-sample numpy loop and against
the machine's floor for the same work.
"""
from __future__ import annotations

import argparse
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from support.checks import check_int
from support.rank import entropy_of_spectrum

BLOCK = 64
"""Samples per random stream, the unit of reproducibility (chunks are whole blocks)."""

PRODUCT_DISTS = ("normal", "uniform", "orthogonal", "lowrank", "residual")
ACTIVATIONS = {
    "linear": lambda x: x,
    "relu": torch.relu,
    "leaky_relu": lambda x: torch.nn.functional.leaky_relu(x, 0.01),
    "tanh": torch.tanh,
    "gelu": torch.nn.functional.gelu,
}
_CHUNK_BYTES = 8 * 2**20  # per worker on CPU (cache-sized chunks measured fastest); 128x on GPU


# ----------------------------------------------------------------------------- validation


def _check_dtype(dtype) -> torch.dtype:
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    return dtype


def _resolve(device) -> torch.device:
    if device is None:
        return torch.device("cpu")
    if isinstance(device, str) and device == "auto":
        from support.hardware import resolve_device
        return resolve_device("auto")
    return torch.device(device)


# ----------------------------------------------------------------------------- streams

def block_generator(seed: int, block: int, device=None) -> torch.Generator:
    """The torch generator of block ``block`` for ``seed`` (independent streams via SeedSequence)."""
    state = np.random.SeedSequence([int(seed), int(block)]).generate_state(1, np.uint64)[0]
    gen = torch.Generator(device=_resolve(device))
    gen.manual_seed(int(state))
    return gen


def _plan(samples: int, chunk_size: int | None, bytes_per_sample: int, workers: int,
          device: torch.device) -> list[range]:
    """Split ``samples`` into chunks of whole blocks; returns one range of block indices per chunk."""
    blocks = math.ceil(samples / BLOCK)
    if chunk_size is None:
        budget = _CHUNK_BYTES if device.type == "cpu" else 128 * _CHUNK_BYTES
        per_chunk = max(1, budget // (bytes_per_sample * BLOCK))
        per_chunk = min(per_chunk, math.ceil(blocks / workers))  # keep every worker busy
    else:
        chunk_size = check_int(chunk_size, "chunk_size")
        if chunk_size % BLOCK:
            raise ValueError(f"chunk_size must be a multiple of BLOCK={BLOCK}, got {chunk_size}")
        per_chunk = chunk_size // BLOCK
    return [range(b, min(b + per_chunk, blocks)) for b in range(0, blocks, per_chunk)]


def _map_chunks(fn, chunks, workers: int, device: torch.device) -> list:
    """Run ``fn`` over chunks; on CPU each chunk runs with one intra-op thread, ``workers`` chunks at
    a time in Python threads (small LAPACK calls do not use several cores, whole chunks do)."""
    if device.type != "cpu":
        return [fn(c) for c in chunks]
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # intra-op threads on tiny LAPACK calls only spin, worst on a busy machine
    try:
        if workers == 1 or len(chunks) == 1:
            return [fn(c) for c in chunks]
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(fn, chunks))
    finally:
        torch.set_num_threads(previous)


def _default_workers(device: torch.device) -> int:
    return max(1, min(torch.get_num_threads(), os.cpu_count() or 1)) if device.type == "cpu" else 1


# ----------------------------------------------------------------------------- factors

def _draw(shape, gen: torch.Generator, dtype: torch.dtype, device, kind: str = "normal") -> torch.Tensor:
    """Standard normal (or U(-1, 1)) variates, always drawn in float32 and then converted, so that
    float32 and float64 runs with the same seed see the same matrices."""
    x = torch.empty(shape, dtype=torch.float32, device=device)
    x = x.normal_(generator=gen) if kind == "normal" else x.uniform_(-1.0, 1.0, generator=gen)
    return x if dtype == torch.float32 else x.to(dtype)


def _bartlett_blocks_(top: torch.Tensor, r22: torch.Tensor, gen: torch.Generator) -> None:
    """Draw ``B`` Bartlett factors in block form, in place: ``top`` (``(B, a, n)``) gets the top
    ``a = ceil(n/2)`` rows, ``r22`` (``(B, b, b)``, ``b = n - a``) the bottom-right block; the
    bottom-left block is zero. Streams: ``B * a * n`` float32 normals, then the ``B * n`` chi
    variates (as square roots of twice Gamma(df/2) variates)."""
    batch, a, n = top.shape
    b = n - a
    x = top if top.dtype == torch.float32 else torch.empty(top.shape, dtype=torch.float32, device=top.device)
    x.normal_(generator=gen)
    half_df = torch.arange(n, 0, -1, dtype=torch.float32, device=top.device).div_(2).expand(batch, n)
    chi = torch._standard_gamma(half_df, generator=gen).mul_(2.0).sqrt_()
    if b:  # strict lower triangle of the last b rows of x, transposed (disjoint from x's strict upper part)
        r22.copy_(x[:, a - b:, :b].mT)
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


def _bartlett_products(gens, n: int, depths, dtype: torch.dtype, device):
    """Yield the products ``R_d ... R_1`` of Bartlett factors at each depth ``d`` in ``depths``
    (increasing), one per sample (``BLOCK`` samples per generator), all along one chain. The product
    is kept in block form: an upper-triangular ``[[T, X], [0, Z]]`` is stored as its top rows
    ``[T, X]`` and ``Z``, and ``R P`` costs three half-size products (half the FLOPs of a dense
    product): ``[T', X'] = R11 [T, X] + [0, R12 Z]``, ``Z' = R22 Z``."""
    a = (n + 1) // 2
    b = n - a
    size = len(gens) * BLOCK

    def parts():
        return (torch.empty(size, a, n, dtype=dtype, device=device),
                torch.empty(size, b, b, dtype=dtype, device=device))

    def draw(top, r22):
        for i, gen in enumerate(gens):
            _bartlett_blocks_(top[i * BLOCK:(i + 1) * BLOCK], r22[i * BLOCK:(i + 1) * BLOCK], gen)

    (ptop, p22), (ftop, f22), (ntop, n22) = parts(), parts(), parts()
    cross = torch.empty(size, a, b, dtype=dtype, device=device)
    draw(ptop, p22)
    tiny = torch.finfo(dtype).tiny
    for depth in range(1, depths[-1] + 1):
        if depth > 1:
            norm = torch.linalg.vector_norm(ptop, dim=(1, 2)).hypot_(torch.linalg.vector_norm(p22, dim=(1, 2)))
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


def _fill_factor(out: torch.Tensor, gen: torch.Generator, dist: str, rank: int | None,
                 residual_scale: float) -> None:
    """Fill ``out`` (shape ``(B, n, n)``) with one random factor per sample."""
    n, batch, dtype, device = out.shape[-1], out.shape[0], out.dtype, out.device
    if dist in ("normal", "uniform"):
        out.copy_(_draw(out.shape, gen, dtype, device, dist))
    elif dist == "orthogonal":
        q, r = torch.linalg.qr(_draw(out.shape, gen, dtype, device))
        out.copy_(q * torch.sgn(r.diagonal(dim1=-2, dim2=-1)).unsqueeze(-2))  # Haar measure
    elif dist == "lowrank":
        f = _draw((2, batch, n, rank), gen, dtype, device)
        torch.bmm(f[0], f[1].mT, out=out)
    elif dist == "residual":
        out.copy_(_draw(out.shape, gen, dtype, device)).mul_(residual_scale / math.sqrt(n))
        out.diagonal(dim1=-2, dim2=-1).add_(1.0)
    else:  # pragma: no cover - validated by the caller
        raise ValueError(f"unknown dist {dist!r}")


def _dense_products(gens, n: int, depths, dtype: torch.dtype, device, dist: str, rank,
                    residual_scale: float):
    """Yield the products ``W_d ... W_1`` of dense random factors at each depth ``d`` in ``depths``
    (increasing), ``BLOCK`` samples per generator, renormalised to unit Frobenius norm before each
    multiplication."""
    size = len(gens) * BLOCK
    factor, prod, spare = (torch.empty(size, n, n, dtype=dtype, device=device) for _ in range(3))

    def draw(buffer):
        for i, gen in enumerate(gens):
            _fill_factor(buffer[i * BLOCK:(i + 1) * BLOCK], gen, dist, rank, residual_scale)

    draw(prod)
    tiny = torch.finfo(dtype).tiny
    for depth in range(1, depths[-1] + 1):
        if depth > 1:
            prod.div_(torch.linalg.matrix_norm(prod).clamp_min_(tiny)[:, None, None])
            draw(factor)
            torch.bmm(factor, prod, out=spare)
            prod, spare = spare, prod
        if depth in depths:
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

def sample_product_entropy(n: int, depth: int, samples: int, *, dist: str = "normal", seed: int = 0,
                           device=None, dtype: torch.dtype = torch.float64, rank: int | None = None,
                           residual_scale: float = 1.0, bartlett: bool = True,
                           spectrum: str = "gram", chunk_size: int | None = None,
                           workers: int | None = None) -> np.ndarray:
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
        n, [depth], samples, dist=dist, seed=seed, device=device, dtype=dtype, rank=rank,
        residual_scale=residual_scale, bartlett=bartlett, spectrum=spectrum, chunk_size=chunk_size,
        workers=workers)[0]


def sample_product_entropy_depths(n: int, depths, samples: int, *, dist: str = "normal", seed: int = 0,
                                  device=None, dtype: torch.dtype = torch.float64, rank: int | None = None,
                                  residual_scale: float = 1.0, bartlett: bool = True,
                                  spectrum: str = "gram", chunk_size: int | None = None,
                                  workers: int | None = None) -> np.ndarray:
    """rho at several depths along the same chains: row ``k`` of the result (shape
    ``(len(depths), samples)``) equals ``sample_product_entropy(n, depths[k], samples, ...)`` with the
    same arguments, but all depths cost one chain of ``max(depths)`` factors (the depth-``d`` product
    is the first ``d`` factors of the deepest one). ``depths`` must be strictly increasing."""
    n = check_int(n, "n")
    depths = [check_int(d, "depth") for d in depths]
    if not depths or any(b <= a for a, b in zip(depths, depths[1:])):
        raise ValueError(f"depths must be a non-empty strictly increasing sequence, got {depths}")
    samples = check_int(samples, "samples")
    if dist not in PRODUCT_DISTS:
        raise ValueError(f"dist must be one of {PRODUCT_DISTS}, got {dist!r}")
    if dist == "lowrank":
        if rank is None:
            raise ValueError("dist='lowrank' needs rank")
        rank = check_int(rank, "rank")
        if rank > n:
            raise ValueError(f"rank must be <= n={n}, got {rank}")
    if not math.isfinite(residual_scale):
        raise ValueError(f"residual_scale must be finite, got {residual_scale}")
    if spectrum not in ("gram", "svd"):
        raise ValueError(f"spectrum must be 'gram' or 'svd', got {spectrum!r}")
    dtype = _check_dtype(dtype)
    device = _resolve(device)
    workers = _default_workers(device) if workers is None else check_int(workers, "workers")
    itemsize = torch.finfo(dtype).bits // 8
    chunks = _plan(samples, chunk_size, 3 * n * n * itemsize, workers, device)

    def run(blocks: range) -> torch.Tensor:
        gens = [block_generator(seed, b, device) for b in blocks]
        if dist == "normal" and bartlett:
            products = _bartlett_products(gens, n, depths, dtype, device)
        else:
            products = _dense_products(gens, n, depths, dtype, device, dist, rank, residual_scale)
        return torch.stack([entropy_of_spectrum(_spectrum(p, spectrum)).cpu() for p in products])

    rho = torch.cat(_map_chunks(run, chunks, workers, device), dim=1)[:, :samples]
    return rho.numpy()


def sample_gram_entropy(depth: int, samples: int, *, activation: str = "relu", inputs: int = 64,
                        input_dim: int = 16, width: int = 64, dist: str = "normal", bias: bool = False,
                        centre: bool = False, activate_last: bool = True, seed: int = 0, device=None,
                        dtype: torch.dtype = torch.float64, chunk_size: int | None = None,
                        workers: int | None = None) -> np.ndarray:
    """rho (nats) of Gram matrices ``K = H H^T`` of random networks' embeddings at initialisation.

    Per sample: ``inputs`` random inputs ``X`` (``inputs x input_dim``, i.i.d. N(0, 1)) go through
    a fresh random fully connected network of ``depth`` layers ``h <- act(h W^T + b)`` (the first
    ``input_dim -> width``, the rest ``width -> width``); ``H`` is the last layer's output
    (``inputs x width``; with ``activate_last=False`` the last layer's pre-activation, so that a
    depth-1 network is linear whatever the activation), ``K = H H^T`` (``inputs x inputs``),
    optionally after centring ``H`` over the inputs (``centre=True``). Weights and biases
    (``bias=True``) have variance ``1/fan_in``: N(0, 1/fan_in) for ``dist="normal"``,
    U(-1, 1) * sqrt(3/fan_in) for ``"uniform"``. rho(K) is the entropy of K's eigenvalues,
    computed as squared singular values of ``H`` (float64 entropy).
    Returns a float64 numpy array of length ``samples``. See book/finite_width.ipynb.
    """
    depth = check_int(depth, "depth")
    samples = check_int(samples, "samples")
    inputs = check_int(inputs, "inputs")
    input_dim = check_int(input_dim, "input_dim")
    width = check_int(width, "width")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, got {activation!r}")
    if dist not in ("normal", "uniform"):
        raise ValueError(f"dist must be 'normal' or 'uniform', got {dist!r}")
    dtype = _check_dtype(dtype)
    device = _resolve(device)
    act = ACTIVATIONS[activation]
    workers = _default_workers(device) if workers is None else check_int(workers, "workers")
    itemsize = torch.finfo(dtype).bits // 8
    per_sample = (width * max(width, input_dim) + 2 * inputs * max(width, input_dim)) * itemsize
    chunks = _plan(samples, chunk_size, per_sample, workers, device)

    def draw(gen, shape, fan_in):
        if dist == "normal":
            return _draw(shape, gen, dtype, device).mul_(1.0 / math.sqrt(fan_in))
        return _draw(shape, gen, dtype, device, "uniform").mul_(math.sqrt(3.0 / fan_in))

    def run(blocks: range) -> torch.Tensor:
        out = []
        for b in blocks:  # a block is already a batch of BLOCK networks
            gen = block_generator(seed, b, device)
            h = _draw((BLOCK, inputs, input_dim), gen, dtype, device)
            fan_in = input_dim
            for layer in range(depth):
                w = draw(gen, (BLOCK, width, fan_in), fan_in)
                h = torch.bmm(h, w.mT)
                if bias:
                    h = h + draw(gen, (BLOCK, 1, width), fan_in)
                if activate_last or layer < depth - 1:
                    h = act(h)
                fan_in = width
            if centre:
                h = h - h.mean(dim=1, keepdim=True)
            out.append(entropy_of_spectrum(torch.linalg.svdvals(h) ** 2).cpu())
        return torch.cat(out)

    rho = torch.cat(_map_chunks(run, chunks, workers, device))[:samples]
    return rho.numpy()


# ----------------------------------------------------------------------------- summaries

def product_entropy_sweep(widths, depths, samples: int, **kwargs) -> np.ndarray:
    """rho samples for every (width, depth): array of shape ``(len(widths), len(depths), samples)``.

    Keyword arguments go to :func:`sample_product_entropy_depths`: at each width the depths are
    checkpoints along the same chains (one population of networks made deeper, not independent
    experiments per depth)."""
    return np.stack([sample_product_entropy_depths(int(n), [int(d) for d in depths], samples, **kwargs)
                     for n in widths])


def volume_fraction(rho, thresholds) -> np.ndarray:
    """Fraction of samples with ``rho < tau`` for each threshold: the "percent volume" of the paper's
    claim under the initialisation measure. ``rho`` has shape ``(..., samples)``; the result
    ``(..., len(thresholds))``."""
    rho = np.asarray(rho, dtype=np.float64)
    tau = np.asarray(thresholds, dtype=np.float64)
    if tau.ndim != 1 or tau.size == 0:
        raise ValueError("thresholds must be a non-empty 1-d sequence")
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


SWEEP_SIZES = {
    "quick": {"widths": [16, 32, 64, 128], "depths": [1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64],
              "samples": [256, 128, 64, 32]},
    "paper": {"widths": [16, 32, 64, 128, 256], "depths": [1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64, 91, 128],
              "samples": [4096, 2048, 1024, 512, 256]},
}
"""Sizes of the width x depth sweep of the chapter (samples per width)."""


def width_depth_sweep(scale: str = "quick", *, seed: int = 0, device=None) -> dict:
    """rho of Gaussian products over the widths and depths of ``SWEEP_SIZES[scale]`` (float32, the
    precision the benchmark validates against float64). Returns ``{"config": ..., "arrays": {"rho_n16":
    (len(depths), samples), ...}, "scalars": {"max_abs_f32_f64_deepest_widest": ...}}``; the last is
    a float32-vs-float64 check on 32 samples of the widest, deepest cell. The rho arrays are stored
    as float32 (their own accuracy is about 1e-7)."""
    if scale not in SWEEP_SIZES:
        raise ValueError(f"scale must be one of {tuple(SWEEP_SIZES)}, got {scale!r}")
    size = SWEEP_SIZES[scale]
    arrays = {f"rho_n{n}": product_entropy_sweep([n], size["depths"], s, seed=seed, device=device,
                                                 dtype=torch.float32)[0].astype(np.float32)  # half the storage
              for n, s in zip(size["widths"], size["samples"])}
    n, d = size["widths"][-1], size["depths"][-1]
    check = {dt: sample_product_entropy(n, d, 32, seed=seed, device=device, dtype=dt)
             for dt in (torch.float32, torch.float64)}
    diff = float(np.abs(check[torch.float32] - check[torch.float64]).max())
    return {"config": {"scale": scale, **size, "dist": "normal", "dtype": "float32", "seed": seed},
            "arrays": arrays, "scalars": {"max_abs_f32_f64_deepest_widest": diff}}


def stored_width_depth_sweep(scale: str = "quick", *, recompute: bool = False, seed: int = 0, device=None):
    """The chapter's sweep: the stored ``book/results/finite_width_sweep`` when present (and not
    ``recompute``), else computed now; a paper-scale computation is stored with provenance.
    Returns ``(config, scalars, arrays, note)`` where ``note`` says where the numbers come from."""
    import time
    from support import results
    stored = None if recompute else results.load("finite_width_sweep")
    if stored is not None:
        return stored.config, stored.scalars, stored.arrays, results.describe(stored)
    start = time.perf_counter()
    run = width_depth_sweep(scale, seed=seed, device=device)
    if scale == "paper":
        results.save("finite_width_sweep", config=run["config"], scalars=run["scalars"], arrays=run["arrays"],
                      provenance_record=results.provenance(device=_resolve(device), seeds=[seed],
                                                           wall_time_s=time.perf_counter() - start))
        stored = results.load("finite_width_sweep")
        return stored.config, stored.scalars, stored.arrays, results.describe(stored)
    return run["config"], run["scalars"], run["arrays"], f"no stored result: computed now at scale {scale!r}"


# ----------------------------------------------------------------------------- benchmark

def _plain_loop(n: int, depth: int, samples: int, seed: int) -> np.ndarray:
    """The reference the engine is timed against: numpy's default generator, one float32 product
    and one SVD per sample (entropies computed once at the end)."""
    rng = np.random.default_rng(seed)
    spectra = np.empty((samples, n))
    for i in range(samples):
        w = rng.standard_normal((depth, n, n), dtype=np.float32)
        prod = w[0]
        for k in range(1, depth):
            prod = w[k] @ prod
        spectra[i] = np.linalg.svd(prod, compute_uv=False)
    return entropy_of_spectrum(spectra)


def _timed(fn) -> float:
    import time
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _split2(fn, total: int):
    """Run ``fn(count)`` on two Python threads with one torch thread each (half the work each)."""
    def both():
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(fn, [total // 2, total - total // 2]))
        finally:
            torch.set_num_threads(previous)
    return both


def floor_times(n: int, depth: int, samples: int) -> dict:
    """Seconds the machine needs, at best, for the engine's work (float32): drawing its random
    variates with the fastest generator found, the ``depth - 1`` dense products per sample at the
    measured batched matmul rate, and one batched SVD per sample. Each stage is timed in the best of
    a few configurations (torch intra-op threads, two Python threads, numpy)."""
    a = (n + 1) // 2
    variates = samples * depth * (a * n + n)  # Bartlett: normals of the (a, n) block plus the chi diagonal
    piece = 1 << 22
    buf = torch.empty(piece)
    gen = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    nbuf = np.empty(piece, dtype=np.float32)

    def torch_normals(count):
        local = torch.empty(piece)
        g = torch.Generator().manual_seed(count)
        for _ in range(max(1, count // piece)):
            local.normal_(generator=g)
    reps = max(2, variates // piece // 4)  # time a quarter of the work, extrapolate
    rng_rate = max(
        reps * piece / _timed(lambda: [buf.normal_(generator=gen) for _ in range(reps)]),
        reps * piece / _timed(_split2(torch_normals, reps * piece)),
        reps * piece / _timed(lambda: [rng.standard_normal(out=nbuf, dtype=np.float32) for _ in range(reps)]),
    )
    batch = min(samples, 1024)
    x, y = torch.randn(batch, n, n), torch.randn(batch, n, n)
    out = torch.empty(batch, n, n)

    def bmm_half(count):
        torch.bmm(x[:count], y[:count])
    flops = 2.0 * n ** 3 * batch
    mm_rate = max(flops / _timed(lambda: torch.bmm(x, y, out=out)),
                  flops / _timed(_split2(bmm_half, batch)))
    mats = torch.randn(samples, n, n)

    def svd_half(count):
        torch.linalg.svdvals(mats[:count])
    svd_s = min(_timed(lambda: torch.linalg.svdvals(mats)), _timed(_split2(svd_half, samples)),
                _timed(lambda: np.linalg.svd(mats.numpy(), compute_uv=False)))
    t = {"rng_s": variates / rng_rate, "products_s": 2.0 * n ** 3 * samples * (depth - 1) / mm_rate,
         "svd_s": svd_s}
    t["floor_s"] = sum(t.values())
    t.update(variates=variates, rng_rate_per_s=rng_rate, matmul_gflops=mm_rate / 1e9)
    return t


def benchmark(n: int = 64, depth: int = 16, samples: int = 4096, repeats: int = 3, seed: int = 0) -> dict:
    """Time the engine (float32) against the plain per-sample numpy loop and against the floor of
    :func:`floor_times`, interleaved ``repeats`` times (the machine may be shared: medians count),
    and measure the largest float32-vs-float64 difference of rho on the same samples. The engine is
    timed with its default workers (one per core) and with one worker: the plain loop runs on one
    core, so the second ratio is the per-core speed-up, the first what the machine delivers now."""
    rows = []
    for _ in range(repeats):
        row = {"plain_loop_s": _timed(lambda: _plain_loop(n, depth, samples, seed)),
               "engine_s": _timed(lambda: sample_product_entropy(n, depth, samples, seed=seed,
                                                                  dtype=torch.float32)),
               "engine_1worker_s": _timed(lambda: sample_product_entropy(n, depth, samples, seed=seed,
                                                                         dtype=torch.float32, workers=1))}
        row.update({k: v for k, v in floor_times(n, depth, samples).items()})
        rows.append(row)
    med = {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
    r32 = sample_product_entropy(n, depth, samples, seed=seed, dtype=torch.float32)
    r64 = sample_product_entropy(n, depth, samples, seed=seed, dtype=torch.float64)
    ref = _plain_loop(n, depth, min(samples, 1024), seed + 1)
    med.update(speedup_vs_loop=med["plain_loop_s"] / med["engine_s"],
               speedup_vs_loop_1worker=med["plain_loop_s"] / med["engine_1worker_s"],
               engine_over_floor=med["engine_s"] / med["floor_s"],
               max_abs_f32_f64=float(np.abs(r32 - r64).max()), engine_mean_rho=float(r64.mean()),
               loop_mean_rho=float(ref.mean()), repeats=repeats, n=n, depth=depth, samples=samples)
    if torch.cuda.is_available():
        dev = torch.device("cuda")
        sample_product_entropy(n, depth, samples, device=dev, dtype=torch.float32)  # warm-up
        def gpu():
            sample_product_entropy(n, depth, samples, device=dev, dtype=torch.float32)
            torch.cuda.synchronize()
        med.update(gpu_engine_s=float(np.median([_timed(gpu) for _ in range(repeats)])),
                   gpu_name=torch.cuda.get_device_name(dev))
    return med


def main(argv=None) -> None:
    """``python -m support.simulate --bench [--n 64 --depth 16 --samples 4096 --repeats 3 --save]``; the
    machine's load average is printed and stored with the result (the machine may be shared)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", action="store_true", help="run the benchmark")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--depth", type=int, default=16)
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--save", action="store_true",
                        help="store the result as book/results/finite_width_benchmark.json")
    args = parser.parse_args(argv)
    if not args.bench:
        parser.error("nothing to do: pass --bench")
    import time
    from support import results
    start = time.perf_counter()
    load_before = os.getloadavg()[0]
    res = benchmark(args.n, args.depth, args.samples, args.repeats)
    wall = time.perf_counter() - start
    res.update(load_average_before=load_before, load_average_after=os.getloadavg()[0], cpu_count=os.cpu_count())
    print(f"n={args.n} depth={args.depth} samples={args.samples} float32, "
          f"medians of {args.repeats} interleaved repeats, {torch.get_num_threads()} torch threads")
    for key, value in res.items():
        print(f"  {key:22s} {value:.6g}" if isinstance(value, float) else f"  {key:22s} {value}")
    if args.save:
        path = results.save("finite_width_benchmark", config=vars(args), scalars=res,
                            provenance_record=results.provenance(device="cpu", seeds=[0], wall_time_s=wall))
        print(f"saved {path}")


if __name__ == "__main__":
    main()
