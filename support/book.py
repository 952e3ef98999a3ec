"""The chapter executor and the book's hygiene checks (``python -m support.book``).

Chapters are executed only here (papermill underneath), never by Jupyter Book, so that the
committed notebooks are exactly the default-parameter runs that the HTML shows and that
``pytest --nbval book/`` compares against. *How to run this book* (``book/how_to_run.md``)
describes the workflow; the *Status* page is generated from the run log this module keeps.

Commands::

    python -m support.book execute [CHAPTER ...] [-p NAME VALUE ...] [--timeout S] [--out-dir DIR]
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
is written to ``--out-dir`` (default ``_runs/``) and logged there, never over the committed
chapter. ``-p`` values are plain literals checked against the type of the parameter's default
(:func:`coerce_parameter`); nothing else can reach the kernel.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import datetime as _dt
import fcntl
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from support import paths
from support.hardware import cpu_description
from support.results import ResultError, git_commit, load, package_versions

RUN_LOG = "book/run_log.jsonl"
STATUS_PAGE = "book/status.md"
LOCK_FILE = ".book-executor.lock"
VOLATILE_NB_KEYS = ("papermill",)
VOLATILE_CELL_KEYS = ("papermill", "execution")
DEFAULT_CELL_TIMEOUT_S = 1800
MAX_CODE_LINE = 88


class BookError(Exception):
    """A problem with the book's sources that the user must fix (reported as one line)."""


# --------------------------------------------------------------------------- table of contents
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
        f"unknown chapter {name!r}: not a notebook chapter in _toc.yml (known: {known})"
    )


# --------------------------------------------------------------------------- parameters cell
def parameters_cells(nb) -> list:
    return [
        c
        for c in nb.cells
        if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])
    ]


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


