"""Tests of the non-linear chapter's recipes (support/experiments/nonlinear_networks.py) at tiny sizes."""

import numpy as np
import pytest

from support import results
from support.experiments import nonlinear_networks as nn_exp

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny():
    return {
        **nn_exp.sweep_settings("quick"),
        "seeds": (0, 1),
        "depths": (2, 3),
        "activations": ("relu", "sine"),
        "steps": 3,
        "width": 8,
        "heatmap_per_class": 2,
        "synthetic": {
            "n_train": 32,
            "n_test": 16,
            "in_dim": 6,
            "out_dim": 6,
            "rank": 2,
        },
    }


def test_tiny_sweep_shapes():
    s = _tiny()
    out = nn_exp.trained_sweep(s, "digits")
    assert out["rho_trained"].shape == out["test_accuracy"].shape == (2, 2, 2)
    assert (
        out["heatmaps"].shape == (2, 2, 20, 20) and np.abs(out["heatmaps"]).max() <= 1.0
    )
    assert out["heatmap_labels"].tolist() == [c for c in range(10) for _ in range(2)]
    assert np.all(out["rho_trained_centred"] > 0)
    syn = nn_exp.trained_sweep(s, "synthetic")
    assert "heatmaps" not in syn and syn["rho_init"].shape == (2, 2, 2)
    with pytest.raises(ValueError, match="dataset"):
        nn_exp.trained_sweep(s, "mnist")
    with pytest.raises(ValueError, match="scale"):
        nn_exp.sweep_settings("huge")


def test_record_is_storable(monkeypatch, tmp_path):
    tiny = _tiny()
    monkeypatch.setattr(nn_exp, "sweep_settings", lambda scale: tiny)
    lines = []
    stored = results.cached(
        "trained",
        lambda: nn_exp.trained_record("paper", log=lines.append),
        directory=tmp_path,
        allow_dirty=True,
    )
    assert lines == ["digits done", "synthetic done"]
    assert stored.arrays["digits_rho_trained"].shape == (2, 2, 2)
    assert "synthetic_test_loss" in stored.arrays and stored.provenance["seeds"] == [
        0,
        1,
    ]
    assert stored.config["data_seed"] == 0
