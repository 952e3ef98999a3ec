"""Fault injection against stored results (support/results.py): special files, hostile JSON
and NPZ headers, unwritable folders, a full disk, and a reader racing a writer."""

import errno
import json
import os
import tempfile
import threading
import zipfile

import bounded
import numpy as np
import pytest

from support import results


def _prov():
    return results.provenance(commit="0123456789ab")


def _save(folder, name="r", **kw):
    kw.setdefault("config", {"v": 1})
    return results.save(name, provenance_record=_prov(), directory=folder, **kw)


def test_a_fifo_where_a_result_should_be_is_refused_at_once(tmp_path):
    os.mkfifo(tmp_path / "r.json")
    out = bounded.run(
        "from support import results\n"
        "try:\n"
        f"    results.load('r', {str(tmp_path)!r})\n"
        "except results.ResultError as e:\n"
        "    print(e)\n",
        timeout_s=60,
    )
    assert "r.json is a named pipe (FIFO)" in out


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"format_version": 2, "x": ' + "9" * 5000 + "}", "unreadable"),
        ("[" * 100_000 + "]" * 100_000, "unreadable"),
    ],
    ids=["5000-digit integer", "100000-deep nesting"],
)
def test_hostile_json_is_refused_naming_the_file(tmp_path, text, message):
    (tmp_path / "r.json").write_text(text)
    with pytest.raises(results.ResultError, match=f"r.json is {message}"):
        results.load("r", tmp_path)


def test_an_array_header_claiming_terabytes_is_refused_before_allocating(tmp_path):
    _save(tmp_path, arrays={"a": np.zeros(4)})
    npz = tmp_path / "r.npz"
    with zipfile.ZipFile(npz) as archive:
        member = archive.read("a.npy")
    header = member.replace(b"(4,)", b"(1099511627776,)".ljust(4))
    fixed = header[:10] + header[10:].replace(b"\n", b"", 1)  # keep the header length
    buffer = tmp_path / "big.npz"
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.npy", np.lib.format.magic(1, 0) + fixed[8:])
    os.replace(buffer, npz)
    record = json.loads((tmp_path / "r.json").read_text())
    import hashlib

    record["arrays_sha256"] = hashlib.sha256(npz.read_bytes()).hexdigest()
    (tmp_path / "r.json").write_text(json.dumps(record))
    out = bounded.run(
        "from support import results\n"
        "try:\n"
        f"    results.load('r', {str(tmp_path)!r})\n"
        "except results.ResultError as e:\n"
        "    print(e)\n",
        timeout_s=60,
        memory_gib=3,
    )
    assert "declares shape (1099511627776,)" in out


def test_cached_keeps_what_it_computed_when_the_folder_cannot_be_written(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(results, "git_commit", lambda *a, **k: "0123456789ab")
    folder = tmp_path / "results"
    folder.write_text("a file where the folder should be")
    calls = []

    def compute():
        calls.append(1)
        return {"config": {"n": 3}, "scalars": {"s": 1.5}, "arrays": {"x": [1, 2]}}

    with pytest.warns(UserWarning, match=r"could not be stored in .*results"):
        got = results.cached("c", compute, directory=folder)
    assert calls == [1] and got.scalars == {"s": 1.5} and got.config == {"n": 3}
    assert got.arrays["x"].tolist() == [1, 2]

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.warns(UserWarning, match="Read-only file system"):
        got = results.cached("c", compute, directory=tmp_path)
    assert calls == [1, 1] and got.scalars == {"s": 1.5}


def test_a_save_on_a_full_disk_leaves_the_old_pair_and_no_temporary_file(
    tmp_path, monkeypatch
):
    _save(tmp_path, arrays={"a": [1.0]})

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        _save(tmp_path, config={"v": 2}, arrays={"a": [2.0]})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.npz"]
    assert results.load("r", tmp_path).config == {"v": 1}


def test_a_load_during_a_concurrent_save_never_reports_a_half_finished_save(tmp_path):
    _save(tmp_path, arrays={"a": np.zeros(1000)})
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            i += 1
            _save(tmp_path, config={"v": i}, arrays={"a": np.full(1000, float(i))})

    thread = threading.Thread(target=writer)
    thread.start()
    errors = []
    try:
        for _ in range(300):
            try:
                r = results.load("r", tmp_path)
                assert float(r.arrays["a"][0]) == r.config.get("v", 0) or r.config == {
                    "v": 1
                }
            except results.ResultError as e:
                errors.append(str(e))
    finally:
        stop.set()
        thread.join()
    assert not errors, f"{len(errors)} of 300 loads failed: {errors[0]}"


def test_a_result_record_that_is_not_an_object_or_lacks_fields_is_a_result_error(
    tmp_path,
):
    for text in ("[1, 2]", '{"format_version": 2, "name": "r"}'):
        (tmp_path / "r.json").write_text(text)
        with pytest.raises(results.ResultError, match="r.json"):
            results.load("r", tmp_path)
