"""Stored results with provenance: what long runs leave in ``book/results/`` for chapters to load.

A result is a pair of files: ``NAME.json`` (configuration, scalar results, the names of the
arrays, the SHA-256 of the array file, and provenance: commit, device, package versions, seeds,
wall time, date) and, when the result has arrays, ``NAME.npz``. Chapters load them with
:func:`load` or :func:`cached` ("load the stored result if present, else compute and store it")
and say where the numbers came from (:func:`describe`). *How to run this book* explains the
convention.

Both files are data, never code: JSON and ``numpy.load(allow_pickle=False)``. Writing is
all-or-nothing in effect: everything is serialised and validated before any file is touched,
each file is written to a temporary name and renamed into place, and the JSON records the
array file's checksum, so a crash between the two renames leaves a pair that :func:`load`
rejects, naming the file, rather than new arrays under old metadata. A result is only stored
from a clean working tree (its commit must identify the code that made it), unless the caller
says otherwise with ``allow_dirty=True``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import platform
import subprocess
import time
import zipfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from support import paths
from support.hardware import describe_device

FORMAT_VERSION = 2
_VERSIONED = (
    "torch",
    "torchvision",
    "numpy",
    "scipy",
    "scikit-learn",
    "cma",
    "matplotlib",
)
_PROVENANCE_KEYS = {"commit", "device", "versions", "seeds", "wall_time_s", "date"}


class ResultError(ValueError):
    """A stored result that cannot be trusted: unreadable, inconsistent, or of an unknown format."""


def git_commit(repo: Path | None = None, ignore: tuple[str, ...] = ()) -> str:
    """Current commit of ``repo`` (default: the book's repository), suffixed ``-dirty`` when tracked
    files differ; 'unknown' outside git.

    ``ignore``: paths whose changes do not count (logs that recording a run itself modifies).
    """
    repo = paths.find_repository_root() if repo is None else Path(repo)
    if repo is None:
        return "unknown"
    exclude = [f":(exclude){path}" for path in ignore]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=repo,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                *exclude,
            ],
            cwd=repo,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def package_versions(names=_VERSIONED) -> dict:
    """Installed versions of the packages that decide numerical results (absent ones omitted)."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def provenance(
    *, device=None, seeds=None, wall_time_s=None, commit: str | None = None
) -> dict:
    """Provenance record: commit, device, versions, seeds, wall time and UTC date.

    ``commit`` defaults to the repository's current one; a run that lasts hours passes the commit
    it started from, taken with :func:`git_commit` at its start.
    """
    return {
        "commit": git_commit() if commit is None else commit,
        "device": describe_device(device),
        "versions": package_versions(),
        "seeds": list(seeds) if seeds is not None else None,
        "wall_time_s": None if wall_time_s is None else round(float(wall_time_s), 3),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def require_clean(commit: str, what: str) -> None:
    """Refuse to record ``what`` from an unidentifiable tree ('-dirty' or 'unknown' commit)."""
    if commit.endswith("-dirty") or commit == "unknown":
        raise ResultError(
            f"{what}: the working tree has uncommitted changes (commit {commit!r}), so the stored "
            f"provenance would not identify the code that made it; commit first, or pass "
            f"allow_dirty=True for a result you will not publish"
        )


@dataclass
class StoredResult:
    """A loaded result: ``config`` and ``scalars`` (JSON), ``arrays`` (NPZ) and ``provenance``."""

    name: str
    config: dict
    scalars: dict
    provenance: dict
    arrays: dict = field(default_factory=dict)


def _check_name(name: str) -> str:
    if (
        not isinstance(name, str)
        or not name
        or name.startswith(".")
        or Path(name).name != name
    ):
        raise ValueError(f"result name must be a plain file stem, got {name!r}")
    return name


def save(
    name: str,
    *,
    config: dict,
    scalars: dict | None = None,
    arrays: dict | None = None,
    provenance_record: dict,
    directory: Path | str | None = None,
    allow_dirty: bool = False,
) -> Path:
    """Write ``NAME.json`` (and ``NAME.npz`` when ``arrays`` is given) into ``directory``
    (default :func:`support.paths.results_dir`); return the JSON path.

    ``provenance_record`` comes from :func:`provenance`. Raises :class:`ResultError` for a
    record from a dirty tree unless ``allow_dirty``; ValueError/TypeError for a record that
    cannot be stored (nothing is written then).
    """
    name = _check_name(name)
    directory = Path(directory) if directory is not None else paths.results_dir()
    missing = _PROVENANCE_KEYS - set(provenance_record)
    if missing:
        raise ValueError(f"result {name!r}: provenance record lacks {sorted(missing)}")
    if not allow_dirty:
        require_clean(str(provenance_record["commit"]), f"result {name!r}")
    npz_bytes = None
    if arrays:
        buffer = io.BytesIO()
        converted = {k: np.asarray(v) for k, v in arrays.items()}
        for key, value in converted.items():
            if value.dtype == object:
                raise TypeError(
                    f"result {name!r}: array {key!r} has dtype object, which cannot be stored safely"
                )
        np.savez_compressed(buffer, **converted)
        npz_bytes = buffer.getvalue()
    record = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "config": config,
        "scalars": scalars or {},
        "arrays": sorted(arrays) if arrays else [],
        "arrays_sha256": hashlib.sha256(npz_bytes).hexdigest()
        if npz_bytes is not None
        else None,
        "provenance": provenance_record,
    }
    text = (
        json.dumps(record, indent=1, sort_keys=True, default=_jsonable, allow_nan=True)
        + "\n"
    )
    directory.mkdir(parents=True, exist_ok=True)
    json_path, npz_path = directory / f"{name}.json", directory / f"{name}.npz"
    tag = f"{os.getpid()}.{time.monotonic_ns()}"
    staged = []
    try:
        if npz_bytes is not None:
            staged.append(
                (_write_temp(directory, f".{name}.{tag}.npz", npz_bytes), npz_path)
            )
        staged.append(
            (_write_temp(directory, f".{name}.{tag}.json", text.encode()), json_path)
        )
        for tmp, final in staged:
            tmp.replace(final)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
    if npz_bytes is None:
        npz_path.unlink(
            missing_ok=True
        )  # a stale array file of an earlier result of this name
    return json_path


