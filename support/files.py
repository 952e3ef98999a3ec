"""Writing files so that a reader never sees half of one and nothing planted can redirect it.

Every file the library writes over an earlier version -- stored results, executed chapters,
the status page, the book's configuration, checkpoints and dataset caches -- goes through
:func:`atomic_writer`: the new content is written to a temporary file created exclusively
(``tempfile.mkstemp``, ``O_EXCL``: an unpredictable name, never an existing file or a planted
symbolic link) in the target's own folder, flushed to disk, and renamed over the target in one
step (``os.replace``, which replaces a symbolic link at the target rather than following it).
A crash or a full disk leaves the previous file intact and no temporary file behind.
*How to run this book* explains why results and chapters are written this way.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path


class NotARegularFileError(OSError):
    """A folder, pipe, socket or device where the library expects a regular file."""


def check_target(path: Path | str, what: str = "file") -> Path:
    """``path`` as a Path; OSError naming it when something other than a regular file (or a
    symbolic link) sits there -- a folder, a named pipe (FIFO), a socket or a device -- which a
    write or read would fail on, hang on, or silently leave in place
    (:class:`NotARegularFileError`, an OSError)."""
    path = Path(path)
    try:
        mode = path.lstat().st_mode
    except (FileNotFoundError, NotADirectoryError):  # nothing there yet
        return path
    if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
        return path
    kinds = {
        stat.S_ISDIR: "a folder",
        stat.S_ISFIFO: "a named pipe (FIFO)",
        stat.S_ISSOCK: "a socket",
    }
    kind = next((name for test, name in kinds.items() if test(mode)), "a special file")
    raise NotARegularFileError(
        f"{what} {path} is {kind}, not a regular file: remove or rename it"
    )


@contextlib.contextmanager
def atomic_writer(target: Path | str, what: str = "file"):
    """Context manager yielding a binary file object whose content replaces ``target`` on exit.

    Usage: ``with atomic_writer(path) as f: torch.save(state, f)`` or
    ``with atomic_writer(path) as f: np.savez(f, **arrays)`` (a file object, so numpy adds no
    ``.npz`` suffix). When the block raises, ``target`` is untouched and the temporary file is
    removed. ``what`` names the file in errors (e.g. ``"checkpoint"``). Raises OSError, naming
    ``target``, when a folder, pipe or socket sits where the file should go.
    """
    target = check_target(target, what)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
    )
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_bytes(target: Path | str, payload: bytes, what: str = "file") -> Path:
    """Replace ``target`` by ``payload`` atomically (see :func:`atomic_writer`); return it."""
    with atomic_writer(target, what) as handle:
        handle.write(payload)
    return Path(target)


def write_text(target: Path | str, text: str, what: str = "file") -> Path:
    """Replace ``target`` by ``text`` (UTF-8) atomically (see :func:`atomic_writer`)."""
    return write_bytes(target, text.encode("utf-8"), what)
