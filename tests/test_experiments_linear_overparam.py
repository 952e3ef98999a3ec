"""Smoke test of the chapter's training-step benchmark (support/experiments/linear_overparam.py)."""

import pytest

from support.experiments import linear_overparam as lo

pytestmark = pytest.mark.usefixtures("one_thread")


def test_step_benchmark_reports_ratios_to_the_plain_step_and_tables():
    res = lo.step_benchmark(
        depths=(2,), batch=2, widths=(4, 8, 8), repeats=2, threads=1, device="cpu"
    )
    assert [r["variant"] for r in res["rows"]] == [
        "plain",
        "effective d=2",
        "sequential d=2",
        "residual d=2 (every 2)",
        "residual d=2 (every 2), sequential",
        "rate 2 (1-3-1)",
        "rate 2 (1-3-1), sequential",
        "batch-norm d=2 (sequential)",
    ]
    assert res["rows"][0]["ratio"] == 1.0 and all(
        r["median_ms"] > 0 for r in res["rows"]
    )
    assert set(res["collapse_ms"]) == {"d=2"} and set(res["collapse_ms"]["d=2"]) == {
        "copy",
        "inplace",
    }
    steps, collapse_table = lo.benchmark_tables(res)
    assert list(steps.index)[:3] == ["plain", "effective d=2", "sequential d=2"]
    assert list(collapse_table.index) == ["d=2"]


def test_bench_refuses_an_empty_batch():
    with pytest.raises(ValueError, match="batch must be an integer >= 1"):
        lo.step_benchmark(batch=0, device="cpu")
    with pytest.raises(SystemExit):
        lo.main(["bench", "--batch", "0"])
