"""Tests of the interleaved timing helpers (support/benchmarking.py)."""

import time

import pytest

from support import benchmarking


def test_interleaved_rotates_order_and_ratios_reflect_work():
    calls = []
    variants = {
        "fast": lambda: (calls.append("fast"), time.sleep(0.001)),
        "slow": lambda: (calls.append("slow"), time.sleep(0.004)),
    }
    times = benchmarking.interleaved(variants, repeats=4, warmup=1)
    assert calls[:2] == ["fast", "slow"]  # warm-up
    assert calls[2:] == ["fast", "slow", "slow", "fast", "fast", "slow", "slow", "fast"]
    assert all(len(t) == 4 for t in times.values())
    ratios = benchmarking.median_ratios(times, "fast")
    assert ratios["fast"] == 1.0 and ratios["slow"] > 2.0
    assert benchmarking.medians(times)["slow"] > benchmarking.medians(times)["fast"]


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
