"""How the book times code: variants measured side by side, interleaved, reported as median ratios.

The machines the book runs on are often shared, so a variant timed alone measures the load of
the moment as much as the code. :func:`interleaved` runs every variant once per repetition,
rotating their order, so that whatever else happens on the machine hits them alike; ratios are
taken within a repetition and their median reported (:func:`median_ratios`). The benchmarks of
the chapters *Finite-width simulations*, *Linear over-parameterization* and *Expanded CNNs on
CIFAR* use it.
"""

from __future__ import annotations

import os
import statistics
import time

from support.checks import check_int


def interleaved(variants: dict, repeats: int, *, warmup: int = 1, sync=None) -> dict:
    """Seconds per call of each variant: ``{name: [t_1, ..., t_repeats]}``.

    ``variants`` maps names to zero-argument callables. Each is called ``warmup`` times first
    (allocator, kernel selection), then once per repetition in an order rotated by one every
    repetition. ``sync`` (e.g. ``torch.cuda.synchronize``) is called before and after each
    timed call so asynchronous devices are timed to completion.
    """
    if not variants:
        raise ValueError("interleaved: no variants to time")
    repeats = check_int(repeats, "repeats")
    names = list(variants)
    for name in names:
        for _ in range(warmup):
            variants[name]()
    times = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            if sync is not None:
                sync()
            start = time.perf_counter()
            variants[name]()
            if sync is not None:
                sync()
            times[name].append(time.perf_counter() - start)
    return times


def median_ratios(times: dict, reference: str) -> dict:
    """``{name: median over repetitions of t_name / t_reference}`` from :func:`interleaved` times."""
    if reference not in times:
        raise ValueError(
            f"reference {reference!r} is not one of the timed variants {sorted(times)}"
        )
    return {
        name: statistics.median(t / r for t, r in zip(ts, times[reference]))
        for name, ts in times.items()
    }


def medians(times: dict) -> dict:
    """``{name: median seconds}``."""
    return {name: statistics.median(ts) for name, ts in times.items()}


def load_average() -> float | None:
    """The machine's 1-minute load average (None where the OS has none), stored beside timings."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def training_steps(models: dict, inputs, targets, *, lr: float = 1e-3) -> dict:
    """One zero-argument callable per model that runs a full training step on a fixed batch:
    zero_grad, forward, cross-entropy, backward, SGD (momentum 0.9) update. Feed the result to
    :func:`interleaved` to compare parameterizations of one network side by side."""
    import torch
    import torch.nn.functional as F

    def step_of(model):
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)

        def step():
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(inputs), targets).backward()
            optimizer.step()

        return step

    return {name: step_of(model) for name, model in models.items()}
