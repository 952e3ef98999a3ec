"""Tests of the comparison tables (support/tables.py)."""

import math

import pytest

from support import tables


def test_paper_vs_ours_rounds_for_display_and_judges_unrounded_values():
    t = tables.paper_vs_ours(
        [("depth 1", 2.55, 2.541), ("depth 16", 1.2, 1.126), ("ReLU", None, 0.5)],
        tolerance=0.05,
    )
    assert (
        list(t.columns) == ["paper", "ours", "difference", "verdict"]
        and t.index.name == "quantity"
    )
    assert t.loc["depth 1", "ours"] == 2.54 and t.loc["depth 1", "verdict"] == "matches"
    assert (
        t.loc["depth 16", "difference"] == -0.07
        and t.loc["depth 16", "verdict"] == "differs"
    )
    assert (
        math.isnan(t.loc["ReLU", "paper"])
        and t.loc["ReLU", "verdict"] == "no paper value"
    )
    assert "<table" in t.to_html()


def test_bad_tables_are_refused():
    with pytest.raises(ValueError, match="no rows"):
        tables.paper_vs_ours([], tolerance=0.1)
    with pytest.raises(ValueError, match="tolerance"):
        tables.paper_vs_ours([("a", 1, 1)], tolerance=-1)
    with pytest.raises(ValueError, match="finite"):
        tables.paper_vs_ours([("a", 1, float("nan"))], tolerance=0.1)


def test_interval_verdicts():
    assert tables.interval_verdict(0.1, 0.3) == "gain"
    assert tables.interval_verdict(-0.3, -0.1) == "loss"
    assert tables.interval_verdict(-0.1, 0.2) == "no detectable difference"
    assert tables.interval_verdict(0.1, 0.3, better="lower") == "loss"
    with pytest.raises(ValueError, match="need a finite interval low <= high"):
        tables.interval_verdict(0.3, 0.1)
    with pytest.raises(ValueError, match="need a finite interval low <= high"):
        tables.interval_verdict(float("nan"), 0.1)
