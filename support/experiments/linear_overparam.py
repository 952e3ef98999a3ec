"""Recipes of the chapter *Linear over-parameterization*: the training-step benchmark.

:func:`step_benchmark` times one training step of the fast CIFAR CNN (``support.models.FastCNN``)
plain, expanded and trained through the effective weight (``support.expand``), and expanded but
run sub-layer by sub-layer as the official code does (``support.expand.as_sequential``), and the
three options of ``expand`` (linear residual blocks, ExpandNets' expansion rate, batch-norm between
the factors), interleaved on one machine (``support.benchmarking``), plus the time to collapse the
whole network. Stored as ``expand_benchmark``.

Command line::

    python -m support.experiments.linear_overparam bench                 # print
    python -m support.experiments.linear_overparam bench --save          # store for the chapter
"""

from __future__ import annotations

import argparse
import copy
import sys

import pandas as pd
import torch
from torch import nn

from support import benchmarking, models, results, seeding
from support.expand import as_sequential, collapse, expand
from support.hardware import resolve_device

RESULT_NAME = "expand_benchmark"


def _sync_for(device):
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None


def step_benchmark(
    *,
    depths=(2, 4),
    batch: int = 64,
    widths=(64, 256, 256),
    repeats: int = 9,
    threads: int = 1,
    device="auto",
    seed: int = 0,
    options: bool = True,
) -> dict:
    """Training-step times of FastCNN: plain vs expanded (effective weight) vs expanded and run
    sequentially, at each depth in ``depths``; and whole-network collapse times.

    One step = zero_grad, forward, cross-entropy, backward, SGD (momentum) update on a fixed random
    batch of 32 x 32 images (:func:`support.benchmarking.training_steps`). Variants are measured
    interleaved ``repeats`` times and reported as median step time and median ratio to the plain
    step of the same repetition.

    ``threads`` defaults to one intra-op thread: on a shared, oversubscribed CPU two threads wait
    on each other at every operation, which measures the scheduler rather than the work. Use
    ``threads=2`` on an idle machine.

    With ``options`` (at depth ``max(depths)`` = d): ``residual d=d (every 2)`` (residual blocks of
    two factors on the layers that map as many channels out as in, plain expansion elsewhere),
    ``rate 2 (1-3-1)`` (ExpandNets: ``in -> 2 in -> 2 out -> out`` with 1x1, 3x3, 1x1 kernels),
    each trained through the effective weight and sequentially, and ``batch-norm d=2`` (trained
    sequentially: batch statistics need the intermediate activations).
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(
            f"step_benchmark: batch must be an integer >= 1, got {batch!r}"
        )
    dev = resolve_device(device)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = seeding.torch_generator(seed, "benchmark-batch")
        x = torch.randn(batch, 3, 32, 32, generator=gen).to(dev)
        y = torch.randint(0, 10, (batch,), generator=gen).to(dev)
        which = lambda n, m: (
            isinstance(m, (nn.Conv2d, nn.Linear)) and n not in models.WHITENING_LAYERS
        )  # noqa: E731

        def make(depth):
            torch.manual_seed(seeding.torch_seed(seed, "benchmark-model"))
            return expand(
                models.FastCNN(widths=tuple(widths)), depth=depth, layers=which
            ).to(dev)

        nets = {"plain": make(1)}
        for d in depths:
            nets[f"effective d={d}"] = make(d)
            nets[f"sequential d={d}"] = as_sequential(nets[f"effective d={d}"])
        if options:
            nets.update(_option_nets(widths, max(depths), seed, dev, which))
        sync = _sync_for(dev)
        times = benchmarking.interleaved(
            benchmarking.training_steps(nets, x, y), repeats, sync=sync
        )
        ratios, medians = (
            benchmarking.median_ratios(times, "plain"),
            benchmarking.medians(times),
        )
        rows = [
            {"variant": k, "median_ms": 1e3 * medians[k], "ratio": ratios[k]}
            for k in nets
        ]
        collapse_ms = {}
        for d in depths:
            model = nets[f"effective d={d}"]
            copies = [copy.deepcopy(model) for _ in range(5)]
            timed = benchmarking.interleaved(
                {
                    "copy": lambda model=model: collapse(model),
                    "inplace": lambda copies=copies: collapse(
                        copies.pop(), inplace=True
                    ),
                },
                repeats=5,
                warmup=0,
                sync=sync,
            )
            collapse_ms[f"d={d}"] = {
                k: 1e3 * v for k, v in benchmarking.medians(timed).items()
            }
    finally:
        torch.set_num_threads(previous)
    return {
        "config": {
            "depths": list(depths),
            "batch": batch,
            "widths": list(widths),
            "repeats": repeats,
            "threads": threads,
            "seed": seed,
            "model": "support.models.FastCNN",
        },
        "device": dev,
        "rows": rows,
        "collapse_ms": collapse_ms,
    }


def _option_nets(widths, depth, seed, dev, which) -> dict:
    """The benchmark's networks for the three options of ``expand`` (see :func:`step_benchmark`)."""

    def square(name, module):
        return (
            which(name, module)
            and isinstance(module, nn.Conv2d)
            and module.in_channels == module.out_channels
            and module.stride == (1, 1)
        )

    def fresh():
        torch.manual_seed(seeding.torch_seed(seed, "benchmark-model"))
        return models.FastCNN(widths=tuple(widths))

    residual = expand(fresh(), depth=depth, residual=2, layers=square)
    residual = expand(
        residual, depth=depth, layers=lambda n, m: which(n, m) and not square(n, m)
    ).to(dev)
    rate = expand(
        fresh(), depth=3, expansion_rate=2, kernel_sizes=[1, 3, 1], layers=which
    ).to(dev)
    norms = expand(fresh(), depth=2, batch_norm=True, layers=which).to(dev)
    return {
        f"residual d={depth} (every 2)": residual,
        f"residual d={depth} (every 2), sequential": as_sequential(residual),
        "rate 2 (1-3-1)": rate,
        "rate 2 (1-3-1), sequential": as_sequential(rate),
        "batch-norm d=2 (sequential)": norms,
    }


