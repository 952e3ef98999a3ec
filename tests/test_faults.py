"""Fault injection and hostile input: nothing runs from a data file or a parameter, nothing is lost
or silently wrong. One test per case of the fault review; each failed on the code before it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from helpers import TINY, commit_all, make_archive, tiny_config

from support import book, data, results, train

pytestmark = pytest.mark.usefixtures("one_thread")


class _Payload:
    """Unpickling this runs code: it creates the file named in ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _model(seed=0, depth=2):
    return train.build_model("plain", 4, depth=depth, seed=seed, model_kwargs=TINY)


def _checkpoint_after_one_epoch(dataset, path):
    """Train the tiny model for one epoch on ``dataset``, leaving a checkpoint at ``path``."""
    train.train(
        _model(),
        dataset,
        tiny_config(),
        device="cpu",
        checkpoint=path,
        stop_after_epoch=1,
    )
    return path


# ------------------------------------------------------------------------------- checkpoints
def test_a_checkpoint_carrying_a_pickle_payload_runs_nothing(tiny_data, tmp_path):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "ckpt.pt"
    torch.save(
        {
            "format": train.CHECKPOINT_FORMAT,
            "version": train.CHECKPOINT_VERSION,
            "fingerprint": _Payload(str(marker)),
            "state": {},
        },
        ckpt,
    )
    with pytest.raises(train.CheckpointError, match=f"checkpoint {ckpt} is unreadable"):
        train.train(_model(), tiny_data, tiny_config(), device="cpu", checkpoint=ckpt)
    assert not marker.exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "unreadable"),
        (b"not a zip file at all", "unreadable"),
        (None, "not a checkpoint of support.train"),  # a foreign torch file
    ],
)
def test_corrupt_or_foreign_checkpoints_are_named_with_what_to_do(
    tiny_data, tmp_path, content, message
):
    ckpt = tmp_path / "c.pt"
    if content is None:
        torch.save({"weights": torch.zeros(2)}, ckpt)
    else:
        ckpt.write_bytes(content)
    with pytest.raises(train.CheckpointError, match=message) as info:
        train.train(_model(), tiny_data, tiny_config(), device="cpu", checkpoint=ckpt)
    assert str(ckpt) in str(info.value) and (
        "delete" in str(info.value) or "another path" in str(info.value)
    )


def test_a_truncated_checkpoint_is_refused(tiny_data, tmp_path):
    ckpt = _checkpoint_after_one_epoch(tiny_data, tmp_path / "c.pt")
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    with pytest.raises(train.CheckpointError, match="unreadable"):
        train.train(_model(), tiny_data, tiny_config(), device="cpu", checkpoint=ckpt)


def test_resume_refuses_a_checkpoint_of_another_subset(tiny_data, tmp_path):
    full = data.synthetic(96, 48, num_classes=4, seed=0)
    ckpt = _checkpoint_after_one_epoch(full.subset(48, 24, seed=0), tmp_path / "c.pt")
    with pytest.raises(train.CheckpointError, match="its data differs"):
        train.train(
            _model(),
            full.subset(48, 24, seed=1),
            tiny_config(),
            device="cpu",
            checkpoint=ckpt,
        )


def test_a_finished_run_is_not_returned_for_other_data(tiny_data, tmp_path):
    ckpt = tmp_path / "c.pt"
    train.train(_model(), tiny_data, tiny_config(), device="cpu", checkpoint=ckpt)
    other = data.synthetic(64, 32, num_classes=4, seed=5)
    with pytest.raises(train.CheckpointError, match="another run"):
        train.train(_model(), other, tiny_config(), device="cpu", checkpoint=ckpt)


def test_a_failed_checkpoint_write_keeps_the_previous_one(
    tiny_data, tmp_path, monkeypatch
):
    ckpt = _checkpoint_after_one_epoch(tiny_data, tmp_path / "c.pt")
    before = ckpt.read_bytes()

    def disk_full(obj, f, *a, **k):
        f.write(b"partial")
        raise RuntimeError("basic_ios::clear: iostream error")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(
        OSError, match=f"could not write checkpoint {ckpt}.*previous checkpoint is kept"
    ):
        train.train(_model(), tiny_data, tiny_config(), device="cpu", checkpoint=ckpt)
    assert ckpt.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left


