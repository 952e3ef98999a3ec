"""Comparison tables for the book: the paper's value beside ours, rounded, with a verdict.

Chapters show every comparison as a table, never as printed text that a narrow column would
clip. :func:`paper_vs_ours` builds the usual four columns; any other table is a plain
``DataFrame`` made in the chapter. :func:`book_table` turns a ``DataFrame`` into a numbered,
captioned table of the book (a MyST ``list-table`` that ``{numref}`` can name), with one
precision per column.
"""

from __future__ import annotations

import math
import numbers
import re

import pandas as pd

LABEL = re.compile(r"[a-z][a-z0-9-]*")
# Cell text that Markdown would read as the start of a list ("1. ", "- ", "* ", "+ ")
LIST_MARKER = re.compile(r"^(\d+[.)]|[-*+])(\s|$)")


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


def column_decimals(values, most: int = 4) -> int:
    """The fewest decimals (at most ``most``) that show every finite number of a column exactly
    as it is after rounding to ``most`` decimals: one precision per column, none lost."""
    decimals = 0
    for v in values:
        if isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v):
            text = f"{round(float(v), most):.{most}f}".rstrip("0")
            decimals = max(decimals, len(text.split(".")[1]))
    return decimals


def _heading(column) -> str:
    parts = column if isinstance(column, tuple) else (column,)
    text = ", ".join(" ".join(str(p).split()) for p in parts if str(p).strip())
    return text or " "


def _missing(value) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _cell(value, decimals: int) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(value)
    if isinstance(value, numbers.Real):
        return "–" if _missing(float(value)) else f"{float(value):.{decimals}f}"
    text = " ".join(str(value).split())
    if not text:
        return "–"
    return "\\" + text if LIST_MARKER.match(text) else text


def _checked_table(frame, caption, name, formats):
    """The caption (whitespace collapsed) and formats of a valid :func:`book_table` call."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(
            f"book_table needs a pandas DataFrame, got {type(frame).__name__}"
        )
    if frame.empty:
        raise ValueError(f"book_table {name!r}: the table has no rows or no columns")
    caption = " ".join(str(caption).split())
    if not caption:
        raise ValueError(f"book_table {name!r}: a table needs a caption")
    if not LABEL.fullmatch(name):
        raise ValueError(
            f"book_table: name must be lower-case letters, digits and dashes, got {name!r}"
        )
    formats = dict(formats or {})
    unknown = set(formats) - set(frame.columns)
    if unknown:
        raise ValueError(
            f"book_table {name!r}: formats for unknown columns {sorted(unknown)}"
        )
    return caption, formats


def book_table(frame: pd.DataFrame, caption: str, name: str, formats=None) -> str:
    """``frame`` as a MyST ``list-table`` directive: numbered, with ``caption``, and labelled
    ``name`` for ``{numref}``. The index (when named, or not a plain range) becomes the first
    column(s), a repeated outer label shown once; the levels of a column MultiIndex are joined
    with commas. Numbers get one precision per column: ``formats[column]`` (a format spec such as
    ``".2f"``, or a function of the value) where given, else :func:`column_decimals`. NaN shows
    as a dash. Column names and cells are MyST, so headers may be typeset (``$\\rho$``).

    The chapter displays it with ``IPython.display.Markdown`` (the book renders Markdown outputs
    as MyST, ``nb_render_markdown_format: myst`` in ``_config.yml``)."""
    caption, formats = _checked_table(frame, caption, name, formats)
    header = [_heading(c) for c in frame.columns]
    columns = []
    for column in frame.columns:
        values = list(frame[column])
        spec = formats.get(column)
        if spec is not None:
            render = spec if callable(spec) else (lambda v, spec=spec: format(v, spec))
            columns.append(
                ["–" if _missing(v) else _cell(render(v), 0) for v in values]
            )
        else:
            decimals = column_decimals(values)
            columns.append([_cell(v, decimals) for v in values])
    plain_index = frame.index.names == [None] and isinstance(frame.index, pd.RangeIndex)
    if not plain_index:
        # the index as leading columns; a repeated outer label is shown once, as pandas does
        keys = [k if isinstance(k, tuple) else (k,) for k in frame.index]
        header = [str(n) if n is not None else " " for n in frame.index.names] + header
        shown_keys, previous = [], None
        for key in keys:
            shown_keys.append(
                [
                    " "
                    if previous and key[: i + 1] == previous[: i + 1]
                    else _cell(k, 0)
                    for i, k in enumerate(key)
                ]
            )
            previous = key
        columns = [list(level) for level in zip(*shown_keys)] + columns
    lines = [f":::{{list-table}} {caption}", f":name: {name}", ":header-rows: 1", ""]
    for row in [header, *zip(*columns)]:
        lines.append(f"* - {row[0]}")
        lines.extend(f"  - {cell}" for cell in row[1:])
    lines.append(":::")
    return "\n".join(lines)


def show(frame: pd.DataFrame, caption: str, name: str, formats=None):
    """:func:`book_table` as a displayable Markdown object (the last expression of a cell)."""
    from IPython.display import Markdown

    return Markdown(book_table(frame, caption, name, formats))
