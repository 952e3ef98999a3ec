"""Tests of the comparison tables (support/tables.py)."""

import math

import pandas as pd
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


def test_book_table_is_a_numbered_captioned_list_table_with_one_precision_per_column():
    frame = pd.DataFrame(
        {"$\\rho$": [-0.7, -0.2179], "verdict": ["matches", "differs"], "n": [3, 4]},
        index=pd.Index(["depth 1", "depth 2"], name="network"),
    )
    text = tables.book_table(frame, "Our rho. Tolerance 0.1 nats.", "tab-demo")
    lines = text.splitlines()
    assert lines[:3] == [
        ":::{list-table} Our rho. Tolerance 0.1 nats.",
        ":name: tab-demo",
        ":header-rows: 1",
    ]
    assert lines[-1] == ":::"
    rows = text.split("* - ")[1:]
    assert rows[0].split() == ["network", "-", "$\\rho$", "-", "verdict", "-", "n"]
    assert "-0.7000" in rows[1] and "-0.2179" in rows[2]  # one precision per column
    assert "  - 3" in rows[1]  # integers stay integers


def test_book_table_formats_dashes_and_escapes():
    frame = pd.DataFrame({"a": [1.23456, math.nan], "b": ["1. first", "- item"]})
    text = tables.book_table(frame, "Caption.", "tab-x", formats={"a": ".1f"})
    # an explicit format is applied as given; NaN is a dash
    assert "* - 1.2\n" in text and "* - –\n" in text
    assert "\\1. first" in text and "\\- item" in text  # not read as Markdown lists
    plain = tables.book_table(frame[["a"]], "Caption.", "tab-y")
    assert "* - 1.2346" in plain and "* - –" in plain


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"caption": " "}, "needs a caption"),
        ({"name": "Tab_X"}, "lower-case"),
        ({"formats": {"zzz": ".2f"}}, "unknown columns"),
    ],
)
def test_book_table_refuses_bad_input(kwargs, message):
    args = {"caption": "C.", "name": "tab-x", **kwargs}
    with pytest.raises(ValueError, match=message):
        tables.book_table(pd.DataFrame({"a": [1.0]}), **args)
    with pytest.raises(ValueError, match="no rows"):
        tables.book_table(pd.DataFrame(), "C.", "tab-x")


def test_book_table_shows_a_multiindex_as_leading_columns_with_repeats_once():
    frame = pd.DataFrame(
        [[1.0], [3.25], [5.0]],
        index=pd.MultiIndex.from_tuples(
            [("paper", "linear"), ("ours", "linear"), ("ours", "ReLU")],
            names=["source", None],
        ),
        columns=pd.MultiIndex.from_tuples([("same class", 2)]),
    )
    rows = [
        r.split("\n  - ")
        for r in tables.book_table(frame, "C.", "tab-m").split("* - ")[1:]
    ]
    assert [r[0].strip() for r in rows] == ["source", "paper", "ours", ""]
    assert rows[0][2].strip() == "same class, 2"
    assert [r[1].strip() for r in rows[1:]] == ["linear", "linear", "ReLU"]
    assert [r[2].split()[0] for r in rows[1:]] == ["1.00", "3.25", "5.00"]
