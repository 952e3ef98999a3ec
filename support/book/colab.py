"""The book's public repository and the Colab set-up cell every chapter starts with
(``python -m support.book repository URL``)."""

from __future__ import annotations

import json
import re
import urllib.parse
from pathlib import Path

import yaml

from support import files
from support.book.toc import BookError, notebook_chapters

BOOTSTRAP_MARKER = "REPOSITORY = "
COLAB_URL = "https://colab.research.google.com"
_URL_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&()*+,;=%]+")
"""Characters a URL may hold unescaped (RFC 3986); quotes, backslashes, spaces and control
characters are not among them."""


def bootstrap_source(repository: str) -> str:
    """The first cell of every chapter (tagged ``remove-cell``): on Colab it clones the book's
    repository, installs ``support`` without touching Colab's own torch, and moves into
    ``book/``. ``BOOK_REPO`` overrides the repository and ``BOOK_BOOTSTRAP=1`` runs it elsewhere
    (the project's tests imitate Colab that way)."""
    return f"""# On Colab only: fetch the book's repository, install its library, keep Colab's torch.
import os
import subprocess
import sys

# Set by `python -m support.book repository URL`:
{BOOTSTRAP_MARKER}{repository!r}
if "google.colab" in sys.modules or os.environ.get("BOOK_BOOTSTRAP") == "1":
    url = os.environ.get("BOOK_REPO", REPOSITORY)
    if not url:
        raise RuntimeError("no public repository is configured for this book: set "
                           "the environment variable BOOK_REPO to its git URL")
    checkout = os.environ.get("BOOK_CHECKOUT", "/content/book-repo")
    if not os.path.isdir(checkout):
        clone = ["git", "clone", "-q", "--depth", "1", url, checkout]
        subprocess.run(clone, check=True)
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "--no-deps", "-e", checkout], check=True)
    subprocess.run([*pip, "cma", "myst-nb"], check=True)
    sys.path.insert(0, checkout)  # this kernel started before the install
    os.chdir(os.path.join(checkout, "book"))"""


def configured_repository(root: Path) -> str:
    """The public repository URL set in ``_config.yml`` (empty while the book is unpublished or
    has no configuration)."""
    path = root / "_config.yml"
    if not path.exists():
        return ""
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise BookError(f"_config.yml is not valid YAML: {e}") from e
    return str((config.get("repository") or {}).get("url") or "")


def bootstrap_cell(nb):
    """The chapter's one Colab set-up cell, or None when it has none or several."""
    cells = [
        c
        for c in nb.cells
        if c.cell_type == "code"
        and BOOTSTRAP_MARKER in c.source
        and "remove-cell" in c.metadata.get("tags", [])
    ]
    return cells[0] if len(cells) == 1 else None


def check_repository_url(url: str) -> str:
    """``url`` if it is empty or an ``https://host/...`` URL of plain URL characters; BookError
    naming the problem otherwise (a quote, backslash, space or newline would break the YAML
    configuration or the set-up cell)."""
    if not url:
        return url
    shown = url if len(url) <= 80 else url[:80] + "..."
    if not _URL_CHARACTERS.fullmatch(url):
        bad = sorted({c for c in url if not _URL_CHARACTERS.fullmatch(c)})
        raise BookError(
            f"repository URL {shown!r} holds characters a URL cannot hold unescaped: {bad}"
        )
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" or not parts.netloc:
        raise BookError(f"repository URL must be https://HOST/PATH, got {shown!r}")
    return url


def _configured_text(text: str, url: str) -> str:
    """``_config.yml`` text with the repository settings replaced line by line (its comments
    kept); each value is a JSON string, which YAML reads as the same string."""
    replacements = {
        "url": json.dumps(url),
        "use_repository_button": json.dumps(bool(url)),
        "colab_url": json.dumps(COLAB_URL if url else ""),
    }
    lines = []
    for line in text.splitlines():
        key = line.strip().split(":", 1)[0]
        if key in replacements and line.startswith("  "):
            line = f"{line[: len(line) - len(line.lstrip())]}{key}: {replacements[key]}"
        lines.append(line)
    new = "\n".join(lines) + "\n"
    try:
        parsed = yaml.safe_load(new) or {}
    except (
        yaml.YAMLError
    ) as e:  # pragma: no cover - the values above are always valid YAML
        raise BookError(f"_config.yml would not be valid YAML: {e}") from e
    if str((parsed.get("repository") or {}).get("url") or "") != url:
        raise BookError(
            "_config.yml: could not set repository.url (keep its 'repository:' block)"
        )
    return new


def set_repository(root: Path, url: str) -> None:
    """Make ``url`` the book's public repository: ``_config.yml`` (URL, repository button, Colab
    launch buttons; all off when ``url`` is empty) and every chapter's Colab set-up cell.

    Everything is validated and prepared first; then each file is replaced atomically, so a
    refused URL changes nothing."""
    import nbformat

    check_repository_url(url)
    config_path = root / "_config.yml"
    config_text = _configured_text(config_path.read_text(), url)
    notebooks = []
    for path in notebook_chapters(root):
        nb = nbformat.read(path, as_version=4)
        cell = bootstrap_cell(nb)
        if cell is None:
            raise BookError(
                f"{path.relative_to(root)}: no Colab set-up cell (tagged remove-cell) to update"
            )
        cell.source = bootstrap_source(url)
        notebooks.append((path, nbformat.writes(nb) + "\n"))
    files.write_text(config_path, config_text, "book configuration")
    for path, text in notebooks:
        files.write_text(path, text, "chapter")