_PLAIN_TYPES = (str, int, float, bool, type(None))


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
    a list or dict; a ``None`` default takes any plain value. Anything else is a BookError.
    """
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        value = text
    if isinstance(value, tuple):
        value = list(value)
    what = f"parameter {name}={text!r}"
    _check_plain(value, what)
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
        value = float(value)
    elif isinstance(default, str):
        value = text
    elif isinstance(default, (list, dict)) and not isinstance(value, type(default)):
        raise BookError(
            f"{what}: expected a {type(default).__name__} (the default is {default!r})"
        )
    return value


# --------------------------------------------------------------------------- execution
@dataclass
class RunRecord:
    """One line of the run log."""

    chapter: str
    date: str
    duration_s: float
    device: str
    cpu: str
    versions: dict
    commit: str
    parameters: dict

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


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


def _gpu_name() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def source_commit(root: Path) -> str:
    """The commit chapters are executed from, taken once before a batch of executions starts.

    The run log, the status page and the chapter notebooks do not count as changes: executing
    modifies them, and they are committed with their outputs afterwards. Everything else --
    the library, the stored results, the configuration -- must be committed for the commit
    to identify what a run used.
    """
    return git_commit(root, ignore=(RUN_LOG, STATUS_PAGE, "book/*.ipynb"))


@contextlib.contextmanager
def _executor_lock(root: Path):
    """Exclusive lock (``flock``) around the writes of one execution: two runs of the executor
    never interleave their notebook, run-log and status-page updates."""
    with open(root / LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _replace_atomically(target: Path, write) -> None:
    """``write(tmp_path)`` to a unique temporary file beside ``target``, then rename it over ``target``."""
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
    )
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def execute_chapter(
    root: Path,
    path: Path,
    parameters: dict | None = None,
    timeout_s: int = DEFAULT_CELL_TIMEOUT_S,
    out_dir: Path | None = None,
    commit: str | None = None,
) -> Path:
    """Execute one chapter; return where the executed notebook went (see module docstring).

    ``parameters`` maps names to values (already of the defaults' types, see
    :func:`coerce_parameter`). ``commit`` is what the run log records (default:
    :func:`source_commit` now); ``main`` takes it once before executing several chapters, so that
    rewriting one chapter does not mark the next one's source as modified. The chapter runs
    into a private temporary folder; only after it succeeded are the notebook, the run log and
    the status page updated, under a lock, with the status text built before anything is
    replaced.
    """
    commit = commit or source_commit(root)
    import nbformat
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    parameters = parameters or {}
    nb = nbformat.read(path, as_version=4)
    cells = parameters_cells(nb)
    if len(cells) != 1:
        raise BookError(
            f"{path.relative_to(root)}: needs exactly one cell tagged 'parameters', found {len(cells)}"
        )
    known = parameter_values(cells[0].source)
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise BookError(
            f"{path.relative_to(root)}: unknown parameter(s) {unknown} "
            f"(the chapter's parameters: {sorted(known)})"
        )

    if parameters:
        out_dir = Path(out_dir or root / "_runs")
        out_dir.mkdir(parents=True, exist_ok=True)
        target, log_path = out_dir / path.name, out_dir / "run_log.jsonl"
    else:
        target, log_path = path, root / RUN_LOG

    with tempfile.TemporaryDirectory() as tmpdir:
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
            raise BookError(
                f"{path.relative_to(root)}: cell {e.cell_index} (execution count {e.exec_count}) "
                f"raised {e.ename}: {e.evalue.splitlines()[0] if e.evalue else ''}"
            ) from None
        except (
            Exception
        ) as e:  # kernel death, cell timeout, ...: still one line naming the chapter
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise BookError(
                f"{path.relative_to(root)}: execution failed with {type(e).__name__}: {first}"
            ) from None
        duration = time.perf_counter() - start
        executed = nbformat.read(tmp, as_version=4)
    normalise(executed)
    record = RunRecord(
        chapter=str(path.relative_to(root).with_suffix("")),
        date=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        duration_s=round(duration, 1),
        device=_gpu_name() or "CPU only",
        cpu=cpu_description(),
        versions=package_versions(),
        commit=commit,
        parameters=parameters,
    )
    with _executor_lock(root):
        status = None if parameters else status_page(root, pending=record.__dict__)
        _replace_atomically(target, lambda tmp: nbformat.write(executed, tmp))
        with open(log_path, "a") as log:
            log.write(record.to_json() + "\n")
        if status is not None:
            _replace_atomically(root / STATUS_PAGE, lambda tmp: tmp.write_text(status))
    return target


# --------------------------------------------------------------------------- repository setting
BOOTSTRAP_MARKER = "REPOSITORY = "
COLAB_URL = "https://colab.research.google.com"


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


def _bootstrap_cell(nb):
    cells = [
        c
        for c in nb.cells
        if c.cell_type == "code"
        and BOOTSTRAP_MARKER in c.source
        and "remove-cell" in c.metadata.get("tags", [])
    ]
    return cells[0] if len(cells) == 1 else None


def set_repository(root: Path, url: str) -> None:
    """Make ``url`` the book's public repository: ``_config.yml`` (URL, repository button, Colab
    launch buttons; all off when ``url`` is empty) and every chapter's Colab set-up cell."""
    import nbformat

    if url and not url.startswith("https://"):
        raise BookError(f"repository URL must start with https://, got {url!r}")
    config_path = root / "_config.yml"
    text = config_path.read_text()
    replacements = {
        "url": repr(url) if url else '""',
        "use_repository_button": str(bool(url)).lower(),
        "colab_url": COLAB_URL if url else '""',
    }
    lines = []
    for line in text.splitlines():
        key = line.strip().split(":", 1)[0]
        if key in replacements and line.startswith("  "):
            line = f"{line[: len(line) - len(line.lstrip())]}{key}: {replacements[key]}"
        lines.append(line)
    config_path.write_text("\n".join(lines) + "\n")
    if configured_repository(root) != url:
        raise BookError(
            "_config.yml: could not set repository.url (keep its 'repository:' block)"
        )
    for path in notebook_chapters(root):
        nb = nbformat.read(path, as_version=4)
        cell = _bootstrap_cell(nb)
        if cell is None:
            raise BookError(
                f"{path.relative_to(root)}: no Colab set-up cell (tagged remove-cell) to update"
            )
        cell.source = bootstrap_source(url)
        _replace_atomically(path, lambda tmp, nb=nb: nbformat.write(nb, tmp))


# --------------------------------------------------------------------------- status page
def read_run_log(root: Path) -> list[dict]:
    """Records of the run log (BookError naming the line when one is unreadable)."""
    path = root / RUN_LOG
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise BookError(
                    f"{RUN_LOG} line {number} is not valid JSON ({e}); repair or remove it"
                ) from e
    return records


def _stored_result_rows(results_dir: Path) -> list[str]:
    rows = []
    for name in (
        sorted(p.stem for p in results_dir.glob("*.json"))
        if results_dir.exists()
        else []
    ):
        try:
            p = load(name, results_dir).provenance
        except (ResultError, KeyError, TypeError) as e:
            reason = str(e).replace("|", "/").replace(str(results_dir), "book/results")
            rows.append(f"| `{name}` | unreadable: {reason} | | | | |")
            continue
        wall = "" if p.get("wall_time_s") is None else f"{p['wall_time_s']:.0f}"
        rows.append(
            f"| `{name}` | {p['date']} | {p['device']} | {wall} | {p['seeds']} | `{p['commit']}` |"
        )
    return rows