def benchmark_tables(scalars: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The stored benchmark as two tables: step times with ratios, and collapse times."""
    steps = pd.DataFrame(scalars["rows"]).set_index("variant")
    steps.columns = ["median step (ms)", "ratio to plain"]
    collapse_table = pd.DataFrame(scalars["collapse_ms"]).T
    collapse_table.index.name = "expansion depth"
    collapse_table.columns = [f"collapse, {c} (ms)" for c in collapse_table.columns]
    return steps.round(3), collapse_table.round(1)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m support.experiments.linear_overparam",
        description="Recipes of the chapter 'Linear over-parameterization'.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser(
        "bench", help="training-step time: effective weight vs sequential vs plain"
    )
    bench.add_argument("--depths", type=int, nargs="+", default=[2, 4])
    bench.add_argument("--batch", type=_positive_int, default=64)
    bench.add_argument("--widths", type=int, nargs=3, default=[64, 256, 256])
    bench.add_argument("--repeats", type=int, default=9)
    bench.add_argument("--threads", type=int, default=1)
    bench.add_argument("--device", default="auto")
    bench.add_argument(
        "--save", action="store_true", help=f"store the result as {RESULT_NAME}"
    )
    args = parser.parse_args(argv)

    def record():
        load = benchmarking.load_average()
        result = step_benchmark(
            depths=args.depths,
            batch=args.batch,
            widths=args.widths,
            repeats=args.repeats,
            threads=args.threads,
            device=args.device,
        )
        scalars = {
            "rows": result["rows"],
            "collapse_ms": result["collapse_ms"],
            "load_average_before": load,
        }
        return {"config": result["config"], "scalars": scalars, "seeds": [0]}

    if args.save:
        stored = results.cached(
            RESULT_NAME, record, recompute=True, device=resolve_device(args.device)
        )
        config, scalars = stored.config, stored.scalars
        print(results.describe(stored))
    else:
        run = record()
        config, scalars = run["config"], run["scalars"]
    steps, collapse_table = benchmark_tables(scalars)
    print(f"{config}; load average {scalars['load_average_before']}")
    print(steps.to_string())
    print(collapse_table.to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