def _write_temp(directory: Path, filename: str, payload: bytes) -> Path:
    tmp = directory / filename
    with open(tmp, "wb") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    return tmp


def load(name: str, directory: Path | str | None = None) -> StoredResult | None:
    """Load a stored result, or return None when there is none (chapters then say so).

    Raises :class:`ResultError`, naming the file, when the JSON is unreadable, its format version
    is unknown, its name differs, or the array file is missing, differs from the recorded
    checksum, or lacks a listed array.
    """
    name = _check_name(name)
    directory = Path(directory) if directory is not None else paths.results_dir()
    path = directory / f"{name}.json"
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultError(
            f"stored result {path} is unreadable ({exc}); restore it from git or recompute it"
        ) from exc
    if not isinstance(record, dict) or record.get("format_version") != FORMAT_VERSION:
        version = record.get("format_version") if isinstance(record, dict) else None
        raise ResultError(
            f"stored result {path} has format version {version!r}, expected {FORMAT_VERSION}; "
            f"recompute it with this version of the library"
        )
    if record.get("name") != name:
        raise ResultError(
            f"stored result {path} is named {record.get('name')!r} inside, not {name!r}"
        )
    arrays = {}
    if record.get("arrays"):
        npz = directory / f"{name}.npz"
        try:
            payload = npz.read_bytes()
        except OSError as exc:
            raise ResultError(
                f"stored result {path} lists arrays but {npz} cannot be read ({exc})"
            ) from exc
        if hashlib.sha256(payload).hexdigest() != record.get("arrays_sha256"):
            raise ResultError(
                f"stored result {npz} does not match the checksum recorded in {path.name} "
                f"(a half-finished save, or files from two different runs); recompute it"
            )
        try:
            with np.load(io.BytesIO(payload), allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (ValueError, OSError, zipfile.BadZipFile) as exc:
            raise ResultError(
                f"stored result {npz} cannot be read as plain arrays ({exc})"
            ) from exc
        absent = sorted(set(record["arrays"]) - set(arrays))
        if absent:
            raise ResultError(
                f"stored result {npz} lacks the arrays {absent} listed in {path.name}"
            )
    return StoredResult(
        name=record["name"],
        config=record["config"],
        scalars=record["scalars"],
        provenance=record["provenance"],
        arrays=arrays,
    )


def cached(
    name: str,
    compute,
    *,
    recompute: bool = False,
    device=None,
    allow_dirty: bool = False,
    directory: Path | str | None = None,
) -> StoredResult:
    """Load the stored result ``name``; when there is none (or ``recompute``), compute and store it.

    ``compute()`` returns a dict with ``config`` and optionally ``scalars``, ``arrays`` and
    ``seeds``; this function times it, adds provenance (``device`` describes where it ran) and
    saves it under the rules of :func:`save`, then returns what :func:`load` returns.
    """
    stored = None if recompute else load(name, directory)
    if stored is not None:
        return stored
    commit = git_commit()
    if not allow_dirty:
        require_clean(commit, f"result {name!r}")
    start = time.perf_counter()
    run = compute()
    unknown = set(run) - {"config", "scalars", "arrays", "seeds"}
    if "config" not in run or unknown:
        raise ValueError(
            f"cached({name!r}): compute() must return config (and optionally scalars, arrays, "
            f"seeds), got keys {sorted(run)}"
        )
    record = provenance(
        device=device,
        seeds=run.get("seeds"),
        wall_time_s=time.perf_counter() - start,
        commit=commit,
    )
    save(
        name,
        config=run["config"],
        scalars=run.get("scalars"),
        arrays=run.get("arrays"),
        provenance_record=record,
        directory=directory,
        allow_dirty=allow_dirty,
    )
    return load(name, directory)


def describe(result: StoredResult) -> str:
    """Three short lines for a chapter: which stored result, when and where it was computed, and
    from which commit with which torch, wall time and seeds (each line fits a narrow column)."""
    p = result.provenance
    details = [f"commit {p['commit']}"]
    if p.get("versions", {}).get("torch"):
        details.append(f"torch {p['versions']['torch']}")
    if p.get("wall_time_s") is not None:
        details.append(f"{p['wall_time_s']:.0f} s wall")
    details.append(f"seeds {p['seeds']}")
    return (
        f"stored result '{result.name}'\n  computed {p['date']} on {p['device']}\n"
        f"  {', '.join(details)}"
    )


def _jsonable(value):
    """JSON fallback for numpy scalars and arrays inside configs and scalars."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a result record")