def status_page(
    root: Path, results_dir: Path | None = None, pending: dict | None = None
) -> str:
    """Markdown of the Status page: the latest default run of each chapter (``pending``: a record
    about to be logged), and every stored result with its provenance (unreadable ones listed as
    such)."""
    results_dir = Path(results_dir) if results_dir else root / "book" / "results"
    latest = {}
    for record in read_run_log(root) + ([pending] if pending else []):
        if not record.get("parameters"):
            latest[record["chapter"]] = record
    lines = [
        "# Status",
        "",
        "When and where each chapter was last executed with its default parameters (the run the",
        "pages show), and the stored results of longer runs that chapters load. The page is",
        "regenerated whenever a chapter is executed.",
        "",
        "## Chapters",
        "",
        "| chapter | executed | duration (s) | GPU | CPU | torch | numpy | commit |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for chapter in [
        e
        for e in toc_entries(root)
        if (p := entry_path(root, e)) and p.suffix == ".ipynb"
    ]:
        r = latest.get(chapter)
        link = f"{{doc}}`/{chapter}`"
        if r is None:
            lines.append(f"| {link} | never | | | | | | |")
            continue
        v = r["versions"]
        lines.append(
            f"| {link} | {r['date']} | {r['duration_s']:.1f} | {r['device']} | {r['cpu']} "
            f"| {v.get('torch', '-')} | {v.get('numpy', '-')} | `{r['commit']}` |"
        )
    lines += [
        "",
        "## Stored results",
        "",
        "Runs too long for a chapter's default execution store their numbers under `book/results/`",
        "with provenance; the chapters load them and say so.",
        "",
    ]
    rows = _stored_result_rows(results_dir)
    if rows:
        lines += [
            "| result | computed | device | wall time (s) | seeds | commit |",
            "|---|---|---|---|---|---|",
        ]
        lines += rows
    else:
        lines.append("No stored results yet.")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- hygiene checks
def check_notebook(root: Path, path: Path) -> list[str]:
    """Problems of one executed chapter notebook (empty list when clean)."""
    import nbformat

    rel = path.relative_to(root)
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as e:  # unreadable JSON, wrong schema
        return [f"{rel}: cannot be read as a notebook ({e})"]
    problems = []
    kernel = nb.metadata.get("kernelspec", {}).get("name")
    if kernel != "python3":
        problems.append(f"{rel}: kernel is {kernel!r}, expected 'python3'")
    if any(k in nb.metadata for k in VOLATILE_NB_KEYS):
        problems.append(
            f"{rel}: stale papermill metadata (execute it with `python -m support.book execute`)"
        )
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    counts = [c.get("execution_count") for c in code]
    if any(n is None for n in counts):
        problems.append(
            f"{rel}: {sum(n is None for n in counts)} code cell(s) never executed"
        )
    elif counts != list(range(1, len(code) + 1)):
        problems.append(
            f"{rel}: code cells were not executed in order from a fresh kernel (counts {counts})"
        )
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            long_lines = [
                n
                for n, line in enumerate(cell.source.splitlines(), 1)
                if len(line) > MAX_CODE_LINE
            ]
            if long_lines:
                problems.append(
                    f"{rel}: cell {i} has code lines longer than {MAX_CODE_LINE} characters "
                    f"(lines {long_lines[:5]}); the page would cut them"
                )
            if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
                problems.append(f"{rel}: cell {i} holds an error output")
            if any(k in cell.metadata for k in VOLATILE_CELL_KEYS):
                problems.append(f"{rel}: cell {i} has volatile execution metadata")
        tags = cell.metadata.get("tags", [])
        if "papermill-error-cell-tag" in tags or "injected-parameters" in tags:
            kind = (
                "error" if "papermill-error-cell-tag" in tags else "injected-parameters"
            )
            problems.append(
                f"{rel}: cell {i} is a papermill {kind} "
                "cell (committed chapters are clean default runs)"
            )
    cell = _bootstrap_cell(nb)
    if cell is None:
        problems.append(
            f"{rel}: needs one Colab set-up cell (tagged remove-cell, see support.book.bootstrap_source)"
        )
    elif cell.source != bootstrap_source(configured_repository(root)):
        problems.append(
            f"{rel}: its Colab set-up cell differs from the configured repository: run "
            "`python -m support.book repository URL`"
        )
    params = parameters_cells(nb)
    if len(params) != 1:
        problems.append(
            f"{rel}: needs exactly one cell tagged 'parameters', found {len(params)}"
        )
    else:
        try:
            parameter_values(params[0].source)
        except BookError as e:
            problems.append(f"{rel}: {e}")
    return problems


