"""Tests of the deep-linear chapter's recipes (support/experiments/deep_linear_training.py), tiny sizes."""

from __future__ import annotations

import numpy as np
import pytest

from support import linear_nets as ln
from support import linear_training as lt
from support.experiments import deep_linear_training as dlt

pytestmark = pytest.mark.usefixtures("one_thread")
TINY_SCALE = {
    "seeds": (0, 1),
    "depths": (1, 2),
    "optimizer_depths": (1,),
    "optimizer_budget": 0.01,
}


@pytest.fixture
def tiny(monkeypatch):
    """Shrink every setup to 6 x 6 maps and short budgets."""
    monkeypatch.setitem(
        dlt.PROBLEMS,
        "regression",
        {
            **dlt.PROBLEMS["regression"],
            "n": 6,
            "n_samples": 4,
            "init_rank": 2,
            "steps": 400,
        },
    )
    monkeypatch.setitem(
        dlt.PROBLEMS,
        "completion",
        {**dlt.PROBLEMS["completion"], "n": 6, "init_rank": 2, "steps": 40},
    )
    monkeypatch.setitem(dlt.TARGETS, "lowrank", 2)
    monkeypatch.setitem(dlt.SCALES, "tiny", TINY_SCALE)
    monkeypatch.setitem(
        dlt.OPTIMIZER_BUDGETS, "cma", {**dlt.OPTIMIZER_BUDGETS["cma"], "popsize": 6}
    )


def test_settings_and_names():
    assert dlt.settings("paper")["depths"] == (1, 2, 4, 8, 16, 24, 32)
    assert len(dlt.settings("paper")["seeds"]) >= 5
    assert dlt.result_name("regression", "paper") == "deep_linear_regression_paper"
    for bad, message in (
        (lambda: dlt.settings("huge"), "scale must be one of"),
        (lambda: dlt.result_name("nonsense", "paper"), "name must be one of"),
        (
            lambda: dlt.make_problem("regression", "midrank", (0,)),
            "target must be one of",
        ),
        (
            lambda: dlt.make_problem("sensing", "lowrank", (0,)),
            "problem must be one of",
        ),
    ):
        with pytest.raises(ValueError, match=message):
            bad()


def test_problems_follow_the_setups():
    p = dlt.make_problem("regression", "lowrank", (0, 1))
    assert isinstance(p, ln.RegressionProblem) and p.n == 32
    assert p.n_observed == dlt.PROBLEMS["regression"]["n_samples"]
    c = dlt.make_problem("completion", "fullrank", (0,))
    assert isinstance(c, ln.CompletionProblem) and c.target_rank is None
    assert c.n_observed == round(0.8 * 32 * 32)


def test_depth_sweep_arrays_and_the_depth_one_closed_form(tiny):
    out = dlt.depth_sweep("regression", TINY_SCALE, "normal", "lowrank")
    for key in (
        "train_loss",
        "test_loss",
        "rho_init",
        "rho_final",
        "unobserved_inside_final",
        "unobserved_outside_final",
        "unobserved_outside_init",
    ):
        assert out[key].shape == (2, 2), key
    assert out["history_rho"].shape[0] == 2 and out["history_rho"].shape[2] == 2
    assert out["target_rho"].shape == (2,)
    # depth 1 trained by gradient descent ends where the closed form says; its outside part is untouched
    assert np.allclose(out["rho_final"][0], out["depth_one_limit_rho"], atol=1e-6)
    assert np.allclose(
        out["unobserved_outside_final"][0], out["unobserved_outside_init"][0], rtol=1e-8
    )
    with pytest.raises(ValueError, match="init must be one of"):
        dlt.depth_sweep("regression", TINY_SCALE, "orthogonal", "lowrank")


def test_optimizer_budget_scales_the_steps(tiny):
    run = dlt.optimizer_run("regression", TINY_SCALE, "random_search", 1)
    assert run.steps[-1] == round(
        dlt.OPTIMIZER_BUDGETS["random_search"]["steps"] * 0.01
    )
    with pytest.raises(ValueError, match="method must be one of"):
        dlt.optimizer_run("regression", TINY_SCALE, "rmsprop", 1)


def test_compute_stores_the_required_arrays(tiny):
    run = dlt.compute("regression", "tiny")
    arrays = run["arrays"]
    assert list(arrays["depths"]) == [1, 2] and run["seeds"] == (0, 1)
    assert arrays["rho_final"].shape == arrays["test_loss"].shape == (2, 2)
    np.testing.assert_array_equal(
        arrays["rho_final"], arrays["normal_lowrank_rho_final"]
    )
    assert {f"{i}_{t}_rho_final" for i in ln.INITS for t in dlt.TARGETS} <= set(arrays)
    assert run["config"]["problem"]["n_samples"] == 4
    opt = dlt.compute("regression-optimizers", "tiny")
    assert {f"{m}_rho_final" for m in lt.OPTIMIZERS} <= set(opt["arrays"])
    assert opt["arrays"]["sgd_rho_final"].shape == (1, 2)


def test_command_line_recomputes_each_named_result(monkeypatch):
    calls = []
    monkeypatch.setattr(
        dlt,
        "stored",
        lambda name, scale, recompute: calls.append((name, scale, recompute)),
    )
    monkeypatch.setattr(dlt.results, "describe", lambda result: "described")
    assert dlt.main(["store", "regression", "completion", "--scale", "quick"]) == 0
    assert calls == [("regression", "quick", True), ("completion", "quick", True)]
    with pytest.raises(SystemExit, match="2"):
        dlt.main(["store", "nonsense"])
