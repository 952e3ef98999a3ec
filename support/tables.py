"""Comparison tables for the book: the paper's value beside ours, rounded, with a verdict.

Chapters show every comparison as an HTML table (a pandas ``DataFrame``), never as printed text
that a narrow column would clip. :func:`paper_vs_ours` builds the usual four columns; any other
table is a plain ``DataFrame`` made in the chapter.
"""

from __future__ import annotations

import math

import pandas as pd


def verdict(paper: float, ours: float, tolerance: float) -> str:
    """ "matches" when ``|ours - paper| <= tolerance``, else "differs"; "no paper value" for NaN."""
    if paper is None or (isinstance(paper, float) and math.isnan(paper)):
        return "no paper value"
    if not math.isfinite(ours):
        raise ValueError(f"verdict: our value must be finite, got {ours}")
    return "matches" if abs(ours - paper) <= tolerance else "differs"


def paper_vs_ours(
    rows, *, tolerance: float, digits: int = 2, index_name: str = "quantity"
) -> pd.DataFrame:
    """Table with columns paper | ours | difference | verdict, one row per ``(label, paper, ours)``.

    ``tolerance`` decides the verdict (:func:`verdict`); values are rounded to ``digits``
    decimals for display (the verdict uses the unrounded ones). A paper value of ``None`` or
    NaN means the paper gives none (read-off impossible); that row's verdict says so.
    """
    if tolerance < 0 or not math.isfinite(tolerance):
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance}")
    records = []
    for label, paper, ours in rows:
        paper = math.nan if paper is None else float(paper)
        ours = float(ours)
        records.append(
            {
                index_name: label,
                "paper": paper,
                "ours": ours,
                "difference": ours - paper,
                "verdict": verdict(paper, ours, tolerance),
            }
        )
    if not records:
        raise ValueError("paper_vs_ours: no rows")
    table = pd.DataFrame.from_records(records).set_index(index_name)
    return table.round({"paper": digits, "ours": digits, "difference": digits})


def interval_verdict(low: float, high: float, *, better: str = "higher") -> str:
    """The verdict a confidence interval of a difference (treatment - baseline) supports:
    "gain" when it lies above zero, "loss" when below, "no detectable difference" when it
    contains zero (``better="lower"`` swaps gain and loss, e.g. for losses)."""
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ValueError(
            f"interval_verdict: need a finite interval low <= high, got [{low}, {high}]"
        )
    if better not in ("higher", "lower"):
        raise ValueError(f"better must be 'higher' or 'lower', got {better!r}")
    if low > 0:
        return "gain" if better == "higher" else "loss"
    if high < 0:
        return "loss" if better == "higher" else "gain"
    return "no detectable difference"
