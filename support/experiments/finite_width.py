"""Recipes of the chapter *Finite-width simulations*: the width x depth sweep and the sampler's benchmark.

* :func:`observation1`: rho(K) of the book's construction of the paper's Observation 1 (the
  defaults of ``support.simulate.sample_gram_entropy_depths``) at the paper's depths, the numbers
  both this chapter and *Non-linear networks* show.
* ``SCALES`` and :func:`sweep`: rho of Gaussian products over widths 16 to 256 and depths up
  to 128, stored under ``SWEEP_RESULT`` at the "paper" scale.
* :func:`benchmark`: the product sampler timed against a plain per-sample numpy loop and against
  the machine's floor for the same work (:func:`floor_times`), with ``support.benchmarking``'s
  interleaved repetitions; stored under ``BENCHMARK_RESULT``.

Command line::

    python -m support.experiments.finite_width sweep --scale paper       # stores the sweep
    python -m support.experiments.finite_width bench --repeats 5 --save  # stores the benchmark
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from support import benchmarking
from support.experiments import command_line as cli
from support.hardware import resolve_device
from support.rank import entropy_of_spectrum
from support.simulate import (
    product_entropy_sweep,
    sample_gram_entropy_depths,
    sample_product_entropy,
)

SWEEP_RESULT = "finite_width_sweep"
BENCHMARK_RESULT = "finite_width_benchmark"

OBSERVATION1_DEPTHS = (1, 2, 4, 8, 16)
OBSERVATION1_SAMPLES = {"quick": 1024, "paper": 8192}
OBSERVATION1_VARIANTS = (("linear", "centred"), ("relu", "centred"), ("relu", "raw"))
"""Pairs of activation and kernel shown for Observation 1 (the construction, and the raw ReLU
kernel that shows why the construction is centred)."""


def observation1(scale: str = "quick", *, seed: int = 0, device=None) -> dict:
    """rho(K) samples of the Observation-1 construction at ``OBSERVATION1_DEPTHS``:
    ``{(activation, kernel, dist): array (len(depths), samples)}`` for every pair of
    ``OBSERVATION1_VARIANTS`` and Normal and Uniform weights, ``OBSERVATION1_SAMPLES[scale]``
    networks each. Everything else is the construction's defaults."""
    if scale not in OBSERVATION1_SAMPLES:
        raise ValueError(
            f"scale must be one of {tuple(OBSERVATION1_SAMPLES)}, got {scale!r}"
        )
    return {
        (act, kern, dist): sample_gram_entropy_depths(
            OBSERVATION1_DEPTHS,
            OBSERVATION1_SAMPLES[scale],
            activation=act,
            kernel=kern,
            dist=dist,
            seed=seed,
            device=device,
        )
        for act, kern in OBSERVATION1_VARIANTS
        for dist in ("normal", "uniform")
    }


SCALES = {
    "quick": {
        "widths": [16, 32, 64, 128],
        "depths": [1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64],
        "samples": [256, 128, 64, 32],
    },
    "paper": {
        "widths": [16, 32, 64, 128, 256],
        "depths": [1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64, 91, 128],
        "samples": [4096, 2048, 1024, 512, 256],
    },
}
"""Sizes of the width x depth sweep (samples per width)."""


def sweep(scale: str = "paper", *, seed: int = 0, device=None) -> dict:
    """rho of Gaussian products over the widths and depths of ``SCALES[scale]``, in float32 (the
    precision the benchmark validates against float64), as :func:`support.results.cached` stores
    it: ``config``, ``arrays`` (``rho_n<width>`` of shape ``(len(depths), samples)``, stored as
    float32, whose own accuracy is about 1e-7), ``scalars`` (``max_abs_f32_f64_deepest_widest``,
    a float32-vs-float64 check on 32 samples of the widest, deepest cell) and ``seeds``."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {tuple(SCALES)}, got {scale!r}")
    size = SCALES[scale]
    arrays = {
        f"rho_n{n}": product_entropy_sweep(
            [n], size["depths"], s, seed=seed, device=device, dtype=torch.float32
        )[0].astype(np.float32)
        for n, s in zip(size["widths"], size["samples"])
    }
    n, d = size["widths"][-1], size["depths"][-1]
    check = [
        sample_product_entropy(n, d, 32, seed=seed, device=device, dtype=dt)
        for dt in (torch.float32, torch.float64)
    ]
    return {
        "config": {
            "scale": scale,
            **size,
            "dist": "normal",
            "dtype": "float32",
            "seed": seed,
        },
        "arrays": arrays,
        "scalars": {
            "max_abs_f32_f64_deepest_widest": float(np.abs(check[0] - check[1]).max())
        },
        "seeds": [seed],
    }


# ----------------------------------------------------------------------------------- benchmark


def plain_loop(n: int, depth: int, samples: int, seed: int) -> np.ndarray:
    """The reference the sampler is timed against: numpy's default generator, one float32 product
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


