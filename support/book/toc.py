"""The book's table of contents (``_toc.yml``): which pages and notebook chapters there are."""

from __future__ import annotations

from pathlib import Path

import yaml


class BookError(Exception):
    """A problem with the book's sources that the user must fix (reported as one line)."""


def toc_entries(root: Path) -> list[str]:
    """Every ``file:`` entry of ``_toc.yml`` (the root page first), without extension."""
    toc_path = root / "_toc.yml"
    if not toc_path.exists():
        raise BookError(f"no _toc.yml in {root}")
    try:
        toc = yaml.safe_load(toc_path.read_text())
    except yaml.YAMLError as e:
        raise BookError(f"_toc.yml is not valid YAML: {e}") from e
    entries = [toc["root"]] if toc and "root" in toc else []

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                entries.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in (toc or {}).items() if k != "root"})
    return [
        str(Path(e).with_suffix("")) if Path(e).suffix in (".md", ".ipynb") else e
        for e in entries
    ]


def entry_path(root: Path, entry: str) -> Path | None:
    """The source file of a ``_toc.yml`` entry (``.ipynb`` or ``.md``), or None if missing."""
    for suffix in (".ipynb", ".md"):
        path = root / f"{entry}{suffix}"
        if path.exists():
            return path
    return None


def notebook_chapters(root: Path) -> list[Path]:
    """The notebook chapters listed in ``_toc.yml``, in book order."""
    paths = [entry_path(root, e) for e in toc_entries(root)]
    return [p for p in paths if p is not None and p.suffix == ".ipynb"]


def chapter_name(root: Path, path: Path) -> str:
    """A chapter's name in the run log and status page: ``book/finite_width``."""
    return str(path.relative_to(root).with_suffix(""))


def resolve_chapter(root: Path, name: str) -> Path:
    """Find a notebook chapter by name: ``finite_width``, ``book/finite_width`` or a path."""
    chapters = notebook_chapters(root)
    wanted = Path(name)
    for path in chapters:
        rel = path.relative_to(root)
        if wanted in (rel, rel.with_suffix(""), Path(rel.stem), Path(rel.name)) or (
            wanted.is_absolute() and wanted == path
        ):
            return path
    known = ", ".join(p.stem for p in chapters) or "none"
    raise BookError(
        f"unknown chapter {name[:80]!r}: not a notebook chapter in _toc.yml (known: {known})"
    )
