"""Values read off the paper's figures: one data file, ``book/paper_values.json``, read by :func:`load`.

The paper (arXiv:2103.10427) gives most of its results only as figures, so the book compares
with numbers read off those figures by eye. They live in one file so that no chapter retypes
them and so that each carries what a reader needs to judge it: the paper version, the figure
and panel, how it was read and its read-off uncertainty. The appendix *Values read off the
paper's figures* (``book/paper_values.ipynb``) shows the whole file as tables.

The file is plain JSON::

    {"paper": str, "source": str,
     "figures": {KEY: {"version": "v1" | "v4", "figure": str, "panel": str, "how_read": str,
                       "depths": [int, ...]                      (optional: the depths plotted),
                       "series": {NAME: {"by": str, "unit": str, "uncertainty": number >= 0,
                                         "values": VALUE | {LABEL: VALUE},
                                         "note": str              (optional)}}}}}

A VALUE is a number or a range ``[low, high]`` (what the figure only bounds). When ``by`` is
``"none"`` the series is one VALUE; when it is ``"depth"`` the labels are depths and come back
as ints; otherwise they stay strings (an activation, an optimizer, a split).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from numbers import Real
from pathlib import Path

from support import paths

FILE = "book/paper_values.json"
VERSIONS = ("v1", "v4")


class PaperValuesError(ValueError):
    """The paper-values file does not have the documented structure (the message says where)."""


@dataclass(frozen=True)
class Series:
    """One quantity read off one figure: a value or ``{label: value}``, a value being a float
    or a ``(low, high)`` range."""

    by: str
    unit: str
    uncertainty: float
    values: object
    note: str = ""


@dataclass(frozen=True)
class Figure:
    """One figure (or panel group) of the paper and the series read off it."""

    version: str
    figure: str
    panel: str
    how_read: str
    series: dict
    depths: tuple = ()


def _value(raw, where: str):
    if isinstance(raw, Real) and not isinstance(raw, bool):
        return float(raw)
    if (
        isinstance(raw, list)
        and len(raw) == 2
        and all(isinstance(v, Real) and not isinstance(v, bool) for v in raw)
        and raw[0] <= raw[1]
    ):
        return (float(raw[0]), float(raw[1]))
    raise PaperValuesError(
        f"{where}: a value must be a number or a range [low, high], got {raw!r}"
    )


def _fields(raw, required: dict, optional: dict, where: str) -> dict:
    if not isinstance(raw, dict):
        raise PaperValuesError(f"{where}: expected an object, got {type(raw).__name__}")
    unknown = set(raw) - set(required) - set(optional)
    if unknown:
        raise PaperValuesError(f"{where}: unknown field(s) {sorted(unknown)}")
    for name, kind in {**required, **optional}.items():
        if name not in raw:
            if name in required:
                raise PaperValuesError(f"{where}: missing field {name!r}")
            continue
        if not isinstance(raw[name], kind) or isinstance(raw[name], bool):
            raise PaperValuesError(
                f"{where}.{name}: expected {kind.__name__}, got {type(raw[name]).__name__}"
            )
    return raw


def _series(raw, where: str) -> Series:
    raw = _fields(
        raw,
        {"by": str, "unit": str, "uncertainty": Real, "values": object},
        {"note": str},
        where,
    )
    if raw["uncertainty"] < 0:
        raise PaperValuesError(f"{where}.uncertainty: must be >= 0")
    if raw["by"] == "none":
        values = _value(raw["values"], f"{where}.values")
    else:
        if not isinstance(raw["values"], dict) or not raw["values"]:
            raise PaperValuesError(
                f"{where}.values: expected a non-empty object of {raw['by']} -> value"
            )
        values = {}
        for label, v in raw["values"].items():
            key = label
            if raw["by"] == "depth":
                if not label.isdigit() or int(label) < 1:
                    raise PaperValuesError(
                        f"{where}.values: depth {label!r} is not a positive integer"
                    )
                key = int(label)
            values[key] = _value(v, f"{where}.values[{label!r}]")
    return Series(
        raw["by"], raw["unit"], float(raw["uncertainty"]), values, raw.get("note", "")
    )


def load(path=None) -> dict[str, Figure]:
    """Read and check the paper-values file (default: ``book/paper_values.json`` of the
    book's repository); ``{figure key: Figure}`` in file order. Raises
    :class:`PaperValuesError` naming the first problem when the structure is not the
    documented one."""
    path = Path(path) if path is not None else paths.repository_root() / FILE
    try:
        raw = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise PaperValuesError(f"{path} is not valid JSON: {e}") from e
    raw = _fields(raw, {"paper": str, "source": str, "figures": dict}, {}, str(path))
    figures = {}
    for key, fig in raw["figures"].items():
        where = f"figures[{key!r}]"
        fig = _fields(
            fig,
            {
                "version": str,
                "figure": str,
                "panel": str,
                "how_read": str,
                "series": dict,
            },
            {"depths": list},
            where,
        )
        if fig["version"] not in VERSIONS:
            raise PaperValuesError(
                f"{where}.version: must be one of {VERSIONS}, got {fig['version']!r}"
            )
        depths = fig.get("depths", [])
        if not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in depths
        ):
            raise PaperValuesError(f"{where}.depths: must be positive integers")
        if not fig["series"]:
            raise PaperValuesError(f"{where}.series: no series")
        series = {
            name: _series(s, f"{where}.series[{name!r}]")
            for name, s in fig["series"].items()
        }
        figures[key] = Figure(
            fig["version"],
            fig["figure"],
            fig["panel"],
            fig["how_read"],
            series,
            tuple(depths),
        )
    return figures