def _two_threads(fn, total: int):
    """A callable running ``fn(count)`` on two Python threads with one torch thread each (half the
    work each)."""

    def both():
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(fn, [total // 2, total - total // 2]))
        finally:
            torch.set_num_threads(previous)

    return both


def _fastest(variants: dict, repeats: int) -> float:
    """Median seconds of the fastest of ``variants`` (interleaved repetitions)."""
    return min(
        benchmarking.medians(
            benchmarking.interleaved(variants, repeats, warmup=0)
        ).values()
    )


def floor_times(n: int, depth: int, samples: int, repeats: int = 1) -> dict:
    """Seconds the machine needs, at best, for the sampler's work (float32): drawing its random
    variates with the fastest generator found, the ``depth - 1`` dense products per sample at the
    measured batched matmul rate, and one batched SVD per sample. Each stage is timed in a few
    configurations (torch intra-op threads, two Python threads, numpy), interleaved ``repeats``
    times; the fastest configuration's median counts."""
    a = (n + 1) // 2
    # Bartlett: normals of the (a, n) block plus the chi diagonal
    variates = samples * depth * (a * n + n)
    rng_rate = _normal_rate(variates, repeats)
    mm_rate = _matmul_rate(n, samples, repeats)
    t = {
        "rng_s": variates / rng_rate,
        "products_s": 2.0 * n**3 * samples * (depth - 1) / mm_rate,
        "svd_s": _svd_seconds(n, samples, repeats),
    }
    t["floor_s"] = sum(t.values())
    t.update(variates=variates, rng_rate_per_s=rng_rate, matmul_gflops=mm_rate / 1e9)
    return t


def _normal_rate(variates: int, repeats: int) -> float:
    """Float32 standard normals per second of the fastest generator (a quarter of ``variates``
    timed, at least two pieces of 4M)."""
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
    rng_s = _fastest(
        {
            "torch": lambda: [buf.normal_(generator=gen) for _ in range(reps)],
            "torch, two threads": _two_threads(torch_normals, reps * piece),
            "numpy": lambda: [
                rng.standard_normal(out=nbuf, dtype=np.float32) for _ in range(reps)
            ],
        },
        repeats,
    )
    return reps * piece / rng_s


def _matmul_rate(n: int, samples: int, repeats: int) -> float:
    """Floating-point operations per second of batched ``n x n`` float32 products."""
    batch = min(samples, 1024)
    x, y = torch.randn(batch, n, n), torch.randn(batch, n, n)
    out = torch.empty(batch, n, n)

    def bmm_part(count):
        torch.bmm(x[:count], y[:count])

    seconds = _fastest(
        {
            "torch": lambda: torch.bmm(x, y, out=out),
            "torch, two threads": _two_threads(bmm_part, batch),
        },
        repeats,
    )
    return 2.0 * n**3 * batch / seconds


def _svd_seconds(n: int, samples: int, repeats: int) -> float:
    """Seconds of the fastest batched SVD of ``samples`` float32 ``n x n`` matrices."""
    mats = torch.randn(samples, n, n)

    def svd_part(count):
        torch.linalg.svdvals(mats[:count])

    return _fastest(
        {
            "torch": lambda: torch.linalg.svdvals(mats),
            "torch, two threads": _two_threads(svd_part, samples),
            "numpy": lambda: np.linalg.svd(mats.numpy(), compute_uv=False),
        },
        repeats,
    )


def benchmark(
    n: int = 64, depth: int = 16, samples: int = 4096, repeats: int = 3, seed: int = 0
) -> dict:
    """Time the sampler (float32) against the plain per-sample numpy loop (:func:`plain_loop`)
    and against the floor of :func:`floor_times`, in ``repeats`` interleaved repetitions (the
    machine may be shared: per-repetition ratios and their medians count), and measure the
    largest float32-vs-float64 difference of rho on the same samples. The sampler is timed with
    its default workers (one per core) and with one worker: the plain loop runs on one core, so
    the second ratio is the per-core speed-up, the first what the machine delivers now. The
    machine's load average before and after is stored with the timings."""
    load_before = benchmarking.load_average()
    variants = {
        "plain_loop": lambda: plain_loop(n, depth, samples, seed),
        "engine": lambda: sample_product_entropy(
            n, depth, samples, seed=seed, dtype=torch.float32
        ),
        "engine_1worker": lambda: sample_product_entropy(
            n, depth, samples, seed=seed, dtype=torch.float32, workers=1
        ),
    }
    times = benchmarking.interleaved(variants, repeats)
    med = {f"{name}_s": value for name, value in benchmarking.medians(times).items()}
    speed = benchmarking.median_ratios(times, "plain_loop")
    med.update(floor_times(n, depth, samples, repeats))
    r32 = sample_product_entropy(n, depth, samples, seed=seed, dtype=torch.float32)
    r64 = sample_product_entropy(n, depth, samples, seed=seed, dtype=torch.float64)
    ref = plain_loop(n, depth, min(samples, 1024), seed + 1)
    med.update(
        speedup_vs_loop=1.0 / speed["engine"],
        speedup_vs_loop_1worker=1.0 / speed["engine_1worker"],
        engine_over_floor=med["engine_s"] / med["floor_s"],
        max_abs_f32_f64=float(np.abs(r32 - r64).max()),
        engine_mean_rho=float(r64.mean()),
        loop_mean_rho=float(ref.mean()),
        repeats=repeats,
        n=n,
        depth=depth,
        samples=samples,
    )
    if torch.cuda.is_available():
        gpu = resolve_device("cuda")
        gpu_times = benchmarking.interleaved(
            {
                "gpu": lambda: sample_product_entropy(
                    n, depth, samples, device=gpu, dtype=torch.float32
                )
            },
            repeats,
            sync=torch.cuda.synchronize,
        )
        med.update(
            gpu_engine_s=benchmarking.medians(gpu_times)["gpu"],
            gpu_name=torch.cuda.get_device_name(gpu),
        )
    med.update(
        load_average_before=load_before,
        load_average_after=benchmarking.load_average(),
        cpu_count=os.cpu_count(),
    )
    return med


def benchmark_record(
    n: int = 64, depth: int = 16, samples: int = 4096, repeats: int = 3
) -> dict:
    """:func:`benchmark` in the form :func:`support.results.cached` stores."""
    config = {
        "n": n,
        "depth": depth,
        "samples": samples,
        "repeats": repeats,
        "dtype": "float32",
        "torch_threads": torch.get_num_threads(),
    }
    return {
        "config": config,
        "scalars": benchmark(n, depth, samples, repeats),
        "seeds": [0],
    }


# ----------------------------------------------------------------------------------- command line


def _sweep_command(args) -> int:
    if args.scale == "paper":
        compute = lambda: sweep("paper", seed=args.seed, device=args.device)
        cli.store(SWEEP_RESULT, compute, args, device=args.device)
        return 0
    run = sweep(args.scale, seed=args.seed, device=args.device)
    for name, rho in run["arrays"].items():
        cli.say(
            f"{name}: mean rho by depth {run['config']['depths']}: "
            + " ".join(f"{v:.3f}" for v in rho.mean(1))
        )
    return 0


def _bench_command(args) -> int:
    compute = lambda: benchmark_record(args.n, args.depth, args.samples, args.repeats)
    scalars = (
        cli.store(BENCHMARK_RESULT, compute, args).scalars
        if args.save
        else compute()["scalars"]
    )
    cli.say(
        f"n={args.n} depth={args.depth} samples={args.samples} float32, medians of "
        f"{args.repeats} interleaved repeats, {torch.get_num_threads()} torch threads"
    )
    for key, value in scalars.items():
        shown = f"{value:.6g}" if isinstance(value, float) else f"{value}"
        cli.say(f"  {key:24s} {shown}")
    return 0


def main(argv=None) -> int:
    """Recipes of the chapter 'Finite-width simulations'."""
    top, sub = cli.parser("finite_width", main.__doc__)
    p_sweep = cli.command(
        sub,
        "sweep",
        _sweep_command,
        f"width x depth sweep; the paper scale is stored as {SWEEP_RESULT}",
    )
    p_sweep.add_argument("--scale", choices=tuple(SCALES), default="paper")
    p_sweep.add_argument("--seed", type=cli.non_negative_int, default=0)
    p_sweep.add_argument("--device", type=cli.device, default="cpu")
    p_bench = cli.command(
        sub,
        "bench",
        _bench_command,
        "time the product sampler against a plain loop and the floor",
    )
    for name, default in (
        ("--n", 64),
        ("--depth", 16),
        ("--samples", 4096),
        ("--repeats", 3),
    ):
        p_bench.add_argument(name, type=cli.positive_int, default=default)
    p_bench.add_argument(
        "--save", action="store_true", help=f"store the result as {BENCHMARK_RESULT}"
    )
    return cli.run(top, argv)


if __name__ == "__main__":
    sys.exit(main())
