"""Tests of the CIFAR chapter's recipes (support/experiments/cifar_expanded.py) on tiny synthetic data."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from helpers import TINY, tiny_config

from support import data, results, train
from support.experiments import cifar_expanded as ce

pytestmark = pytest.mark.usefixtures("one_thread")


def test_run_experiment_goes_seed_by_seed_and_summarizes(tiny_data):
    seen = []
    out = ce.run_experiment(
        tiny_data,
        "plain",
        depths=(1, 2),
        seeds=(0, 1),
        config=tiny_config(epochs=1, record_layer="body.4"),
        model_kwargs=TINY,
        device="cpu",
        rho_examples=32,
        on_seed_done=lambda o: seen.append(
            (int(o["seeds_done"]), o["test_acc"].copy())
        ),
    )
    assert [s for s, _ in seen] == [1, 2]
    first = seen[0][1]
    assert np.all(np.isfinite(first[:, 0])) and np.all(
        np.isnan(first[:, 1])
    )  # seed 0 complete at both depths
    assert out["test_acc"].shape == (2, 2) and out["spectra"].shape == (2, 2, 2, 8)
    assert out["history_test_acc"].shape == (2, 2, 1)
    np.testing.assert_array_equal(out["history_test_acc"][..., -1], out["test_acc"])
    assert (
        out["params"][1] > out["params"][0]
        and out["params_deployed"][1] == out["params_deployed"][0]
    )
    assert out["flops_deployed"][0] == out["flops_deployed"][1]
    for key in ("embedding_rho", "embedding_rho_init"):
        assert np.all((0 < out[key]) & (out[key] <= np.log(32)))
    summary = ce.summarize(out, (1, 2))
    d = summary["depth_2"]["test_acc_minus_baseline"]
    assert d["mean"] == pytest.approx(np.mean(out["test_acc"][1] - out["test_acc"][0]))
    assert d["ci_low"] <= d["mean"] <= d["ci_high"]
    one_seed = ce.summarize({**out, "seeds_done": np.int64(1)}, (1, 2))
    assert (
        "test_acc_minus_baseline" not in one_seed["depth_2"]
    )  # no interval from one pair


def test_run_grid_stores_results_with_provenance(tmp_path, monkeypatch):
    tiny = ce.Experiment(
        stem="tiny",
        model="plain",
        model_kwargs=TINY,
        epochs=1,
        batch_size=16,
        lr=0.05,
        record_layer="body.0",
    )
    monkeypatch.setitem(
        ce.GRIDS,
        "test",
        {"subset": (40, 20), "seeds": (0, 1), "depths": (1, 2), "experiments": (tiny,)},
    )
    monkeypatch.setattr(
        data, "load_cifar", lambda name: data.synthetic(96, 48, num_classes=4, seed=0)
    )
    names = ce.run_grid(
        "test",
        device="cpu",
        checkpoint_dir=tmp_path / "ck",
        results_dir=tmp_path,
        allow_dirty=True,
    )
    assert names == ["cifar_cifar10_tiny_test"]
    stored = results.load(names[0], directory=tmp_path)
    assert (
        stored.config["n_train"] == 40 and stored.config["train_config"]["epochs"] == 1
    )
    assert stored.arrays["test_acc"].shape == (2, 2) and stored.provenance["seeds"] == [
        0,
        1,
    ]
    assert "test_acc_minus_baseline" in stored.scalars["depth_2"]
    assert sorted(p.name for p in (tmp_path / "ck" / names[0]).iterdir()) == [
        "plain-d1-s0.pt",
        "plain-d1-s1.pt",
        "plain-d2-s0.pt",
        "plain-d2-s1.pt",
    ]  # checkpoints apart per grid
    with pytest.raises(ValueError, match="scale"):
        ce.run_grid("huge")


def test_study_recipe_is_the_papers_schedule():
    study = ce.STUDIES["plain5k"]
    config = study.config()
    assert (
        config.schedule == "step"
        and config.epochs == 180
        and config.label_smoothing == 0.0
    )
    steps = config.epochs * (study.n_train // config.batch_size)
    drops = [
        s
        for s in range(1, steps)
        if train.lr_factor(s, steps, config) < train.lr_factor(s - 1, steps, config)
    ]
    assert [round(s / steps * config.epochs) for s in drops] == [60, 120]
    assert (config.translate, config.flip) == (0, False)
    augmented = ce.STUDIES["plain5k_augmented"].config()
    assert (augmented.translate, augmented.flip) == (2, True)
    assert dataclasses.replace(augmented, translate=0, flip=False) == config


def test_study_stores_after_every_seed_and_resumes(tmp_path, monkeypatch):
    small = ce.Study(
        "tiny",
        40,
        augment=False,
        model_kwargs=TINY,
        seeds=(0, 1),
        depths=(1, 2),
        epochs=2,
        batch_size=16,
        record_layer="body.4",
        rho_examples=20,
    )
    monkeypatch.setitem(ce.STUDIES, "tiny", small)
    monkeypatch.setattr(
        data, "load_cifar", lambda name: data.synthetic(96, 48, num_classes=4, seed=0)
    )
    stored_counts = []
    real_save = results.save

    def spy(name, **kw):
        stored_counts.append(len(kw["provenance_record"]["seeds"]))
        return real_save(name, **kw)

    monkeypatch.setattr(results, "save", spy)
    ck = tmp_path / "ck"
    first = ce.run_study(
        "tiny", checkpoint_dir=ck, results_dir=tmp_path, allow_dirty=True
    )
    assert stored_counts == [1, 2]
    assert first.config["seeds_planned"] == [0, 1] and first.arrays[
        "spectra"
    ].shape == (2, 2, 3, 8)
    assert first.arrays["history_lr"][0, 0].tolist() == pytest.approx(
        [0.05, 0.005]
    )  # drop after 1/3 of 2 epochs
    again = ce.run_study(
        "tiny", checkpoint_dir=ck, results_dir=tmp_path, allow_dirty=True
    )  # all from checkpoints
    np.testing.assert_array_equal(again.arrays["test_acc"], first.arrays["test_acc"])
    np.testing.assert_array_equal(again.arrays["spectra"], first.arrays["spectra"])
    with pytest.raises(results.ResultError, match="uncommitted"):
        monkeypatch.setattr(results, "git_commit", lambda *a, **k: "abc-dirty")
        ce.run_study("tiny", checkpoint_dir=ck, results_dir=tmp_path)


def test_step_time_compares_every_depth_of_the_study_to_the_plain_step(monkeypatch):
    monkeypatch.setitem(
        ce.STUDIES,
        "tiny",
        ce.Study("tiny", 40, augment=False, model_kwargs=TINY, batch_size=4),
    )
    out = ce.step_time(study="tiny", repeats=2, threads=1)
    assert list(out["median_ms"]) == ["depth 1", "depth 2", "depth 4"]
    assert out["ratio"]["depth 1"] == 1.0 and all(
        v > 0 for v in out["median_ms"].values()
    )
    assert out["config"]["batch"] == 4 and out["config"]["threads"] == 1


def test_the_gpu_grid_runs_end_to_end_at_toy_size(tmp_path, monkeypatch, capsys):
    """Every experiment of the paper-scale grid (fast CNN, plain CNN, ResNet-18) through the
    command line at minimal width, one epoch, on a synthetic stand-in: augmentation on, the fast
    CNN in bf16 autocast (the GPU's mixed-precision path, as far as a CPU runs it), each result
    stored and loaded back."""
    real = ce.GRIDS["gpu"]
    widths = {
        "fast": {"widths": [8, 8, 8]},
        "plain": {"widths": [4, 4, 8, 8]},
        "resnet18": {"width": 4},
    }
    toy = tuple(
        dataclasses.replace(
            exp,
            model_kwargs=widths[exp.model],
            epochs=1,
            batch_size=16,
            precision="bf16" if exp.model == "fast" else exp.precision,
        )
        for exp in real["experiments"]
    )
    assert [e.model for e in toy] == ["fast", "plain", "resnet18"]
    grid = {**real, "subset": (40, 20), "seeds": (0, 1), "experiments": toy}
    monkeypatch.setitem(ce.GRIDS, "gpu_toy", grid)
    monkeypatch.setattr(
        data, "load_cifar", lambda name: data.synthetic(96, 48, num_classes=4, seed=0)
    )
    monkeypatch.setenv("BOOK_CACHE", str(tmp_path / "cache"))
    argv = ["grid", "--scale", "gpu_toy", "--device", "cpu"]
    assert ce.main([*argv, "--results-dir", str(tmp_path), "--allow-dirty"]) == 0
    for exp in toy:
        stored = results.load(f"cifar_cifar10_{exp.stem}_gpu_toy", directory=tmp_path)
        assert stored.config["model"] == exp.model
        assert stored.config["train_config"]["translate"] == 2
        assert stored.config["train_config"]["flip"] is True
        assert stored.config["precision"] == ("bf16" if exp.model == "fast" else "fp32")
        acc = stored.arrays["test_acc"]
        assert acc.shape == (3, 2) and np.all((0 <= acc) & (acc <= 1))
        assert stored.arrays["spectra"].shape[:3] == (3, 2, 2)
        assert stored.provenance["seeds"] == [0, 1]
        for depth in (2, 4):
            d = stored.scalars[f"depth_{depth}"]["test_acc_minus_baseline"]
            assert d["ci_low"] <= d["mean"] <= d["ci_high"]
        assert (
            stored.arrays["params_deployed"][0] == stored.arrays["params_deployed"][2]
        )
    assert "stored ['cifar_cifar10_fast_gpu_toy'" in capsys.readouterr().out


def test_airbench_arrays_hold_exactly_our_images(tmp_path):
    import torch

    d = data.synthetic(20, 10, num_classes=4, seed=0)
    folder = ce.write_airbench_arrays(d, tmp_path / "cifar10")
    for split in ("train", "test"):
        stored = torch.load(folder / f"{split}.pt", weights_only=True)
        assert stored["images"].dtype == torch.uint8
        np.testing.assert_array_equal(
            stored["images"].numpy(), getattr(d, f"{split}_images")
        )
        np.testing.assert_array_equal(
            stored["labels"].numpy(), getattr(d, f"{split}_labels")
        )
        assert stored["classes"] == list(d.classes)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["study", "plain5k", "--threads", "0"], "must be at least 1"),
        (["train", "--model-kwargs", "{nope"], "not valid JSON"),
        (["train", "--model-kwargs", "[1]"], "expected a JSON object"),
        (["train", "--device", "gpu"], "argument --device"),
        (["train", "--save-state", "/nonexistent-folder/x.pt"], "not writable"),
        (["train", "--synthetic", "0", "4"], "must be at least 1"),
        (["train", "--lr", "-1"], "lr must be > 0"),
        (
            ["grid", "--scale", "gpu", "--only", "nosuch"],
            "no experiment \\['nosuch'\\]",
        ),
    ],
)
def test_cli_refuses_bad_arguments_before_any_work(argv, message, capsys, monkeypatch):
    monkeypatch.setattr(
        data, "load_cifar", lambda *a, **k: pytest.fail("data loaded before checks")
    )
    with pytest.raises(SystemExit) as stop:
        ce.main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and "Traceback" not in err
