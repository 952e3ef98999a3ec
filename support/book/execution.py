"""Executing a chapter (papermill underneath) and recording the run: the notebook, one line of
``book/run_log.jsonl`` and the regenerated status page.

The committed chapters are default-parameter runs only. A run with any ``-p`` override goes to
a scratch folder (``_runs/`` or ``--out-dir``, never inside ``book/``), logs there, and its
``results.cached`` calls store what they compute under that folder's ``results/`` (through
``BOOK_RESULTS_SCRATCH``) -- unless ``replace_book=True`` says to replace the book's copy.

A finished run is never lost: the executed notebook is first staged under ``_runs/staged/``
(or a temporary folder when the repository cannot be written), and only removed from there
once the notebook is in place and its run-log line, which carries a checksum of the
notebook's outputs, is appended; ``check`` reports a notebook that differs from its last
logged run and any staged notebook left behind.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from support import files, paths
from support.book.parameters import chapter_defaults
from support.book.toc import BookError, chapter_name
from support.hardware import cpu_description
from support.results import git_commit, package_versions

RUN_LOG = "book/run_log.jsonl"
STATUS_PAGE = "book/status.md"
LOCK_FILE = ".book-executor.lock"
SCRATCH_DIR = "_runs"
STAGING_DIR = "_runs/staged"
VOLATILE_NB_KEYS = ("papermill",)
VOLATILE_CELL_KEYS = ("papermill", "execution")
DEFAULT_CELL_TIMEOUT_S = 1800
LOCK_TIMEOUT_S = 600


@dataclass
class RunRecord:
    """One line of the run log (``outputs_sha256``: see :func:`support.book.execution.outputs_checksum`)."""

    chapter: str
    date: str
    duration_s: float
    device: str
    cpu: str
    versions: dict
    commit: str
    parameters: dict
    outputs_sha256: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass
class RunPlan:
    """Where one execution writes: the notebook, its run-log line, and (for a non-default run)
    the folder its computed results go to; ``note`` says why a requested folder was not used."""

    target: Path
    log_path: Path
    scratch_results: Path | None
    note: str = ""

    @property
    def is_book(self) -> bool:
        """Whether this run replaces the book's committed copy (and regenerates the status)."""
        return self.scratch_results is None


def plan_run(
    root: Path,
    path: Path,
    parameters: dict,
    out_dir: Path | None = None,
    replace_book: bool = False,
) -> RunPlan:
    """Where the run of chapter ``path`` with ``parameters`` goes (see the module docstring)."""
    if not parameters or replace_book:
        return RunPlan(path, root / RUN_LOG, None)
    book_dir = (root / "book").resolve()
    note = ""
    folder = Path(out_dir).resolve() if out_dir is not None else root / SCRATCH_DIR
    if folder == book_dir or book_dir in folder.parents:
        note = (
            f"--out-dir {out_dir} is inside book/, where only default runs go: writing to "
            f"{SCRATCH_DIR}/ instead (--replace-book replaces the book's copy)"
        )
        folder = root / SCRATCH_DIR
    return RunPlan(
        folder / path.name, folder / "run_log.jsonl", folder / "results", note
    )


def strip_volatile(nb) -> None:
    """Remove papermill's and per-cell timing metadata that would make every run a diff."""
    for key in VOLATILE_NB_KEYS:
        nb.metadata.pop(key, None)
    for cell in nb.cells:
        for key in VOLATILE_CELL_KEYS:
            cell.metadata.pop(key, None)


def merge_streams(nb) -> None:
    """Join consecutive outputs of one stream (stdout or stderr) into one output.

    The kernel flushes long prints in pieces, so one printed table can arrive as several
    outputs, which the HTML shows as separate boxes and which differ between otherwise identical
    runs; merged, a chapter re-executed without changes is byte-identical.
    """
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        merged = []
        for out in cell.get("outputs", []):
            if (
                out.get("output_type") == "stream"
                and merged
                and merged[-1].get("output_type") == "stream"
                and merged[-1].get("name") == out.get("name")
            ):
                merged[-1]["text"] = merged[-1]["text"] + out["text"]
            else:
                merged.append(out)
        cell["outputs"] = merged


def normalise(nb) -> None:
    """Everything the executor does to an executed notebook before storing it."""
    strip_volatile(nb)
    merge_streams(nb)


def outputs_checksum(nb) -> str:
    """SHA-256 of a notebook's code-cell outputs: what its run-log line vouches for (prose edits
    after the run do not change it)."""
    outputs = [c.get("outputs", []) for c in nb.cells if c.cell_type == "code"]
    return hashlib.sha256(json.dumps(outputs, sort_keys=True).encode()).hexdigest()


def _gpu_name() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def source_commit(root: Path) -> str:
    """The commit chapters are executed from, taken once before a batch of executions starts.

    The run log, the status page, the chapter notebooks and the executor's own scratch files
    do not count as changes: executing modifies them, and they are committed with their
    outputs afterwards. Everything else -- the library (new files included), the stored
    results, the configuration -- must be committed for the commit to identify what a run used.
    """
    return git_commit(
        root, ignore=(RUN_LOG, STATUS_PAGE, "book/*.ipynb", LOCK_FILE, SCRATCH_DIR)
    )


@contextlib.contextmanager
def executor_lock(root: Path):
    """Exclusive lock (``filelock``) around the writes of one execution: two runs of the
    executor never interleave their notebook, run-log and status-page updates."""
    from filelock import FileLock

    with FileLock(root / LOCK_FILE, timeout=LOCK_TIMEOUT_S):
        yield