@pytest.mark.parametrize(
    "field, value, error",
    [
        ("lr", float("inf"), ValueError),
        ("lr", float("nan"), ValueError),
        ("epochs", 2.5, TypeError),
        ("momentum", -1.0, ValueError),
        ("momentum", 1.0, ValueError),
        ("seed", "x", TypeError),
        ("seed", -1, ValueError),
        ("batch_size", True, TypeError),
        ("weight_decay", float("nan"), ValueError),
        ("gamma", 0.0, ValueError),
        ("milestones", (0.75, 0.5), ValueError),
        ("milestones", (1.5,), ValueError),
        ("translate", -1, ValueError),
        ("flip", "yes", TypeError),
        ("record_layer", 3, TypeError),
    ],
)
def test_train_config_validates_every_field(field, value, error):
    """A wrong kind of value is a TypeError, an impossible value a ValueError; both name the field."""
    with pytest.raises(
        error, match=field.rstrip("s") if field == "milestones" else field
    ):
        train.TrainConfig(**{field: value})


# ------------------------------------------------------------------------------- stored results
def test_results_load_never_unpickles(tmp_path):
    results.save(
        "r",
        config={},
        arrays={"a": [1.0]},
        provenance_record=results.provenance(commit="0" * 12),
        directory=tmp_path,
    )
    marker = tmp_path / "pwned"
    np.savez(tmp_path / "r.npz", a=np.array([_Payload(str(marker))], dtype=object))
    record = json.loads((tmp_path / "r.json").read_text())
    import hashlib

    record["arrays_sha256"] = hashlib.sha256(
        (tmp_path / "r.npz").read_bytes()
    ).hexdigest()
    (tmp_path / "r.json").write_text(json.dumps(record))
    with pytest.raises(
        results.ResultError, match="cannot be read as plain arrays.*allow_pickle"
    ):
        results.load("r", tmp_path)
    assert not marker.exists()


def test_a_crash_between_the_two_renames_leaves_a_pair_that_load_refuses(
    tmp_path, monkeypatch
):
    prov = results.provenance(commit="0" * 12)
    results.save(
        "r",
        config={"v": 1},
        arrays={"a": [1.0]},
        provenance_record=prov,
        directory=tmp_path,
    )
    real_replace = os.replace

    def crash_on_json(source, target):
        if str(target).endswith(".json"):
            raise KeyboardInterrupt("killed")
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", crash_on_json)
    with pytest.raises(KeyboardInterrupt, match="killed"):
        results.save(
            "r",
            config={"v": 2},
            arrays={"a": [2.0]},
            provenance_record=prov,
            directory=tmp_path,
        )
    monkeypatch.setattr(os, "replace", real_replace)
    # temporary files removed
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "r.json",
        "r.npz",
    ]
    with pytest.raises(results.ResultError, match="checksum"):
        results.load("r", tmp_path)


# ------------------------------------------------------------------------------- the data cache
def _tiny_archive(tmp_path):
    path = tmp_path / "tiny.tar.xz"
    make_archive(path)
    return path, {"train": 6, "test": 4}


def _cache_file(cache_dir):
    (cache,) = list(Path(cache_dir).glob("cifar10-jpeg-*.npz"))
    return cache


