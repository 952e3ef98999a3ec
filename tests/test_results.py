"""Tests of stored results with provenance (support/results.py)."""
import json

import numpy as np
import pytest

from support import results


def test_save_then_load_round_trips_config_scalars_arrays_and_provenance(tmp_path):
    prov = results.provenance(seeds=[0, 1], wall_time_s=12.3456)
    path = results.save("sweep", config={"n": 16, "depths": [1, 2]}, scalars={"mean": np.float64(2.5)},
                        arrays={"rho": np.arange(6.0).reshape(2, 3)}, provenance_record=prov, directory=tmp_path)
    assert path == tmp_path / "sweep.json" and (tmp_path / "sweep.npz").exists()
    r = results.load("sweep", tmp_path)
    assert r.config == {"n": 16, "depths": [1, 2]} and r.scalars == {"mean": 2.5}
    np.testing.assert_array_equal(r.arrays["rho"], np.arange(6.0).reshape(2, 3))
    assert r.provenance["seeds"] == [0, 1] and r.provenance["wall_time_s"] == 12.346
    assert r.provenance["versions"]["numpy"] == np.__version__
    line = results.describe(r)
    assert "sweep" in line and r.provenance["device"] in line and "seeds [0, 1]" in line
    assert not list(tmp_path.glob(".*tmp*")), "temporary files must be renamed away"


def test_missing_result_loads_as_none(tmp_path):
    assert results.load("never_computed", tmp_path) is None


def test_incomplete_provenance_and_missing_arrays_are_errors(tmp_path):
    with pytest.raises(ValueError, match="lacks"):
        results.save("x", config={}, provenance_record={"commit": "abc"}, directory=tmp_path)
    results.save("y", config={}, arrays={"a": [1]}, provenance_record=results.provenance(), directory=tmp_path)
    (tmp_path / "y.npz").unlink()
    with pytest.raises(FileNotFoundError, match="y.npz is missing"):
        results.load("y", tmp_path)


def test_unstorable_values_are_refused(tmp_path):
    with pytest.raises(TypeError, match="cannot store object"):
        results.save("z", config={"f": object()}, provenance_record=results.provenance(), directory=tmp_path)


def test_git_commit_outside_a_repository_is_unknown(tmp_path):
    assert results.git_commit(tmp_path) == "unknown"
    assert len(results.git_commit().split("-")[0]) == 12


def test_every_stored_result_in_the_book_has_complete_provenance():
    for path in sorted(results.RESULTS_DIR.glob("*.json")):
        record = json.loads(path.read_text())
        prov = record["provenance"]
        for key in ("commit", "device", "versions", "seeds", "wall_time_s", "date"):
            assert key in prov, f"{path.name}: provenance lacks {key}"
        assert prov["commit"] != "unknown", f"{path.name}: computed outside the repository"
        for name in record["arrays"]:
            assert name in np.load(path.with_suffix(".npz")).files, f"{path.name}: array {name} missing"


def test_git_commit_marks_changes_dirty_except_ignored_paths(tmp_path):
    import subprocess

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
