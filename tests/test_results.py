"""Tests of stored results with provenance (support/results.py): round trip, atomic pairs, refusals."""

import json
import subprocess

import numpy as np
import pytest

from support import paths, results


def _prov(commit="0123456789ab", **kw):
    return results.provenance(commit=commit, **kw)


def test_save_then_load_round_trips_config_scalars_arrays_and_provenance(tmp_path):
    prov = _prov(seeds=[0, 1], wall_time_s=12.3456)
    path = results.save(
        "sweep",
        config={"n": 16, "depths": [1, 2]},
        scalars={"mean": np.float64(2.5)},
        arrays={"rho": np.arange(6.0).reshape(2, 3)},
        provenance_record=prov,
        directory=tmp_path,
    )
    assert path == tmp_path / "sweep.json" and (tmp_path / "sweep.npz").exists()
    r = results.load("sweep", tmp_path)
    assert r.config == {"n": 16, "depths": [1, 2]} and r.scalars == {"mean": 2.5}
    np.testing.assert_array_equal(r.arrays["rho"], np.arange(6.0).reshape(2, 3))
    assert r.provenance["seeds"] == [0, 1] and r.provenance["wall_time_s"] == 12.346
    assert r.provenance["versions"]["numpy"] == np.__version__
    line = results.describe(r)
    assert "sweep" in line and r.provenance["device"] in line and "seeds [0, 1]" in line
    assert not list(tmp_path.glob(".*")), "temporary files must be renamed away"


def test_missing_result_loads_as_none(tmp_path):
    assert results.load("never_computed", tmp_path) is None


def test_incomplete_provenance_and_missing_arrays_are_errors(tmp_path):
    with pytest.raises(ValueError, match="lacks"):
        results.save(
            "x", config={}, provenance_record={"commit": "abc"}, directory=tmp_path
        )
    results.save(
        "y", config={}, arrays={"a": [1]}, provenance_record=_prov(), directory=tmp_path
    )
    (tmp_path / "y.npz").unlink()
    with pytest.raises(results.ResultError, match="y.npz cannot be read"):
        results.load("y", tmp_path)


def test_unstorable_values_are_refused_before_anything_is_written(tmp_path):
    results.save(
        "z",
        config={"v": 1},
        arrays={"a": [1.0]},
        provenance_record=_prov(),
        directory=tmp_path,
    )
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(TypeError, match="cannot store object"):
        results.save(
            "z",
            config={"f": object()},
            arrays={"a": [2.0]},
            provenance_record=_prov(),
            directory=tmp_path,
        )
    with pytest.raises(TypeError, match="dtype object"):
        results.save(
            "z",
            config={},
            arrays={"a": np.array([{}], dtype=object)},
            provenance_record=_prov(),
            directory=tmp_path,
        )
    assert {
        p.name: p.read_bytes() for p in tmp_path.iterdir()
    } == before  # old pair intact, no temp files
    assert results.load("z", tmp_path).arrays["a"].tolist() == [1.0]


def test_a_half_finished_save_is_detected(tmp_path):
    """New arrays beside old metadata (a crash between the two renames) must not load."""
    results.save(
        "r",
        config={"run": 1},
        arrays={"a": [1.0]},
        provenance_record=_prov(),
        directory=tmp_path,
    )
    old_json = (tmp_path / "r.json").read_text()
    results.save(
        "r",
        config={"run": 2},
        arrays={"a": [2.0]},
        provenance_record=_prov(),
        directory=tmp_path,
    )
    (tmp_path / "r.json").write_text(old_json)
    with pytest.raises(results.ResultError, match="does not match the checksum"):
        results.load("r", tmp_path)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda r: "{not json", "unreadable"),
        (lambda r: json.dumps({**r, "format_version": 99}), "format version 99"),
        (
            lambda r: json.dumps({k: v for k, v in r.items() if k != "format_version"}),
            "format version None",
        ),
        (lambda r: json.dumps({**r, "name": "other"}), "named 'other' inside"),
        (
            lambda r: json.dumps({**r, "arrays": ["a", "b"]}),
            r"lacks the arrays \['b'\]",
        ),
    ],
)
def test_damaged_records_are_refused_naming_the_file(tmp_path, damage, message):
    results.save(
        "d",
        config={},
        arrays={"a": [1.0]},
        provenance_record=_prov(),
        directory=tmp_path,
    )
    record = json.loads((tmp_path / "d.json").read_text())
    (tmp_path / "d.json").write_text(damage(record))
    with pytest.raises(results.ResultError, match=message) as info:
        results.load("d", tmp_path)
    assert "d.json" in str(info.value) or "d.npz" in str(info.value)


