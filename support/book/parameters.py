"""A chapter's ``parameters`` cell: its plain-literal defaults, and ``-p NAME VALUE`` overrides
checked against them (nothing but a plain value can reach the kernel)."""

from __future__ import annotations

import ast
from pathlib import Path

from support.book.toc import BookError

_PLAIN_TYPES = (str, int, float, bool, type(None))
_SHOWN = 60
"""Characters of a refused value quoted back in an error (a value can be kilobytes long)."""


def parameters_cells(nb) -> list:
    """The code cells of ``nb`` tagged ``parameters`` (a chapter must have exactly one)."""
    return [
        c
        for c in nb.cells
        if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])
    ]


def chapter_defaults(nb, rel: Path | str) -> dict:
    """Names and default values of the one parameters cell of notebook ``nb`` (``rel`` names it
    in errors); BookError unless there is exactly one and it holds plain literals."""
    cells = parameters_cells(nb)
    if len(cells) != 1:
        raise BookError(
            f"{rel}: needs exactly one cell tagged 'parameters', found {len(cells)}"
        )
    try:
        return parameter_values(cells[0].source)
    except BookError as e:
        raise BookError(f"{rel}: {e}") from None


def parameter_values(cell_source: str) -> dict:
    """Names and values of a ``parameters`` cell; raise BookError unless it holds plain literals."""
    try:
        tree = ast.parse(cell_source)
    except SyntaxError as e:
        raise BookError(f"parameters cell is not valid Python: {e}") from e
    values = {}
    for stmt in tree.body:
        if not (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
        ):
            raise BookError(
                f"parameters cell line {stmt.lineno}: only 'NAME = literal' assignments are allowed"
            )
        try:
            values[stmt.targets[0].id] = ast.literal_eval(stmt.value)
        except ValueError as e:
            raise BookError(
                f"parameters cell line {stmt.lineno}: {stmt.targets[0].id} is not a plain literal"
            ) from e
    return values


def overrides(nb, rel: Path | str, pairs) -> dict:
    """``-p NAME VALUE`` pairs as values of the types of the chapter's defaults."""
    defaults = chapter_defaults(nb, rel)
    unknown = sorted({name for name, _ in pairs} - set(defaults))
    if unknown:
        raise BookError(
            f"{rel}: unknown parameter(s) {[u[:_SHOWN] for u in unknown]} "
            f"(the chapter's parameters: {sorted(defaults)})"
        )
    return {name: coerce_parameter(name, text, defaults[name]) for name, text in pairs}


def _check_plain(value, what: str) -> None:
    """Refuse anything but strings, numbers, booleans, None and lists/dicts of them."""
    if isinstance(value, list):
        for item in value:
            _check_plain(item, what)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise BookError(
                    f"{what}: dict keys must be strings, got {type(key).__name__}"
                )
            _check_plain(item, what)
    elif not isinstance(value, _PLAIN_TYPES):
        raise BookError(
            f"{what}: a {type(value).__name__} value is not accepted; only strings, numbers, "
            "booleans, None and lists or dicts of them"
        )


def coerce_parameter(name: str, text: str, default):
    """The value of ``-p NAME TEXT`` for a parameter whose default is ``default``.

    TEXT is read as a Python literal (``3``, ``0.5``, ``True``, ``[1, 2]``, ``'paper'``) and
    otherwise taken as a plain string; no other syntax is interpreted (in particular no YAML
    tags), so nothing but a plain value can reach the chapter. The value must fit the default's
    type: a bool default takes ``True``/``False`` (``true``/``false`` too), an int default an
    integer, a float default any number, a str default the text itself, a list or dict default
    a list or dict; a ``None`` default takes any plain value. Anything else is a BookError
    (quoting at most the first few dozen characters of TEXT).
    """
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        value = text
    if isinstance(value, tuple):
        value = list(value)
    shown = (
        text if len(text) <= _SHOWN else f"{text[:_SHOWN]}... ({len(text)} characters)"
    )
    what = f"parameter {name}={shown!r}"
    _check_plain(value, what)
    if isinstance(default, str):
        return text
    return _of_the_defaults_type(value, default, what)


def _of_the_defaults_type(value, default, what: str):
    """``value`` as the type of ``default`` (see :func:`coerce_parameter`), or BookError."""
    if isinstance(default, bool):
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise BookError(
                f"{what}: expected True or False (the default is {default!r})"
            )
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise BookError(f"{what}: expected an integer (the default is {default!r})")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BookError(f"{what}: expected a number (the default is {default!r})")
        try:
            return float(value)
        except OverflowError:
            raise BookError(f"{what}: too large for a float") from None
    elif isinstance(default, (list, dict)) and not isinstance(value, type(default)):
        raise BookError(
            f"{what}: expected a {type(default).__name__} (the default is {default!r})"
        )
    return value
