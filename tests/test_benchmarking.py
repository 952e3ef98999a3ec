"""Tests of the interleaved timing helpers (support/benchmarking.py)."""

import pytest

from support import benchmarking


class _Clock:
    """A stand-in for ``time.perf_counter`` that advances only when a variant says it worked, so
    the test measures the bookkeeping of :func:`benchmarking.interleaved`, not the machine."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_interleaved_rotates_order_and_ratios_reflect_work(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(benchmarking.time, "perf_counter", clock)
    calls = []
    spike = {"repetition": 2, "seconds": 0.050}  # a load spike hits one repetition

    def variant(name, seconds):
        def run():
            calls.append(name)
            timed = len(calls) - 2  # after the two warm-up calls
            clock.now += seconds
            if timed > 0 and (timed - 1) // 2 == spike["repetition"]:
                clock.now += spike["seconds"]

        return run

    times = benchmarking.interleaved(
        {"fast": variant("fast", 0.001), "slow": variant("slow", 0.004)},
        repeats=5,
        warmup=1,
    )
    assert calls[:2] == ["fast", "slow"]  # warm-up
    assert calls[2:] == [
        "fast",
        "slow",
        "slow",
        "fast",
        "fast",
        "slow",
        "slow",
        "fast",
    ] + [
        "fast",
        "slow",
    ]
    assert all(len(t) == 5 for t in times.values())
    ratios = benchmarking.median_ratios(times, "fast")
    assert ratios["fast"] == 1.0 and ratios["slow"] == pytest.approx(4.0)
    assert benchmarking.medians(times) == pytest.approx({"fast": 0.001, "slow": 0.004})


def test_bad_benchmark_arguments_are_refused():
    with pytest.raises(ValueError, match="no variants"):
        benchmarking.interleaved({}, 3)
    with pytest.raises(ValueError, match="repeats"):
        benchmarking.interleaved({"a": lambda: None}, 0)
    with pytest.raises(ValueError, match="reference"):
        benchmarking.median_ratios({"a": [1.0]}, "b")


def test_training_steps_update_every_model():
    import torch

    torch.manual_seed(0)
    models = {
        "a": torch.nn.Linear(3, 2),
        "b": torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 2)),
    }
    before = {
        k: [p.detach().clone() for p in m.parameters()] for k, m in models.items()
    }
    steps = benchmarking.training_steps(
        models, torch.randn(4, 3), torch.tensor([0, 1, 1, 0]), lr=0.1
    )
    times = benchmarking.interleaved(steps, repeats=2, warmup=0)
    assert set(times) == {"a", "b"}
    for k, m in models.items():
        assert all(not torch.equal(p, q) for p, q in zip(m.parameters(), before[k]))
