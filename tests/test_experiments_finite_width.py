"""Tests of the finite-width chapter's recipes (support/experiments/finite_width.py), at tiny sizes,
and of the layering rule: concept modules never import the experiment layer."""

import ast
from pathlib import Path

import numpy as np
import pytest

from support import results
from support.experiments import finite_width as fw
from support.simulate import sample_product_entropy

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = {"widths": [4, 6], "depths": [1, 3], "samples": [70, 20]}


def test_sweep_record_is_storable_and_its_cells_are_the_samplers(monkeypatch, tmp_path):
    monkeypatch.setitem(fw.SCALES, "tiny", TINY)
    stored = results.cached(
        "sweep", lambda: fw.sweep("tiny", seed=2), directory=tmp_path, allow_dirty=True
    )
    assert sorted(stored.arrays) == ["rho_n4", "rho_n6"]
    assert (
        stored.arrays["rho_n6"].shape == (2, 20)
        and stored.arrays["rho_n6"].dtype == np.float32
    )
    np.testing.assert_allclose(
        stored.arrays["rho_n4"][1], sample_product_entropy(4, 3, 70, seed=2), atol=1e-5
    )
    assert stored.scalars["max_abs_f32_f64_deepest_widest"] < 1e-4
    assert stored.config["depths"] == [1, 3] and stored.provenance["seeds"] == [2]
    with pytest.raises(ValueError, match="scale"):
        fw.sweep("huge")


def test_observation1_is_the_constructions_defaults(monkeypatch):
    from support.simulate import sample_gram_entropy_depths

    monkeypatch.setitem(fw.OBSERVATION1_SAMPLES, "tiny", 70)
    rho = fw.observation1("tiny", seed=3)
    assert set(rho) == {
        (a, k, d) for a, k in fw.OBSERVATION1_VARIANTS for d in ("normal", "uniform")
    }
    assert rho["relu", "raw", "uniform"].shape == (len(fw.OBSERVATION1_DEPTHS), 70)
    np.testing.assert_array_equal(
        rho["relu", "centred", "normal"],
        sample_gram_entropy_depths(fw.OBSERVATION1_DEPTHS, 70, seed=3),
    )
    with pytest.raises(ValueError, match="scale"):
        fw.observation1("huge")


def test_benchmark_smoke_reports_ratios_and_precision():
    res = fw.benchmark(n=8, depth=3, samples=128, repeats=1)
    for key in (
        "plain_loop_s",
        "engine_s",
        "floor_s",
        "speedup_vs_loop",
        "engine_over_floor",
    ):
        assert res[key] > 0, key
    assert res["speedup_vs_loop"] == pytest.approx(
        res["plain_loop_s"] / res["engine_s"]
    )
    assert res["floor_s"] == pytest.approx(
        res["rng_s"] + res["products_s"] + res["svd_s"]
    )
    assert res["max_abs_f32_f64"] < 1e-4
    assert abs(res["engine_mean_rho"] - res["loop_mean_rho"]) < 0.05


def test_command_line_runs_the_benchmark_without_storing(capsys):
    assert (
        fw.main(
            ["bench", "--n", "6", "--depth", "2", "--samples", "64", "--repeats", "1"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "speedup_vs_loop" in out and "saved" not in out


def test_command_line_quick_sweep_prints_without_storing(monkeypatch, capsys):
    monkeypatch.setitem(fw.SCALES, "quick", TINY)
    assert fw.main(["sweep", "--scale", "quick"]) == 0
    assert "rho_n6: mean rho by depth [1, 3]" in capsys.readouterr().out


CONCEPT_MODULES = [p for p in (Path(__file__).parents[1] / "support").glob("*.py")]


@pytest.mark.parametrize("path", CONCEPT_MODULES, ids=lambda p: p.name)
def test_concept_modules_never_import_the_experiment_layer(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        names = (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
        if isinstance(node, ast.ImportFrom) and node.module == "support":
            names += [f"support.{a.name}" for a in node.names]
        assert not any(n.startswith("support.experiments") for n in names), (
            f"{path.name} imports {names}"
        )
