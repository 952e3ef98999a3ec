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

import contextlib
import datetime as _dt
import hashlib
import io
import json
import platform
import subprocess
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from support import files, paths
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
UNKNOWN_COMMIT = "unknown"
_PROVENANCE_KEYS = {"commit", "device", "versions", "seeds", "wall_time_s", "date"}


class ResultError(ValueError):
    """A stored result that cannot be trusted: unreadable, inconsistent, or of an unknown format."""


def git_commit(repo: Path | None = None, ignore: tuple[str, ...] = ()) -> str:
    """Current commit of ``repo`` (default: the book's repository), suffixed ``-dirty`` when a
    tracked file differs or an untracked file that ``.gitignore`` does not exclude exists (a new
    module that ran is part of the code a commit must identify); :data:`UNKNOWN_COMMIT` when
    there is no git or no repository.

    ``ignore``: paths whose changes do not count (logs that recording a run itself modifies).
    """
    repo = paths.find_repository_root() if repo is None else Path(repo)
    if repo is None:
        return UNKNOWN_COMMIT
    exclude = [f":(exclude){path}" for path in ignore]
    try:
        head = _git(repo, "rev-parse", "--short=12", "HEAD")
        dirty = _git(
            repo,
            "status",
            "--porcelain",
            "--untracked-files=normal",
            "--",
            ".",
            *exclude,
        )
    except (OSError, subprocess.CalledProcessError):
        return UNKNOWN_COMMIT
    return head + ("-dirty" if dirty else "")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


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


def is_clean(commit) -> bool:
    """Whether ``commit`` identifies committed code: a non-empty string, not ``-dirty``, not
    :data:`UNKNOWN_COMMIT`."""
    return (
        isinstance(commit, str)
        and bool(commit.strip())
        and commit != UNKNOWN_COMMIT
        and not commit.endswith("-dirty")
    )


