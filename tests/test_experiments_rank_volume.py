"""Tests of the rank-volume chapter's recipes (support/experiments/rank_volume_theorem.py) at tiny sizes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from support import results
from support.experiments import rank_volume_theorem as rv
from support.rank import entropy_of_spectrum

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(rv, "WIDTH_SWEEP", {4: 16, 8: 8})
    monkeypatch.setattr(rv, "WIDTH_SWEEP_DEPTHS", (1, 2))
    monkeypatch.setattr(rv, "ORDERING_SAMPLES", 256)
    monkeypatch.setattr(rv, "ORDERING_DEPTHS", (1, 2, 3))
    monkeypatch.setattr(rv, "ORDERING_GRID_POINTS", 11)
    monkeypatch.setattr(rv, "DRIFT_WIDTHS", (3,))
    monkeypatch.setattr(rv, "DRIFT_SEARCH_WIDTHS", (3,))
    monkeypatch.setattr(rv, "DRIFT_SAMPLES", 64)
    monkeypatch.setattr(rv, "DRIFT_SEARCH_STARTS", 1)
    monkeypatch.setattr(rv, "DRIFT_SEARCH_EVALUATIONS", 6)
    monkeypatch.setattr(rv, "DRIFT_RECHECK_SAMPLES", 64)
    monkeypatch.setattr(rv, "PROPORTIONAL_SAMPLES", {4: 32, 8: 16})


def test_width_sweep_shapes_and_values(tiny):
    out = rv.width_sweep(seed=1)
    assert out["config"]["widths"] == [4, 8] and out["seeds"] == [1]
    for n in (4, 8):
        mean, se = out["arrays"][f"gap_mean_n{n}"], out["arrays"][f"gap_se_n{n}"]
        assert (
            mean.shape == se.shape == (2,)
            and np.all(mean < 0)
            and np.all(mean > -math.log(n))
        )
        assert np.all(se > 0)


def test_small_width_ordering_is_a_distribution_function_per_depth(tiny):
    arrays = rv.small_width_ordering(seed=0)["arrays"]
    for n in (2, 3):
        cdf, tau = arrays[f"cdf_n{n}"], arrays[f"thresholds_n{n}"]
        assert (
            cdf.shape == (3, 11)
            and tau[0] == 0
            and tau[-1] == pytest.approx(math.log(n))
        )
        assert (
            np.all(np.diff(cdf, axis=1) >= 0)
            and np.all(cdf[:, 0] == 0)
            and np.all(cdf[:, -1] <= 1)
        )


def test_survey_spectra_are_sorted_and_normalised():
    spectra, family = rv.drift_survey_spectra(4, seed=0)
    assert (
        spectra.shape[1] == 4
        and len(family) == len(spectra)
        and set(family) == {0, 1, 2, 3}
    )
    np.testing.assert_allclose(spectra[:, 0], 1.0)
    assert np.all(np.diff(spectra, axis=1) <= 0)


def test_spectrum_parametrisation_covers_sorted_spectra_with_a_floor():
    s = rv._spectrum_from_parameters(np.array([0.0, 5.0, 100.0]))
    assert s[0] == 1.0 and np.all(np.diff(s) <= 0) and s[-1] == pytest.approx(1e-8)


def test_supermartingale_search_records_survey_and_rechecked_search(tiny):
    arrays = rv.supermartingale_search(seed=0)["arrays"]
    spectra, drift = arrays["spectra_3"], arrays["drift_3"]
    assert (
        drift.shape
        == arrays["drift_se_3"].shape
        == arrays["rho_3"].shape
        == (len(spectra),)
    )
    assert arrays["search_spectra_3"].shape == (1, 3) and arrays[
        "search_drift_3"
    ].shape == (1,)
    np.testing.assert_allclose(arrays["rho_3"], entropy_of_spectrum(spectra))
    # even 64 draws see the downward drift for most spectra
    assert np.mean(drift < 0) > 0.5
    unresolved = arrays["recheck_index_3"]
    np.testing.assert_array_equal(
        unresolved, np.flatnonzero(drift / arrays["drift_se_3"] > -5)
    )
    assert (
        arrays["recheck_drift_3"].shape
        == arrays["recheck_drift_se_3"].shape
        == unresolved.shape
    )
    assert (
        arrays["first_order_drift_3"].shape == arrays["first_order_eps_3"].shape == (2,)
    )
    # stay where Monte Carlo resolves the drift
    near_rank = np.isin(arrays["family_3"], [1, 2])
    assert spectra[near_rank, -1].min() >= 1e-8


def test_proportional_regime_depths_follow_beta(tiny):
    out = rv.proportional_regime(seed=0)
    assert out["config"]["widths"] == [4, 8]
    assert out["arrays"]["rho_n4"].shape == (3, 32) and out["arrays"][
        "rho_n8"
    ].shape == (3, 16)
    assert np.all(out["arrays"]["rho_n8"] <= math.log(8) + 1e-12)


def test_command_line_stores_a_result(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(results.paths, "results_dir", lambda: tmp_path)
    assert (
        rv.main(
            ["store", "rank_volume_width_sweep", "--device", "cpu", "--allow-dirty"]
        )
        == 0
    )
    stored = results.load("rank_volume_width_sweep", tmp_path)
    assert stored.config["widths"] == [4, 8] and stored.provenance["seeds"] == [0]