def check(root: Path) -> list[str]:
    """All hygiene problems of the book at ``root`` (see module docstring)."""
    problems = []
    entries = toc_entries(root)
    for entry in entries:
        if entry_path(root, entry) is None:
            problems.append(
                f"_toc.yml lists {entry!r} but neither {entry}.ipynb nor {entry}.md exists"
            )
    listed = {entry_path(root, e) for e in entries}
    for path in sorted((root / "book").rglob("*.ipynb")):
        if any(part.startswith((".", "_")) for part in path.relative_to(root).parts):
            continue
        if path not in listed:
            problems.append(f"{path.relative_to(root)} is not listed in _toc.yml")
        else:
            problems += check_notebook(root, path)
    results_dir = root / "book" / "results"
    for row in _stored_result_rows(results_dir):
        if "| unreadable: " in row:
            problems.append(
                f"stored result {row.split('`')[1]} is {row.split('| ')[2].strip()}"
            )
    status = root / STATUS_PAGE
    if not status.exists() or status.read_text() != status_page(root):
        problems.append(
            f"{STATUS_PAGE} is out of date with {RUN_LOG}: run `python -m support.book status`"
        )
    return problems


# --------------------------------------------------------------------------- command line
def _chapter_parameters(root: Path, path: Path, pairs) -> dict:
    """``-p NAME VALUE`` pairs as values of the types of the chapter's defaults."""
    import nbformat

    cells = parameters_cells(nbformat.read(path, as_version=4))
    if len(cells) != 1:
        raise BookError(
            f"{path.relative_to(root)}: needs exactly one cell tagged 'parameters', found {len(cells)}"
        )
    defaults = parameter_values(cells[0].source)
    unknown = sorted({name for name, _ in pairs} - set(defaults))
    if unknown:
        raise BookError(
            f"{path.relative_to(root)}: unknown parameter(s) {unknown} "
            f"(the chapter's parameters: {sorted(defaults)})"
        )
    return {name: coerce_parameter(name, text, defaults[name]) for name, text in pairs}


def main(argv=None, root: Path | None = None) -> int:
    """Command-line entry point; returns the exit code (1 with a one-line error on bad input)."""
    parser = argparse.ArgumentParser(
        prog="python -m support.book", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser(
        "execute", help="execute chapters (all notebook chapters by default)"
    )
    ex.add_argument(
        "chapters",
        nargs="*",
        help="chapter names, e.g. finite_width or book/finite_width.ipynb",
    )
    ex.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="override a parameter (non-default run, written to --out-dir)",
    )
    ex.add_argument(
        "--timeout",
        type=int,
        default=DEFAULT_CELL_TIMEOUT_S,
        help="per-cell timeout in seconds",
    )
    ex.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        help="where non-default runs go (default _runs/)",
    )
    ex.add_argument(
        "--allow-dirty",
        action="store_true",
        help="execute although library code or stored results have uncommitted changes "
        "(the run log then records a '-dirty' commit)",
    )
    sub.add_parser("check", help="hygiene checks of the committed chapters")
    sub.add_parser("status", help="regenerate book/status.md from the run log")
    repo = sub.add_parser(
        "repository",
        help="set the public repository URL (buttons, Colab cells); '' unsets",
    )
    repo.add_argument("url")
    args = parser.parse_args(argv)

    try:
        root = Path(root) if root is not None else paths.repository_root()
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        if args.command == "execute":
            chapters = [
                resolve_chapter(root, c) for c in args.chapters
            ] or notebook_chapters(root)
            commit = source_commit(root)
            if not args.allow_dirty and (
                commit.endswith("-dirty") or commit == "unknown"
            ):
                raise BookError(
                    f"the working tree has uncommitted changes outside the chapters (commit "
                    f"{commit!r}), so the run log could not say which code ran: commit first, "
                    "or pass --allow-dirty"
                )
            for path in chapters:
                parameters = _chapter_parameters(root, path, args.parameter)
                print(f"executing {path.relative_to(root)} ...", flush=True)
                target = execute_chapter(
                    root, path, parameters, args.timeout, args.out_dir, commit
                )
                print(f"  ok -> {os.path.relpath(target, root)}", flush=True)
        elif args.command == "check":
            problems = check(root)
            for problem in problems:
                print(f"check: {problem}")
            if problems:
                return 1
            print(f"check: {len(notebook_chapters(root))} chapters clean")
        elif args.command == "repository":
            set_repository(root, args.url)
            print(
                f"repository {'set to ' + args.url if args.url else 'unset'}: _config.yml and "
                f"{len(notebook_chapters(root))} chapters updated"
            )
        elif args.command == "status":
            with _executor_lock(root):
                text = status_page(root)
                _replace_atomically(
                    root / STATUS_PAGE, lambda tmp: tmp.write_text(text)
                )
            print(f"wrote {STATUS_PAGE}")
    except BookError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
