"""Tests of the tuning recipes (support/experiments/cifar_tuning.py) on a synthetic stand-in."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from helpers import TINY

from support import results
from support.experiments import cifar_expanded as ce
from support.experiments import cifar_tuning as ct

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_STUDY = ce.Study(
    "tiny",
    100,
    augment=False,
    model_kwargs=TINY,
    seeds=(0, 1),
    depths=(1, 2),
    epochs=3,
    batch_size=25,
    lr=0.05,
    record_layer="body.4",
    rho_examples=40,
)
TINY_TUNING = ct.Tuning(
    "tiny",
    TINY_STUDY,
    lrs=(0.02, 0.08),
    tuning_epochs=1,
    n_val=50,
    max_extensions=1,
    seeds=(0, 1),
    synthetic=(400, 40),
)


def test_tuning_grid_extends_an_edge_optimum_until_bracketed(tmp_path):
    tuning = dataclasses.replace(TINY_TUNING, lrs=(0.1, 0.2, 0.4), max_extensions=2)
    grid = ct.TuningGrid(tuning, tmp_path)
    arm = (2, "none")
    accuracy = {0.1: 0.5, 0.2: 0.6, 0.4: 0.7, 0.8: 0.65}
    for lr in tuning.lrs:
        grid.record(
            grid.run(*arm, lr, 1), {"diverged": False, "test_acc": accuracy[lr]}
        )
    assert not grid.bracketed(arm)
    new = [r for r in grid.extend() if (r.depth, r.mode) == arm]
    assert [r.lr for r in new] == [0.8]
    assert (
        grid.extend() == []
    )  # the extension is outstanding: nothing more until it ends
    grid.record(new[0], {"diverged": False, "test_acc": accuracy[0.8]})
    assert grid.bracketed(arm) and grid.best(arm) == (0.4, 0.7)


def test_a_diverged_neighbour_brackets_and_an_all_diverged_arm_extends_down(tmp_path):
    grid = ct.TuningGrid(TINY_TUNING, tmp_path)
    arm, other = (1, "factors"), (2, "none")
    grid.record(grid.run(*arm, 0.02, 1), {"diverged": False, "test_acc": 0.4})
    grid.record(grid.run(*arm, 0.08, 1), {"diverged": False, "test_acc": 0.5})
    up = [r for r in grid.extend() if (r.depth, r.mode) == arm]
    assert [r.lr for r in up] == [0.16]
    grid.record(up[0], {"diverged": True})
    assert grid.bracketed(arm) and grid.best(arm)[0] == 0.08
    for lr in (0.02, 0.08):
        grid.record(grid.run(*other, lr, 1), {"diverged": True})
    down = [r for r in grid.extend() if (r.depth, r.mode) == other]
    assert [r.lr for r in down] == [0.01]


def test_tuning_then_tuned_study_end_to_end_and_resume(tmp_path):
    ckpt, store = tmp_path / "ckpt", tmp_path / "results"
    ct.TUNINGS["tiny"] = TINY_TUNING
    try:
        stored = ct.run_tuning(
            "tiny", jobs=2, checkpoint_dir=ckpt, results_dir=store, allow_dirty=True
        )
        s = stored.scalars
        assert s["complete"]
        split = s["validation_split"]
        assert (split["n_train"], split["n_val"], split["overlap"]) == (100, 50, 0)
        arms = TINY_TUNING.arms()
        assert (1, "collapsed") not in arms and len(arms) == 5
        for depth, mode in arms:
            entry = s["arms"][f"depth_{depth}_{mode}"]
            assert entry["bracketed"] or len(entry["lrs_tried"]) == 3
            assert entry["best_lr"] in entry["lrs_tried"]
        a = stored.arrays
        n = len(a["cell_lr"])
        assert n >= 10 and a["cell_history_val_acc"].shape == (n, 1)
        np.testing.assert_array_equal(
            a["cell_history_val_acc"][:, -1], a["cell_val_acc"]
        )
        assert sorted(a["check_lr"]) == [0.02, 0.08]
        assert a["check_history_val_acc"].shape == (2, TINY_STUDY.epochs)
        assert s["schedule_check"]["lrs"] == [0.02, 0.08]
        # depth 1 collapsed is factors; a depth-1 cell's accuracy is a validation accuracy
        assert np.all((a["cell_val_acc"] >= 0) & (a["cell_val_acc"] <= 1))

        again = ct.run_tuning(
            "tiny", jobs=1, checkpoint_dir=ckpt, results_dir=store, allow_dirty=True
        )
        for key, value in stored.arrays.items():
            if "time" not in key:
                np.testing.assert_array_equal(again.arrays[key], value, err_msg=key)

        study = ct.run_tuned_study(
            "tiny", jobs=2, checkpoint_dir=ckpt, results_dir=store, allow_dirty=True
        )
        labels = study.scalars["labels"]
        assert labels[:2] == ["depth 1", "depth 2"]
        assert int(study.arrays["seeds_done"]) == 2 and study.arrays["finished"].all()
        assert study.arrays["test_acc"].shape == (len(labels), 2)
        assert "test_acc_minus_baseline" in study.scalars["depth 2"]
        arms_cfg = study.config["arms"]
        assert arms_cfg[0]["depth"] == 1
        assert arms_cfg[1]["mode"] == s["best"]["depth_2"]["mode"]
    finally:
        del ct.TUNINGS["tiny"]


def test_tuned_study_refuses_an_incomplete_tuning():
    partial = results.StoredResult("cifar_tuning_x", {}, {"complete": False}, {})
    with pytest.raises(ValueError, match="is not complete"):
        ct.tuned_arms(partial)


def test_cli_refuses_bad_jobs(capsys):
    with pytest.raises(SystemExit):
        ct.main(["tune", "plain5k", "--jobs", "0"])
    assert "must be at least 1" in capsys.readouterr().err
