"""Where the book's files live: the repository root, stored results, and caches.

Paths are found from the working directory (or named by environment variables), never from the
location of the installed package, so ``support`` works the same from an editable install, a
wheel, or Colab's ``pip install --no-deps``:

* ``BOOK_ROOT`` names the repository; otherwise the nearest folder at or above the working
  directory that holds ``_toc.yml`` and ``book/`` is it (chapters run in ``book/``, commands at
  the root, so both find it).
* ``BOOK_RESULTS`` overrides the stored-results folder (default ``<root>/book/results``).
* ``BOOK_RESULTS_SCRATCH``, when set, is where ``results.cached`` stores what it computes
  instead of the stored-results folder (the executor sets it for runs with non-default
  parameters, so they never replace a result of the book).
* ``BOOK_CACHE`` overrides the cache folder for decoded datasets and training checkpoints
  (default ``<root>/.cache``, or ``~/.cache/lowrank-simplicity-book`` outside a repository).
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT_ENV, RESULTS_ENV, CACHE_ENV = "BOOK_ROOT", "BOOK_RESULTS", "BOOK_CACHE"
SCRATCH_RESULTS_ENV = "BOOK_RESULTS_SCRATCH"


def find_repository_root(start=None) -> Path | None:
    """The book's repository root (see the module docstring), or None when there is none."""
    if os.environ.get(ROOT_ENV):
        return Path(os.environ[ROOT_ENV]).expanduser().resolve()
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").is_file() and (folder / "book").is_dir():
            return folder
    return None


def repository_root(start=None) -> Path:
    """Like :func:`find_repository_root`, but a FileNotFoundError saying what to do when there is none."""
    root = find_repository_root(start)
    if root is None:
        raise FileNotFoundError(
            f"not inside the book's repository (no folder with _toc.yml and book/ at or above "
            f"{Path(start or Path.cwd()).resolve()}): run from the repository or set {ROOT_ENV}"
        )
    return root


def results_dir() -> Path:
    """Folder of stored results: ``BOOK_RESULTS``, else ``<repository root>/book/results``."""
    if os.environ.get(RESULTS_ENV):
        return Path(os.environ[RESULTS_ENV]).expanduser()
    return repository_root() / "book" / "results"


def scratch_results_dir() -> Path | None:
    """Where computed results go instead of the stored-results folder (``BOOK_RESULTS_SCRATCH``),
    or None for a default run."""
    value = os.environ.get(SCRATCH_RESULTS_ENV)
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """Folder for caches: ``BOOK_CACHE``, else ``<repository root>/.cache``, else a per-user folder."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    root = find_repository_root()
    if root is not None:
        return root / ".cache"
    return Path.home() / ".cache" / "lowrank-simplicity-book"