@contextlib.contextmanager
def _scratch_results(folder: Path | None):
    """``BOOK_RESULTS_SCRATCH`` set to ``folder`` (unset for a run of the book) while the
    kernel starts: it inherits the executor's environment."""
    name = paths.SCRATCH_RESULTS_ENV
    saved = os.environ.pop(name, None)
    if folder is not None:
        os.environ[name] = str(folder)
    try:
        yield
    finally:
        os.environ.pop(name, None)
        if saved is not None:
            os.environ[name] = saved


def _run_papermill(root: Path, path: Path, parameters: dict, timeout_s, plan: RunPlan):
    """Execute ``path`` into a private temporary folder; return the executed notebook and the
    duration, or raise a one-line BookError naming the failing cell."""
    import nbformat
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    rel = path.relative_to(root)
    with (
        tempfile.TemporaryDirectory() as tmpdir,
        _scratch_results(plan.scratch_results),
    ):
        tmp = Path(tmpdir) / path.name
        start = time.perf_counter()
        try:
            pm.execute_notebook(
                str(path),
                str(tmp),
                parameters=parameters,
                cwd=str(path.parent),
                kernel_name="python3",
                execution_timeout=timeout_s,
                progress_bar=False,
                log_output=False,
                report_mode=False,
            )
        except PapermillExecutionError as e:
            first = e.evalue.splitlines()[0] if e.evalue else ""
            raise BookError(
                f"{rel}: cell {e.cell_index} (execution count {e.exec_count}) "
                f"raised {e.ename}: {first}"
            ) from None
        except Exception as e:
            # kernel death, cell timeout, ...: still one line naming the chapter
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise BookError(
                f"{rel}: execution failed with {type(e).__name__}: {first}"
            ) from None
        duration = time.perf_counter() - start
        return nbformat.read(tmp, as_version=4), duration


def stage(root: Path, nb, name: str) -> Path:
    """Write the executed notebook where it survives whatever happens next (``_runs/staged/``,
    or a new temporary folder when the repository cannot be written); return its path."""
    import nbformat

    text = nbformat.writes(nb) + "\n"
    try:
        folder = root / STAGING_DIR
        folder.mkdir(parents=True, exist_ok=True)
        fd, staged = tempfile.mkstemp(
            prefix=f"{Path(name).stem}.", suffix=".ipynb", dir=folder
        )
    except OSError:
        folder = Path(tempfile.mkdtemp(prefix="book-run-"))
        fd, staged = tempfile.mkstemp(
            prefix=f"{Path(name).stem}.", suffix=".ipynb", dir=folder
        )
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    return Path(staged)


def _append_line(path: Path, line: str) -> None:
    """Append ``line`` to the run log at ``path``, flushed to disk; a folder, pipe or socket
    there is refused, and a symbolic link is not followed (O_NOFOLLOW)."""
    files.check_target(path, "run log")
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    with os.fdopen(os.open(path, flags, 0o644), "a") as log:
        log.write(line + "\n")
        log.flush()
        os.fsync(log.fileno())


def record_run(root: Path, plan: RunPlan, staged: Path, record: RunRecord) -> None:
    """Move the staged notebook into place, append its run-log line and (for a run of the book)
    regenerate the status page, under the executor lock. The status text is built first (it
    lists unreadable entries rather than failing), so nothing is replaced when it fails."""
    from support.book.report import status_page

    plan.target.parent.mkdir(parents=True, exist_ok=True)
    with executor_lock(root):
        status = status_page(root, pending=asdict(record)) if plan.is_book else None
        files.write_bytes(plan.target, staged.read_bytes(), "chapter")
        _append_line(plan.log_path, record.to_json())
        if status is not None:
            files.write_text(root / STATUS_PAGE, status, "status page")


def execute_chapter(
    root: Path,
    path: Path,
    parameters: dict | None = None,
    timeout_s: int = DEFAULT_CELL_TIMEOUT_S,
    out_dir: Path | None = None,
    commit: str | None = None,
    replace_book: bool = False,
) -> Path:
    """Execute one chapter; return where the executed notebook went (see the module docstring
    and :func:`support.book.execution.plan_run`).

    ``parameters`` maps names to values (already of the defaults' types, see
    :func:`support.book.parameters.coerce_parameter`). ``commit`` is what the run log records
    (default: :func:`source_commit` now); the command line takes it once before executing
    several chapters, so that rewriting one chapter does not mark the next one's source as
    modified. On failure of the chapter nothing is written; when recording a finished run
    fails, the BookError names where its notebook is kept.
    """
    import nbformat

    commit = commit or source_commit(root)
    parameters = parameters or {}
    rel = path.relative_to(root)
    known = chapter_defaults(nbformat.read(path, as_version=4), rel)
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise BookError(
            f"{rel}: unknown parameter(s) {unknown} (the chapter's parameters: {sorted(known)})"
        )
    plan = plan_run(root, path, parameters, out_dir, replace_book)
    executed, duration = _run_papermill(root, path, parameters, timeout_s, plan)
    normalise(executed)
    record = RunRecord(
        chapter=chapter_name(root, path),
        date=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        duration_s=round(duration, 1),
        device=_gpu_name() or "CPU only",
        cpu=cpu_description(),
        versions=package_versions(),
        commit=commit,
        parameters=parameters,
        outputs_sha256=outputs_checksum(executed),
    )
    staged = stage(root, executed, path.name)
    try:
        record_run(root, plan, staged, record)
    except Exception as e:
        raise BookError(
            f"{rel}: the run finished but could not be recorded ({type(e).__name__}: {e}); "
            f"its executed notebook is kept at {staged}"
        ) from None
    staged.unlink()
    return plan.target
