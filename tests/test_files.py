"""Tests of the one atomic-write helper (support/files.py): all or nothing, no temporary file
left, no planted link followed, no special file written through."""

import errno
import os
import socket

import numpy as np
import pytest

from support import files


def test_the_content_replaces_the_target_only_when_the_block_succeeds(tmp_path):
    target = tmp_path / "x.bin"
    files.write_bytes(target, b"old")
    with pytest.raises(RuntimeError, match="stop"):
        with files.atomic_writer(target) as handle:
            handle.write(b"new")
            raise RuntimeError("stop")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bin"]


def test_a_full_disk_keeps_the_old_file_and_leaves_no_temporary_file(
    tmp_path, monkeypatch
):
    target = files.write_text(tmp_path / "x.txt", "old")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        files.write_text(target, "new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.txt"]


def test_a_symbolic_link_at_the_target_is_replaced_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "out.npz").symlink_to(victim)
    with files.atomic_writer(tmp_path / "out.npz") as handle:
        np.savez(handle, a=np.arange(3))
    assert victim.read_text() == "precious"
    assert not (tmp_path / "out.npz").is_symlink()
    with np.load(tmp_path / "out.npz") as data:
        assert data["a"].tolist() == [0, 1, 2]


def test_links_planted_under_predictable_temporary_names_are_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    for name in (
        f".ckpt.pt.{os.getpid()}.tmp",
        f".ckpt.pt.{os.getpid()}",
        ".ckpt.pt.tmp",
    ):
        (tmp_path / name).symlink_to(victim)
    files.write_bytes(tmp_path / "ckpt.pt", b"state")
    assert victim.read_text() == "precious"
    assert (tmp_path / "ckpt.pt").read_bytes() == b"state"


@pytest.mark.parametrize("kind", ["folder", "fifo", "socket"])
def test_a_special_file_at_the_target_is_refused_naming_it(tmp_path, kind):
    target = tmp_path / "result.json"
    if kind == "folder":
        target.mkdir()
        expected = "a folder"
    elif kind == "fifo":
        os.mkfifo(target)
        expected = "a named pipe"
    else:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(target))
        expected = "a socket"
    with pytest.raises(files.NotARegularFileError, match=f"result.json is {expected}"):
        files.write_text(target, "x")
    with pytest.raises(OSError, match="not a regular file"):
        files.check_target(target, "stored result")
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
