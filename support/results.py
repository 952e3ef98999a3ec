"""Stored results with provenance: what long runs leave in ``book/results/`` for chapters to load.

A result is a pair of files ``NAME.json`` (configuration, scalar results and provenance: commit,
device, package versions, seeds, wall time, date) and optionally ``NAME.npz`` (arrays). Chapters
follow the pattern "load the stored result if present, else compute" and always say where the
numbers came from (:func:`describe`). *How to run this book* explains the convention.
"""
from __future__ import annotations

import datetime as _dt
import json
import platform
import subprocess
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from support.hardware import describe_device

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "book" / "results"
_VERSIONED = ("torch", "torchvision", "numpy", "scipy", "scikit-learn", "cma", "matplotlib")


def git_commit(repo: Path = REPO_ROOT, ignore: tuple[str, ...] = ()) -> str:
    """Current commit of ``repo``, suffixed ``-dirty`` when tracked files differ; 'unknown' outside git.

    ``ignore``: paths whose changes do not count (logs that recording a run itself modifies).
    """
    exclude = [f":(exclude){path}" for path in ignore]
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=repo, check=True,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *exclude],
                               cwd=repo, check=True, capture_output=True, text=True).stdout.strip()
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


def provenance(*, device=None, seeds=None, wall_time_s=None) -> dict:
    """Provenance record: commit, device, versions, seeds, wall time and UTC date."""
    return {
        "commit": git_commit(),
        "device": describe_device(device),
        "versions": package_versions(),
        "seeds": list(seeds) if seeds is not None else None,
        "wall_time_s": None if wall_time_s is None else round(float(wall_time_s), 3),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


@dataclass
class StoredResult:
    """A loaded result: ``config`` and ``scalars`` (JSON), ``arrays`` (NPZ) and ``provenance``."""

    name: str
    config: dict
    scalars: dict
    provenance: dict
    arrays: dict = field(default_factory=dict)


def save(name: str, *, config: dict, scalars: dict | None = None, arrays: dict | None = None,
         provenance_record: dict, directory: Path | str = RESULTS_DIR) -> Path:
    """Write ``NAME.json`` (and ``NAME.npz`` when ``arrays`` is given) into ``directory``.

    ``provenance_record`` comes from :func:`provenance`, made when the run finished. Writes go
    through a temporary file and a rename, so an interrupted save never leaves half a result.
    Returns the JSON path.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    required = {"commit", "device", "versions", "seeds", "wall_time_s", "date"}
    missing = required - set(provenance_record)
    if missing:
        raise ValueError(f"result {name!r}: provenance record lacks {sorted(missing)}")
    if arrays:
        tmp = directory / f".{name}.tmp.npz"
        np.savez_compressed(tmp, **{k: np.asarray(v) for k, v in arrays.items()})
        tmp.replace(directory / f"{name}.npz")
    record = {"name": name, "config": config, "scalars": scalars or {},
              "arrays": sorted(arrays) if arrays else [], "provenance": provenance_record}
    path = directory / f"{name}.json"
    tmp = directory / f".{name}.tmp.json"
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True, default=_jsonable) + "\n")
    tmp.replace(path)
    return path


def load(name: str, directory: Path | str = RESULTS_DIR) -> StoredResult | None:
    """Load a stored result, or return None when there is none (chapters then say so)."""
    directory = Path(directory)
    path = directory / f"{name}.json"
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    arrays = {}
    if record.get("arrays"):
        npz = directory / f"{name}.npz"
        if not npz.exists():
            raise FileNotFoundError(f"result {name!r}: {path.name} lists arrays but {npz.name} is missing")
        with np.load(npz) as data:
            arrays = {k: data[k] for k in data.files}
    return StoredResult(name=record["name"], config=record["config"], scalars=record["scalars"],
                        provenance=record["provenance"], arrays=arrays)


def describe(result: StoredResult) -> str:
    """One line for a chapter: where and when a stored result was computed."""
    p = result.provenance
    wall = f", {p['wall_time_s']:.0f} s wall" if p.get("wall_time_s") is not None else ""
    torch_v = p.get("versions", {}).get("torch")
    torch_s = f", torch {torch_v}" if torch_v else ""
    return (f"stored result '{result.name}': computed {p['date']} on {p['device']}"
            f" (commit {p['commit']}{torch_s}{wall}; seeds {p['seeds']})")


def _jsonable(value):
    """JSON fallback for numpy scalars and arrays inside configs and scalars."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a result record")