def test_results_from_a_dirty_tree_are_refused_unless_allowed(tmp_path):
    for commit, message in [
        ("abc-dirty", "uncommitted changes"),
        ("unknown", "git is not installed or this folder is not a git checkout"),
        (None, "names no commit"),
        ("", "names no commit"),
        ("  ", "names no commit"),
    ]:
        with pytest.raises(results.ResultError, match=message):
            results.save(
                "p",
                config={},
                provenance_record=_prov(commit=commit) | {"commit": commit},
                directory=tmp_path,
            )
    assert not (tmp_path / "p.json").exists()
    results.save(
        "p",
        config={},
        provenance_record=_prov(commit="abc-dirty"),
        directory=tmp_path,
        allow_dirty=True,
    )
    assert results.load("p", tmp_path).provenance["commit"] == "abc-dirty"


def test_cached_loads_or_computes_and_stores(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "git_commit", lambda *a, **k: "0123456789ab")
    calls = []

    def compute():
        calls.append(1)
        return {"config": {"n": 3}, "arrays": {"x": np.arange(3)}, "seeds": [7]}

    first = results.cached("c", compute, directory=tmp_path)
    second = results.cached("c", compute, directory=tmp_path)
    assert (
        len(calls) == 1
        and second.arrays["x"].tolist() == [0, 1, 2]
        and first.provenance["seeds"] == [7]
    )
    results.cached("c", compute, recompute=True, directory=tmp_path)
    assert len(calls) == 2
    with pytest.raises(ValueError, match="must return config"):
        results.cached("bad", lambda: {"arrays": {}}, directory=tmp_path)
    monkeypatch.setattr(results, "git_commit", lambda *a, **k: "0123456789ab-dirty")
    with pytest.raises(results.ResultError, match="uncommitted"):
        results.cached("d", compute, directory=tmp_path)
    assert len(calls) == 2  # refused before computing anything


def test_result_names_cannot_escape_the_folder(tmp_path):
    for bad in ("../x", "a/b", ".hidden", ""):
        with pytest.raises(ValueError, match="plain file stem"):
            results.save(bad, config={}, provenance_record=_prov(), directory=tmp_path)


def test_git_commit_outside_a_repository_is_unknown(tmp_path):
    assert results.git_commit(tmp_path) == "unknown"
    assert len(results.git_commit().split("-")[0]) == 12


def test_every_stored_result_in_the_book_loads_with_complete_clean_provenance():
    folder = paths.repository_root() / "book" / "results"
    names = sorted(p.stem for p in folder.glob("*.json"))
    assert names
    for name in names:
        r = results.load(name, folder)  # format, name, checksum and arrays checked
        prov = r.provenance
        for key in ("commit", "device", "versions", "seeds", "wall_time_s", "date"):
            assert key in prov, f"{name}: provenance lacks {key}"
        assert prov["commit"] != "unknown" and not prov["commit"].endswith("-dirty"), (
            f"{name}: {prov['commit']}"
        )


def test_git_commit_marks_changes_dirty_except_ignored_paths(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "log.txt").write_text("")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    assert not results.git_commit(tmp_path).endswith("-dirty")
    (tmp_path / "log.txt").write_text("a run\n")
    assert results.git_commit(tmp_path).endswith("-dirty")
    assert not results.git_commit(tmp_path, ignore=("log.txt",)).endswith("-dirty")
    (tmp_path / "code.py").write_text("x = 2\n")
    assert results.git_commit(tmp_path, ignore=("log.txt",)).endswith("-dirty")


def _git_repo(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / ".gitignore").write_text("scratch/\n*.log\n")
    (tmp_path / "support").mkdir()
    (tmp_path / "support" / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    assert not results.git_commit(tmp_path).endswith("-dirty")
    return tmp_path


def test_an_untracked_module_makes_the_tree_dirty(tmp_path):
    repo = _git_repo(tmp_path)
    (repo / "support" / "new_module.py").write_text("y = 2\n")
    assert results.git_commit(repo).endswith("-dirty")


def test_only_gitignored_untracked_files_leave_the_tree_clean(tmp_path):
    repo = _git_repo(tmp_path)
    (repo / "scratch").mkdir()
    (repo / "scratch" / "out.npz").write_bytes(b"x")
    (repo / "run.log").write_text("a run\n")
    assert not results.git_commit(repo).endswith("-dirty")
    (repo / "scratch.py").write_text("z = 3\n")  # beside them, not ignored
    assert results.git_commit(repo).endswith("-dirty")


def test_without_git_the_commit_is_unknown_and_the_refusal_says_why(
    tmp_path, monkeypatch
):
    repo = _git_repo(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    assert results.git_commit(repo) == "unknown"
    with pytest.raises(results.ResultError, match="git is not installed"):
        results.require_clean("unknown", "result 'x'")


def test_integer_config_keys_round_trip(tmp_path):
    config = {"widths": {1: 8, 16: [2, {3: "a"}]}, "name": "x"}
    results.save("k", config=config, provenance_record=_prov(), directory=tmp_path)
    assert results.load("k", tmp_path).config == config
    with pytest.raises(TypeError, match="keys must be strings or integers"):
        results.save(
            "k2", config={1.5: 0}, provenance_record=_prov(), directory=tmp_path
        )
    with pytest.raises(ValueError, match="reserved"):
        results.save(
            "k3",
            config={"__int_keys__": 0},
            provenance_record=_prov(),
            directory=tmp_path,
        )
