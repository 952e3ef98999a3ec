"""The chapter executor and the book's hygiene checks (``python -m support.book``).

Chapters are executed only here (papermill underneath), never by Jupyter Book, so that the
committed notebooks are exactly the default-parameter runs that the HTML shows and that
``pytest --nbval book/`` compares against. *How to run this book* (``book/how_to_run.md``)
describes the workflow; the *Status* page is generated from the run log this module keeps.

Commands::

    python -m support.book execute [CHAPTER ...] [-p NAME VALUE ...] [--timeout S]
                                   [--out-dir DIR] [--replace-book] [--allow-dirty]
    python -m support.book check
    python -m support.book status
    python -m support.book repository URL      # '' while the book is unpublished

``execute`` runs each chapter (all notebook chapters of ``_toc.yml`` by default) into a
private temporary folder with the notebook's folder as working directory and a per-cell
timeout. On success it strips volatile metadata and merges split stream outputs (so an
unchanged chapter re-executes byte-identically), then, under a lock, moves the notebook into
place, appends duration, device and versions to ``book/run_log.jsonl`` and regenerates
``book/status.md``; on failure the committed notebook is untouched, the failing cell is named
and the exit code is 1. With ``-p`` the run is a non-default one (e.g. ``-p SCALE paper``): it
is written to ``--out-dir`` (default ``_runs/``; a folder inside ``book/`` is replaced by
``_runs/``) and logged there, and what its ``results.cached`` calls compute is stored under
that folder's ``results/`` -- never over the committed chapter or a stored result of the book,
unless ``--replace-book`` says so. ``-p`` values are plain literals checked against the type of
the parameter's default (:func:`coerce_parameter`); nothing else can reach the kernel.

The package is split by job: :mod:`~support.book.toc` (``_toc.yml``),
:mod:`~support.book.parameters` (the parameters cell), :mod:`~support.book.execution`
(running and recording a chapter), :mod:`~support.book.report` (status page and hygiene
checks), :mod:`~support.book.colab` (the public repository and the Colab set-up cell) and
:mod:`~support.book.cli` (the command line).
"""

from support.book.cli import main
from support.book.colab import (
    COLAB_URL,
    bootstrap_source,
    configured_repository,
    set_repository,
)
from support.book.execution import (
    DEFAULT_CELL_TIMEOUT_S,
    LOCK_FILE,
    RUN_LOG,
    STATUS_PAGE,
    RunRecord,
    execute_chapter,
    merge_streams,
    normalise,
    source_commit,
    strip_volatile,
)
from support.book.parameters import coerce_parameter, parameter_values, parameters_cells
from support.book.report import check, check_notebook, read_run_log, status_page
from support.book.toc import (
    BookError,
    entry_path,
    notebook_chapters,
    resolve_chapter,
    toc_entries,
)

__all__ = [
    "COLAB_URL",
    "DEFAULT_CELL_TIMEOUT_S",
    "LOCK_FILE",
    "RUN_LOG",
    "STATUS_PAGE",
    "BookError",
    "RunRecord",
    "bootstrap_source",
    "check",
    "check_notebook",
    "coerce_parameter",
    "configured_repository",
    "entry_path",
    "execute_chapter",
    "main",
    "merge_streams",
    "normalise",
    "notebook_chapters",
    "parameter_values",
    "parameters_cells",
    "read_run_log",
    "resolve_chapter",
    "set_repository",
    "source_commit",
    "status_page",
    "strip_volatile",
    "toc_entries",
]