def require_clean(commit, what: str) -> None:
    """Refuse to record ``what`` from an unidentifiable tree (see :func:`is_clean`)."""
    if is_clean(commit):
        return
    if commit == UNKNOWN_COMMIT:
        reason = (
            "git is not installed or this folder is not a git checkout, so no commit can "
            "identify the code that made it; run from a clone of the book's repository"
        )
    elif isinstance(commit, str) and commit.endswith("-dirty"):
        reason = (
            f"the working tree has uncommitted changes (commit {commit!r}), so the stored "
            "provenance would not identify the code that made it; commit first"
        )
    else:
        reason = f"the provenance names no commit ({commit!r})"
    raise ResultError(
        f"{what}: {reason}, or pass allow_dirty=True for a result you will not publish"
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
    cannot be stored (nothing is written then); OSError when the folder cannot be written.
    Dicts with integer keys are stored so that :func:`load` gives the integers back.
    """
    name = _check_name(name)
    directory = Path(directory) if directory is not None else paths.results_dir()
    missing = _PROVENANCE_KEYS - set(provenance_record)
    if missing:
        raise ValueError(f"result {name!r}: provenance record lacks {sorted(missing)}")
    if not allow_dirty:
        require_clean(provenance_record["commit"], f"result {name!r}")
    npz_bytes = _npz_bytes(name, arrays) if arrays else None
    record = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "config": _encode_keys(config, f"result {name!r} config"),
        "scalars": _encode_keys(scalars or {}, f"result {name!r} scalars"),
        "arrays": sorted(arrays) if arrays else [],
        "arrays_sha256": None
        if npz_bytes is None
        else hashlib.sha256(npz_bytes).hexdigest(),
        "provenance": provenance_record,
    }
    text = json.dumps(record, indent=1, sort_keys=True, default=_jsonable) + "\n"
    directory.mkdir(parents=True, exist_ok=True)
    json_path, npz_path = directory / f"{name}.json", directory / f"{name}.npz"
    # Arrays first, record second: a crash or a reader in between sees a checksum mismatch,
    # which load() refuses (after waiting out a concurrent save), never new arrays under an
    # old record.
    with contextlib.ExitStack() as stack:
        json_file = stack.enter_context(files.atomic_writer(json_path, "stored result"))
        if npz_bytes is not None:
            with files.atomic_writer(npz_path, "stored result") as npz_file:
                npz_file.write(npz_bytes)
        json_file.write(text.encode())
    if npz_bytes is None:
        files.check_target(npz_path, "stored result")
        npz_path.unlink(missing_ok=True)  # arrays of an earlier result of this name
    return json_path


def _npz_bytes(name: str, arrays: dict) -> bytes:
    buffer = io.BytesIO()
    converted = {k: np.asarray(v) for k, v in arrays.items()}
    for key, value in converted.items():
        if value.dtype == object:
            raise TypeError(
                f"result {name!r}: array {key!r} has dtype object, which cannot be stored safely"
            )
    np.savez_compressed(buffer, **converted)
    return buffer.getvalue()


_INT_KEYS = "__int_keys__"
"""Marker of a dict stored with integer keys: JSON keys are strings, so such a dict is written
as ``{"__int_keys__": [[key, value], ...]}`` and read back as a dict with integer keys."""


def _encode_keys(value, what: str):
    """``value`` with every dict that has integer keys in the marked form (see :data:`_INT_KEYS`);
    TypeError for keys JSON cannot give back (floats, tuples, None, ...)."""
    if isinstance(value, dict):
        if _INT_KEYS in value:
            raise ValueError(f"{what}: the key {_INT_KEYS!r} is reserved")
        items = {k: _encode_keys(v, what) for k, v in value.items()}
        kinds = {type(k) for k in items}
        if kinds <= {str}:
            return items
        if any(
            isinstance(k, bool) or not isinstance(k, (str, int, np.integer))
            for k in items
        ):
            raise TypeError(
                f"{what}: dict keys must be strings or integers, got {sorted(map(repr, items))}"
            )
        return {
            _INT_KEYS: [
                [k if isinstance(k, str) else int(k), v] for k, v in items.items()
            ]
        }
    if isinstance(value, (list, tuple)):
        return [_encode_keys(v, what) for v in value]
    return value


def _decode_keys(value):
    """Inverse of :func:`_encode_keys`."""
    if isinstance(value, dict):
        if set(value) == {_INT_KEYS}:
            return {k: _decode_keys(v) for k, v in value[_INT_KEYS]}
        return {k: _decode_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_keys(v) for v in value]
    return value


MAX_JSON_BYTES = 64 * 2**20
"""Largest result record :func:`load` reads (records are a few kilobytes)."""


class _Mismatch(Exception):
    """The array file does not match its record (maybe a save in progress)."""


def load(name: str, directory: Path | str | None = None) -> StoredResult | None:
    """Load a stored result, or return None when there is none (chapters then say so).

    Raises :class:`ResultError`, naming the file, when the JSON is unreadable (including numbers
    too long or nesting too deep to parse), its format version is unknown, its name differs, or
    the array file is missing, differs from the recorded checksum, lacks a listed array, or
    declares arrays larger than it holds. A folder, pipe or socket where a file should be is
    refused at once. A save running at the same time is waited out (its two renames are
    microseconds apart), so only a mismatch that persists is reported.
    """
    name = _check_name(name)
    directory = Path(directory) if directory is not None else paths.results_dir()
    path = directory / f"{name}.json"
    for attempt in range(_LOAD_ATTEMPTS):
        try:
            return _load_once(name, directory, path)
        except _Mismatch as exc:
            if attempt == _LOAD_ATTEMPTS - 1:
                raise ResultError(str(exc)) from None
            time.sleep(0.01 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


_LOAD_ATTEMPTS = 8


def _load_once(name: str, directory: Path, path: Path) -> StoredResult | None:
    record = _read_record(path)
    if record is None:
        return None
    arrays = (
        _read_arrays(directory / f"{name}.npz", path, record)
        if record.get("arrays")
        else {}
    )
    try:
        return StoredResult(
            name=record["name"],
            config=_decode_keys(record["config"]),
            scalars=_decode_keys(record["scalars"]),
            provenance=record["provenance"],
            arrays=arrays,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ResultError(f"stored result {path} lacks {exc}; recompute it") from exc


def _read_record(path: Path) -> dict | None:
    try:
        files.check_target(path, "stored result")
        if not path.exists():
            return None
        if path.stat().st_size > MAX_JSON_BYTES:
            raise ResultError(
                f"stored result {path} is {path.stat().st_size} bytes, more than a record "
                f"can be ({MAX_JSON_BYTES}); restore it from git or recompute it"
            )
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        # ValueError covers malformed JSON and integers longer than Python converts;
        # RecursionError, nesting deeper than the parser goes.
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ResultError(
            f"stored result {path} is unreadable ({detail}); restore it from git or "
            "recompute it"
        ) from None
    if not isinstance(record, dict) or record.get("format_version") != FORMAT_VERSION:
        version = record.get("format_version") if isinstance(record, dict) else None
        raise ResultError(
            f"stored result {path} has format version {version!r}, expected {FORMAT_VERSION}; "
            f"recompute it with this version of the library"
        )
    if record.get("name") != path.stem:
        raise ResultError(
            f"stored result {path} is named {record.get('name')!r} inside, not {path.stem!r}"
        )
    if not isinstance(record.get("arrays", []), list):
        raise ResultError(f"stored result {path}: 'arrays' is not a list; recompute it")
    return record


def _read_arrays(npz: Path, path: Path, record: dict) -> dict:
    try:
        files.check_target(npz, "stored result")
        payload = npz.read_bytes()
    except OSError as exc:
        raise ResultError(
            f"stored result {path} lists arrays but {npz} cannot be read ({exc})"
        ) from exc
    if hashlib.sha256(payload).hexdigest() != record.get("arrays_sha256"):
        raise _Mismatch(
            f"stored result {npz} does not match the checksum recorded in {path.name} "
            f"(a half-finished save, or files from two different runs); recompute it"
        )
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as data:
            _check_array_sizes(data.zip, npz)
            arrays = {k: data[k] for k in data.files}
    except (ValueError, OSError, zipfile.BadZipFile, MemoryError) as exc:
        raise ResultError(
            f"stored result {npz} cannot be read as plain arrays ({exc})"
        ) from exc
    absent = sorted(set(record["arrays"]) - set(arrays))
    if absent:
        raise ResultError(
            f"stored result {npz} lacks the arrays {absent} listed in {path.name}"
        )
    return arrays


def _check_array_sizes(archive: zipfile.ZipFile, npz: Path) -> None:
    """Refuse an array whose header declares more bytes than its member holds (a damaged or
    hostile header would otherwise make numpy allocate whatever it claims)."""
    for info in archive.infolist():
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = header(member)
            declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if declared > info.file_size:
                raise ValueError(
                    f"array {info.filename!r} declares shape {shape} of {dtype} "
                    f"({declared} bytes) but holds {info.file_size} bytes"
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

    When ``BOOK_RESULTS_SCRATCH`` is set (the executor sets it for a run with non-default
    parameters) a computed result is stored there instead, so such a run never replaces a
    stored result of the book. When storing fails (a read-only folder, a full disk), the
    computed result is still returned, with a warning that names the folder and the reason.
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
    target = paths.scratch_results_dir() or directory
    try:
        save(
            name,
            config=run["config"],
            scalars=run.get("scalars"),
            arrays=run.get("arrays"),
            provenance_record=record,
            directory=target,
            allow_dirty=allow_dirty,
        )
    except OSError as exc:
        folder = Path(target) if target is not None else paths.results_dir()
        warnings.warn(
            f"result {name!r} was computed but could not be stored in {folder} ({exc}); "
            "it is returned but will be computed again next time",
            stacklevel=2,
        )
        return StoredResult(
            name=name,
            config=run["config"],
            scalars=dict(run.get("scalars") or {}),
            provenance=record,
            arrays={k: np.asarray(v) for k, v in (run.get("arrays") or {}).items()},
        )
    return load(name, target)


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