@pytest.mark.parametrize(
    "damage",
    [
        "truncate",
        "bitflip",
        "stale_shape",
        "labels_out_of_range",
        "old_format",
        "other_decoder",
    ],
)
def test_a_damaged_or_stale_cache_is_rebuilt(tmp_path, damage):
    archive, sizes = _tiny_archive(tmp_path)
    cache_dir = tmp_path / "cache"
    good = data.load_cifar10_jpeg(
        archive, cache_dir=cache_dir, expected_sha256=None, expected_sizes=sizes
    )
    cache = _cache_file(cache_dir)
    raw = cache.read_bytes()
    if damage == "truncate":
        cache.write_bytes(raw[: len(raw) // 3])
    elif damage == "bitflip":
        flipped = bytearray(raw)
        flipped[len(raw) // 2] ^= 0xFF
        cache.write_bytes(bytes(flipped))
    else:
        with np.load(cache) as z:
            fields = {k: z[k] for k in z.files}
        if damage == "stale_shape":
            fields["train_images"] = fields["train_images"][:, :16]
        elif damage == "labels_out_of_range":
            fields["test_labels"] = fields["test_labels"] + 50
        elif damage == "old_format":
            fields["format"] = np.int64(1)
        else:
            fields["decoder"] = np.asarray("Pillow 0.0")
        np.savez(cache, **fields)
    again = data.load_cifar10_jpeg(
        archive, cache_dir=cache_dir, expected_sha256=None, expected_sizes=sizes
    )
    np.testing.assert_array_equal(again.train_images, good.train_images)
    np.testing.assert_array_equal(again.test_labels, good.test_labels)
    with np.load(_cache_file(cache_dir)) as z:  # rewritten whole
        assert z["train_images"].shape == good.train_images.shape


def test_a_failed_cache_write_only_warns_and_leaves_no_temp_file(tmp_path, monkeypatch):
    archive, sizes = _tiny_archive(tmp_path)
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()

    def no_space(file, **arrays):
        file.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", no_space)
    with pytest.warns(
        RuntimeWarning, match="could not write the decoded CIFAR-10 cache"
    ):
        decoded = data.load_cifar10_jpeg(
            archive, cache_dir=cache_dir, expected_sha256=None, expected_sizes=sizes
        )
    assert len(decoded.train_labels) == 6
    assert list(cache_dir.iterdir()) == []


# ------------------------------------------------------------------------------- the executor
@pytest.fixture
def tiny_book(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nchapters:\n  - file: book/good\n"
        "  - file: book/status\n"
    )
    (tmp_path / "book" / "intro.md").write_text("# Intro\n")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    params = nbformat.v4.new_code_cell(
        "SCALE = 'quick'\nSEED = 0\nLR = 0.1\nFAST = True\nDEPTHS = [1, 2]"
    )
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        params,
        nbformat.v4.new_code_cell("print(repr(SCALE), SEED, LR, FAST, DEPTHS)"),
    ]
    nbformat.write(nb, tmp_path / "book" / "good.ipynb")
    (tmp_path / "book" / "status.md").write_text(book.status_page(tmp_path))
    commit_all(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    "name, text, value",
    [
        ("SCALE", "paper", "paper"),
        ("SCALE", "3", "3"),
        ("SEED", "7", 7),
        ("LR", "1", 1.0),
        ("LR", "1e-3", 1e-3),
        ("FAST", "false", False),
        ("FAST", "True", True),
        ("DEPTHS", "[1, 4]", [1, 4]),
        ("DEPTHS", "(2, 3)", [2, 3]),
    ],
)
def test_parameter_values_are_plain_and_of_the_defaults_type(name, text, value):
    defaults = {"SCALE": "quick", "SEED": 0, "LR": 0.1, "FAST": True, "DEPTHS": [1, 2]}
    got = book.coerce_parameter(name, text, defaults[name])
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(
    "name, text, default, message",
    [
        ("SEED", "!!binary aW1wb3J0IG9z", 0, "expected an integer"),
        ("X", "!!python/object/apply:os.system ['id']", None, None),
        ("X", "b'\\x00'", None, "bytes value is not accepted"),
        ("X", "{1, 2}", None, "set value is not accepted"),
        ("X", "{1: 2}", None, "keys must be strings"),
        ("SEED", "2.5", 0, "expected an integer"),
        ("SEED", "True", 0, "expected an integer"),
        ("FAST", "1", True, "expected True or False"),
        ("LR", "fast", 0.1, "expected a number"),
        ("DEPTHS", "4", [1], "expected a list"),
    ],
)
def test_hostile_or_mistyped_parameter_values_are_refused_or_inert(
    name, text, default, message
):
    if message is None:  # not a literal: it stays an inert string, never interpreted
        assert book.coerce_parameter(name, text, default) == text
        return
    with pytest.raises(book.BookError, match=message):
        book.coerce_parameter(name, text, default)


def test_an_injection_attempt_through_a_string_parameter_stays_a_string(tiny_book):
    marker = tiny_book / "pwned"
    text = f'x\\\\"; open("{marker}", "w"); "'
    assert (
        book.main(
            [
                "execute",
                "good",
                "-p",
                "SCALE",
                text,
                "--out-dir",
                str(tiny_book / "_runs"),
            ],
            root=tiny_book,
        )
        == 0
    )
    assert not marker.exists()
    out = nbformat.read(tiny_book / "_runs" / "good.ipynb", as_version=4)
    printed = [
        o["text"]
        for c in out.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "text" in o
    ]
    assert printed[-1].startswith(repr(text))


def test_concurrent_executions_of_one_chapter_do_not_collide(tiny_book):
    # Two commands started at once, as two terminals would (separate processes: the working
    # directory each execution runs in is per process).
    command = [sys.executable, "-m", "support.book", "execute", "good"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    # stderr to files: a pipe that nobody reads could fill up and stall a run holding the lock
    logs = [tiny_book.parent / f"{tiny_book.name}-stderr{i}.txt" for i in range(2)]
    runs = [
        subprocess.Popen(command, cwd=tiny_book, env=env, stderr=log.open("w"))
        for log in logs
    ]
    codes = [run.wait(timeout=300) for run in runs]
    assert codes == [0, 0], [log.read_text() for log in logs]
    log = (tiny_book / book.RUN_LOG).read_text().splitlines()
    assert len(log) == 2 and all(
        json.loads(line)["chapter"] == "book/good" for line in log
    )
    assert (tiny_book / book.STATUS_PAGE).read_text() == book.status_page(tiny_book)
    assert not list((tiny_book / "book").glob(".*.tmp"))
    nbformat.validate(nbformat.read(tiny_book / "book" / "good.ipynb", as_version=4))


def test_an_unreadable_result_is_listed_not_a_crash(tiny_book):
    results_dir = tiny_book / "book" / "results"
    results_dir.mkdir()
    (results_dir / "broken.json").write_text("{not json")
    page = book.status_page(tiny_book)
    assert "| `broken` | unreadable:" in page and str(tiny_book) not in page
    problems = book.check(tiny_book)
    assert any("stored result broken is unreadable" in p for p in problems)


def test_a_failing_run_changes_neither_the_notebook_the_log_nor_the_status(tiny_book):
    path = tiny_book / "book" / "good.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].source = "raise SystemExit('boom')"
    nbformat.write(nb, path)
    before = {p: p.read_bytes() for p in (path, tiny_book / book.STATUS_PAGE)}
    assert book.main(["execute", "good"], root=tiny_book) == 1
    assert {p: p.read_bytes() for p in before} == before
    assert not (tiny_book / book.RUN_LOG).exists()


def test_an_interrupted_executor_leaves_the_notebook_untouched(tiny_book):
    path = tiny_book / "book" / "good.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].source = "import time\ntime.sleep(60)"
    nbformat.write(nb, path)
    before = path.read_bytes()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from support import book; "
            f"sys.exit(book.main(['execute', 'good'], root=__import__('pathlib').Path({str(tiny_book)!r})))",
        ],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        proc.wait(timeout=8)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    assert path.read_bytes() == before and not (tiny_book / book.RUN_LOG).exists()
    assert not [p for p in (tiny_book / "book").iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------------------------- rank measures
def test_rank_measures_survive_extreme_scales_and_complex_input():
    from support import rank

    for make in (np.eye, lambda n: torch.eye(n, dtype=torch.float64)):
        assert float(rank.spectral_entropy(1e308 * make(3))) == pytest.approx(
            np.log(3), abs=1e-12
        )
        assert float(rank.stable_rank(1e200 * make(4))) == pytest.approx(4.0)
        assert float(rank.spectral_entropy(1e-300 * make(3))) == pytest.approx(
            np.log(3), abs=1e-12
        )
    rng = np.random.default_rng(0)
    u, v = (
        rng.normal(size=(6, 1)) + 1j * rng.normal(size=(6, 1)),
        rng.normal(size=(1, 6)),
    )
    rank_one = (u @ v).astype(np.complex64)
    assert int(rank.numerical_rank(rank_one)) == 1
    assert int(rank.numerical_rank(torch.from_numpy(rank_one))) == 1
    for bad, message in [
        (float("nan"), "rtol must be finite"),
        (-1.0, "rtol must be >= 0"),
        (float("inf"), "rtol must be finite"),
    ]:
        with pytest.raises(ValueError, match=message):
            rank.numerical_rank(np.eye(3), rtol=bad)
    for bad in ("1e-3", True):
        with pytest.raises(TypeError, match="rtol must be a real number"):
            rank.numerical_rank(np.eye(3), rtol=bad)
