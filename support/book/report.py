"""The Status page (``book/status.md``, generated from the run log and the stored results) and
the book's hygiene checks (``python -m support.book check``).

Both tolerate damaged inputs: an unreadable run-log line or stored result is listed as such
(and reported by ``check``), never a crash that would cost a finished run its record.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from support.book.colab import bootstrap_cell, bootstrap_source, configured_repository
from support.book.execution import (
    RUN_LOG,
    STAGING_DIR,
    STATUS_PAGE,
    VOLATILE_CELL_KEYS,
    VOLATILE_NB_KEYS,
    outputs_checksum,
)
from support.book.parameters import chapter_defaults
from support.book.toc import BookError, chapter_name, entry_path, toc_entries
from support.results import load

MAX_CODE_LINE = 88
_RECORD_FIELDS = {
    "chapter": str,
    "date": str,
    "duration_s": (int, float),
    "device": str,
    "cpu": str,
    "versions": dict,
    "commit": str,
    "parameters": dict,
}


@dataclass
class RunLog:
    """The readable records of the run log, and a line per unreadable one."""

    records: list[dict]
    unreadable: list[str]


@dataclass
class StoredEntry:
    """One stored result: its provenance, or why it cannot be read."""

    name: str
    provenance: dict | None
    problem: str | None = None


def read_run_log(path: Path) -> RunLog:
    """The run log at ``path``: each line must be a JSON object with the fields of a run
    record; any other line is listed in ``unreadable`` (with its number), not an error."""
    import json

    log = RunLog([], [])
    try:
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    except OSError as e:
        return RunLog([], [f"cannot be read ({e})"])
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as e:
            log.unreadable.append(f"line {number} is not valid JSON ({str(e)[:80]})")
            continue
        wrong = (
            sorted(
                k
                for k, kind in _RECORD_FIELDS.items()
                if not isinstance(record.get(k), kind)
            )
            if isinstance(record, dict)
            else ["(not an object)"]
        )
        if wrong:
            log.unreadable.append(f"line {number} lacks or mistypes {wrong}")
        else:
            log.records.append(record)
    return log


def stored_results(results_dir: Path) -> list[StoredEntry]:
    """Every stored result in ``results_dir`` with its provenance, or why it is unreadable."""
    entries = []
    names = (
        sorted(p.stem for p in results_dir.glob("*.json"))
        if results_dir.is_dir()
        else []
    )
    for name in names:
        try:
            p = load(name, results_dir).provenance
            if not isinstance(p, dict):
                raise TypeError("its provenance is not a record")
            wall = p.get("wall_time_s")
            row = {
                "date": str(p["date"]),
                "device": str(p["device"]),
                "wall": "" if wall is None else f"{float(wall):.0f}",
                "seeds": str(p["seeds"]),
                "commit": str(p["commit"]),
            }
        except Exception as e:  # any damage is listed, never a crash
            reason = str(e).replace("|", "/").replace(str(results_dir), "book/results")
            entries.append(StoredEntry(name, None, reason or type(e).__name__))
            continue
        entries.append(StoredEntry(name, row))
    return entries


def _chapter_rows(root: Path, records: list[dict]) -> list[str]:
    latest = {r["chapter"]: r for r in records if not r["parameters"]}
    rows = []
    for entry in toc_entries(root):
        path = entry_path(root, entry)
        if path is None or path.suffix != ".ipynb":
            continue
        r = latest.get(entry)
        link = f"{{doc}}`/{entry}`"
        if r is None:
            rows.append(f"| {link} | never | | | | | | |")
            continue
        v = r["versions"]
        rows.append(
            f"| {link} | {r['date']} | {r['duration_s']:.1f} | {r['device']} | {r['cpu']} "
            f"| {v.get('torch', '-')} | {v.get('numpy', '-')} | `{r['commit']}` |"
        )
    return rows


def status_page(
    root: Path, results_dir: Path | None = None, pending: dict | None = None
) -> str:
    """Markdown of the Status page: the latest default run of each chapter (``pending``: a record
    about to be logged), every stored result with its provenance, and any unreadable run-log
    line or stored result listed as such."""
    results_dir = Path(results_dir) if results_dir else root / "book" / "results"
    log = read_run_log(root / RUN_LOG)
    lines = [
        "# Status",
        "",
        "When and where each chapter was last executed with its default parameters (the run the",
        "pages show), and the stored results of longer runs that chapters load. The page is",
        "regenerated whenever a chapter is executed.",
        "",
        "## Chapters",
        "",
        ":::{table} The last default run of each chapter.",
        ":name: tbl-status-chapters",
        "",
        "| chapter | executed | duration (s) | GPU | CPU | torch | numpy | commit |",
        "|---|---|---|---|---|---|---|---|",
        *_chapter_rows(root, log.records + ([pending] if pending else [])),
        ":::",
    ]
    if log.unreadable:
        lines += ["", f"Unreadable lines of `{RUN_LOG}` (skipped):", ""]
        lines += [f"- {problem}" for problem in log.unreadable]
    lines += [
        "",
        "## Stored results",
        "",
        "Runs too long for a chapter's default execution store their numbers under `book/results/`",
        "with provenance; the chapters load them and say so.",
        "",
    ]
    entries = stored_results(results_dir)
    if not entries:
        lines.append("No stored results yet.")
        return "\n".join(lines) + "\n"
    lines += [
        ":::{table} Every stored result with its provenance.",
        ":name: tbl-status-results",
        "",
        "| result | computed | device | wall time (s) | seeds | commit |",
        "|---|---|---|---|---|---|",
    ]
    for e in entries:
        if e.provenance is None:
            lines.append(f"| `{e.name}` | unreadable: {e.problem} | | | | |")
            continue
        p = e.provenance
        lines.append(
            f"| `{e.name}` | {p['date']} | {p['device']} | {p['wall']} | {p['seeds']} "
            f"| `{p['commit']}` |"
        )
    lines.append(":::")
    return "\n".join(lines) + "\n"


def _execution_problems(rel, nb) -> list[str]:
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
    return problems


def _cell_problems(rel, i: int, cell) -> list[str]:
    problems = []
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
        kind = "error" if "papermill-error-cell-tag" in tags else "injected-parameters"
        problems.append(
            f"{rel}: cell {i} is a papermill {kind} "
            "cell (committed chapters are clean default runs)"
        )
    return problems


def _set_up_problems(root: Path, rel, nb) -> list[str]:
    cell = bootstrap_cell(nb)
    if cell is None:
        return [
            f"{rel}: needs one Colab set-up cell (tagged remove-cell, see "
            "support.book.bootstrap_source)"
        ]
    if cell.source != bootstrap_source(configured_repository(root)):
        return [
            f"{rel}: its Colab set-up cell differs from the configured repository: run "
            "`python -m support.book repository URL`"
        ]
    return []


def check_notebook(root: Path, path: Path, last_run: dict | None = None) -> list[str]:
    """Problems of one executed chapter notebook (empty list when clean); ``last_run``: its
    latest run-log record, whose output checksum the notebook must match."""
    import nbformat

    rel = path.relative_to(root)
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as e:  # unreadable JSON, wrong schema: reported
        return [f"{rel}: cannot be read as a notebook ({e})"]
    problems = _execution_problems(rel, nb)
    for i, cell in enumerate(nb.cells):
        problems += _cell_problems(rel, i, cell)
    problems += _set_up_problems(root, rel, nb)
    try:
        chapter_defaults(nb, rel)
    except BookError as e:
        problems.append(str(e))
    expected = (last_run or {}).get("outputs_sha256")
    if expected is not None and expected != outputs_checksum(nb):
        problems.append(
            f"{rel}: its outputs differ from its last logged run ({last_run['date']}): an "
            "execution was interrupted between writing the notebook and logging it; "
            "execute it again"
        )
    return problems


def check(root: Path) -> list[str]:
    """All hygiene problems of the book at ``root``: table of contents, chapters (see
    :func:`check_notebook`), run log, stored results, staged runs and the status page."""
    problems = []
    entries = toc_entries(root)
    for entry in entries:
        if entry_path(root, entry) is None:
            problems.append(
                f"_toc.yml lists {entry!r} but neither {entry}.ipynb nor {entry}.md exists"
            )
    log = read_run_log(root / RUN_LOG)
    problems += [f"{RUN_LOG}: {problem}" for problem in log.unreadable]
    last_runs = {r["chapter"]: r for r in log.records}
    listed = {entry_path(root, e) for e in entries}
    for path in sorted((root / "book").rglob("*.ipynb")):
        if any(part.startswith((".", "_")) for part in path.relative_to(root).parts):
            continue
        if path not in listed:
            problems.append(f"{path.relative_to(root)} is not listed in _toc.yml")
        else:
            last = last_runs.get(chapter_name(root, path))
            problems += check_notebook(root, path, last)
    for entry in stored_results(root / "book" / "results"):
        if entry.problem is not None:
            problems.append(
                f"stored result {entry.name} is unreadable: {entry.problem}"
            )
    staged = sorted((root / STAGING_DIR).glob("*.ipynb"))
    problems += [
        f"{s.relative_to(root)}: a finished run whose recording failed; copy it over its "
        "chapter or delete it"
        for s in staged
    ]
    status = root / STATUS_PAGE
    if not status.exists() or status.read_text() != status_page(root):
        problems.append(
            f"{STATUS_PAGE} is out of date with {RUN_LOG}: run `python -m support.book status`"
        )
    return problems
