"""Tests of support.train: schedules, precision choice, training, exact resume, stops, DDP, statistics."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY, tiny_config
from scipy import stats

from support import data, train
from support.expand import expanded_layers
from support.experiments import cifar_expanded

REPO = Path(__file__).resolve().parents[1]


def test_lr_schedules():
    cfg = tiny_config(schedule="linear", warmup=0.25)
    f = [train.lr_factor(s, 8, cfg) for s in range(8)]
    np.testing.assert_allclose(f, [0.5, 1.0, 1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6])
    cos = tiny_config(schedule="cosine", warmup=0.0)
    assert train.lr_factor(0, 10, cos) == pytest.approx(1.0) and train.lr_factor(
        5, 10, cos
    ) == pytest.approx(0.5)
    step = tiny_config(schedule="step", milestones=(0.5, 0.75), gamma=0.1)
    assert [train.lr_factor(s, 4, step) for s in range(4)] == pytest.approx(
        [1, 1, 0.1, 0.01]
    )
    assert train.lr_factor(3, 4, tiny_config(schedule="constant")) == 1.0


@pytest.mark.parametrize(
    "bad, error, message",
    [
        (dict(epochs=0), ValueError, "epochs must be >= 1"),
        (dict(epochs=2.5), TypeError, "epochs must be an integer"),
        (dict(lr=-1.0), ValueError, "lr must be > 0"),
        (dict(lr="0.1"), TypeError, "lr must be a real number"),
        (dict(lr=float("nan")), ValueError, "lr must be finite"),
        (dict(schedule="poly"), ValueError, "schedule must be one of"),
        (dict(precision="fp8"), ValueError, "precision must be one of"),
        (dict(warmup=1.0), ValueError, "warmup must be < 1"),
        (dict(label_smoothing=1.0), ValueError, "label_smoothing must be < 1"),
        (dict(check_every=0), ValueError, "check_every must be >= 1"),
        (dict(flip=1), TypeError, "flip must be True or False"),
        (dict(milestones="0.5"), TypeError, "milestones must be a sequence"),
        (dict(milestones=(0.75, 0.5)), ValueError, "milestones must be increasing"),
        (dict(weight_decay_on="all"), ValueError, "weight_decay_on must be one of"),
    ],
)
def test_config_validation(bad, error, message):
    with pytest.raises(error, match=message):
        tiny_config(**bad)


def test_config_accepts_numpy_scalars_as_plain_numbers():
    config = tiny_config(lr=np.float32(0.05), epochs=np.int64(2), flip=np.bool_(True))
    assert type(config.lr) is float and type(config.epochs) is int
    assert config.flip is True and json.dumps(config.to_dict())


def test_precision_by_device(monkeypatch):
    assert train.precision_for("cpu") == "fp32"
    with pytest.raises(ValueError, match="precision"):
        train.precision_for("cpu", "int8")
    monkeypatch.setattr(
        torch.cuda, "get_device_capability", lambda device=None: (7, 5)
    )  # T4
    assert train.precision_for("cuda") == "fp16"
    monkeypatch.setattr(
        torch.cuda, "get_device_capability", lambda device=None: (9, 0)
    )  # H100
    assert train.precision_for("cuda") == "bf16"
    assert train.precision_for("cuda", "fp32") == "fp32"


def test_mixed_precision_paths_track_fp32(tiny_data):
    """bf16 autocast and fp16 autocast with the gradient scaler (the GPU code paths, run on the CPU)."""
    runs = {}
    for precision in ("fp32", "bf16", "fp16"):
        model = train.build_model("plain", 4, depth=2, seed=0, model_kwargs=TINY)
        runs[precision] = train.train(
            model, tiny_data, tiny_config(epochs=2, precision=precision), device="cpu"
        )
        assert runs[precision].precision == precision
        assert (
            next(runs[precision].model.parameters()).dtype == torch.float32
        )  # master weights stay fp32
    for precision in ("bf16", "fp16"):
        np.testing.assert_allclose(
            runs[precision].history["train_loss"],
            runs["fp32"].history["train_loss"],
            rtol=0.05,
        )


def test_training_learns_and_evaluates_the_collapsed_model(tiny_data):
    model = train.build_model("plain", 4, depth=2, seed=0, model_kwargs=TINY)
    config = tiny_config(
        epochs=6, lr=0.05, translate=0, flip=False, record_layer="body.4"
    )
    result = train.train(model, tiny_data, config, device="cpu")
    assert (
        result.final["test_acc"] > 0.6
    )  # chance is 0.25; the synthetic classes are easy
    assert result.history["train_loss"][-1] < result.history["train_loss"][0]
    assert not expanded_layers(result.model)  # collapsed: plain layers only
    _, _, test_loader = data.loaders(tiny_data, 16)
    assert train.evaluate(result.model, test_loader)["acc"] == pytest.approx(
        result.final["test_acc"]
    )
    assert train.evaluate(model, test_loader)["acc"] == pytest.approx(
        result.final["test_acc"]
    )  # expanded alike
    assert result.spectra.shape == (7, 8)  # init + 6 epochs, 8 filters in body.4
    np.testing.assert_allclose(
        result.spectra[-1], train.layer_singular_values(result.model, "body.4")
    )
    assert np.all(np.diff(result.spectra, axis=1) <= 1e-12)  # descending
    assert (
        np.isnan(result.history["train_acc"][0]) and 0 <= result.final["train_acc"] <= 1
    )


def test_interrupted_then_resumed_run_is_bit_identical(tiny_data, tmp_path):
    cfg = tiny_config(epochs=3, record_layer="body.0")
    straight = train.train(
        train.build_model("plain", 4, depth=2, seed=3, model_kwargs=TINY),
        tiny_data,
        cfg,
        device="cpu",
        checkpoint=tmp_path / "a.pt",
    )
    first = train.train(
        train.build_model("plain", 4, depth=2, seed=3, model_kwargs=TINY),
        tiny_data,
        cfg,
        device="cpu",
        checkpoint=tmp_path / "b.pt",
        stop_after_epoch=1,
    )
    assert first.final["epochs_done"] == 1
    torch.manual_seed(
        12345
    )  # a resumed process starts from another RNG state and a fresh model
    resumed = train.train(
        train.build_model("plain", 4, depth=2, seed=99, model_kwargs=TINY),
        tiny_data,
        cfg,
        device="cpu",
        checkpoint=tmp_path / "b.pt",
    )
    assert resumed.resumed_from_epoch == 1
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    np.testing.assert_equal(
        straight.history, resumed.history
    )  # NaN train_acc entries compare equal
    np.testing.assert_array_equal(straight.spectra, resumed.spectra)

    def model(depth=2):
        return train.build_model("plain", 4, depth=depth, seed=3, model_kwargs=TINY)

    other_data = data.synthetic(96, 48, num_classes=4, seed=1)
    for part, args in (
        ("model", (model(1), tiny_data, cfg)),
        ("config", (model(), tiny_data, tiny_config(epochs=4))),
        ("data", (model(), other_data, cfg)),
    ):
        with pytest.raises(
            train.CheckpointError, match=f"made for another run \\(its {part} differs"
        ):
            train.train(*args, device="cpu", checkpoint=tmp_path / "b.pt")


def test_non_finite_loss_stops_clearly(tiny_data):
    model = train.build_model(
        "plain", 4, seed=0, model_kwargs={"widths": [4, 8], "batch_norm": False}
    )
    with pytest.raises(
        train.NonFiniteLossError, match="non-finite training loss at epoch 1"
    ):
        train.train(
            model,
            tiny_data,
            tiny_config(lr=1e12, warmup=0.0, schedule="constant", check_every=1),
            device="cpu",
        )


def test_paired_difference_matches_scipy():
    rng = np.random.default_rng(0)
    base = rng.normal(0.9, 0.01, size=6)
    treat = base + rng.normal(0.005, 0.003, size=6)
    got = train.paired_difference(treat, base, confidence=0.9)
    ci = stats.ttest_rel(treat, base).confidence_interval(0.9)
    assert got["mean"] == pytest.approx(np.mean(treat - base))
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((ci.low, ci.high))
    with pytest.raises(ValueError, match="at least 2"):
        train.paired_difference([1.0], [0.5])
    with pytest.raises(ValueError, match="equal length"):
        train.paired_difference([1.0, 2.0], [0.5])


@pytest.mark.distributed
def test_ddp_with_gloo_matches_one_process(tiny_data, tmp_path, capsys):
    """torchrun, 2 CPU processes: same final weights as one process with the same global batch."""
    kwargs = '{"widths": [4, 8], "batch_norm": false}'
    args = [
        "--model",
        "plain",
        "--model-kwargs",
        kwargs,
        "--synthetic",
        "64",
        "32",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--lr",
        "0.05",
        "--device",
        "cpu",
        "--seed",
        "1",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "support.experiments.cifar_expanded",
        "train",
        *args,
        "--save-state",
        str(tmp_path / "ddp.pt"),
    ]
    proc = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (
        cifar_expanded.main(["train", *args, "--save-state", str(tmp_path / "one.pt")])
        == 0
    )
    final_one = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["final"]
    final_ddp = json.loads(proc.stdout.strip().splitlines()[-1])["final"]
    for key in (
        "test_acc",
        "train_acc",
        "test_loss",
        "train_loss",
    ):  # evaluations summed over processes
        assert final_ddp[key] == pytest.approx(final_one[key], abs=1e-4), key
    ddp, one = torch.load(tmp_path / "ddp.pt"), torch.load(tmp_path / "one.pt")
    assert ddp.keys() == one.keys()
    for k in ddp:
        torch.testing.assert_close(ddp[k], one[k], atol=1e-5, rtol=1e-4)
    moved = any(
        not torch.equal(one[k], v)
        for k, v in train.build_model(
            "plain", 10, seed=1, model_kwargs={"widths": [4, 8], "batch_norm": False}
        )
        .state_dict()
        .items()
    )
    assert moved  # training changed the weights, so agreement is not trivial


REFERENCES = REPO / "tests" / "data"


def _reference_run(tiny_data, weight_decay_on="factors"):
    """A tiny expanded training run whose final weights and history pin the trainer's arithmetic."""
    cfg = tiny_config(epochs=2, record_layer="body.4")
    if weight_decay_on != "factors":
        cfg = dataclasses.replace(cfg, weight_decay_on=weight_decay_on)
    model = train.build_model("plain", 4, depth=2, seed=5, model_kwargs=TINY)
    result = train.train(model, tiny_data, cfg, device="cpu")
    arrays = {f"state/{k}": v.numpy() for k, v in result.model.state_dict().items()}
    arrays.update({f"history/{k}": np.asarray(v) for k, v in result.history.items()})
    arrays["spectra"] = result.spectra
    return arrays


def _machine() -> str:
    from support.hardware import cpu_description

    return f"{cpu_description()}; torch {torch.__version__.split('+')[0]}"


@pytest.mark.parametrize(
    "mode, stem",
    [("factors", "train_reference"), ("collapsed", "train_reference_collapsed")],
)
def test_training_is_bit_identical_to_the_recorded_reference(
    tiny_data, one_thread, mode, stem
):
    """Refactors of the trainer, the data loader, the seeding or expand must not change training:
    the stored long runs were made by the code that wrote these references. Each reference file
    (``tests/data/<stem>*.npz``) was recorded on one machine; on a machine that recorded one the
    check is exact, elsewhere (other CPU kernels) equal to float32 rounding. A new machine's
    reference is recorded from the commit that made the stored results (so the exact check then
    compares today's trainer with that one): ``WRITE_TRAIN_REFERENCE=<suffix> pytest -k reference``
    writes ``<stem>-<suffix>.npz``; rewrite only for a deliberate change."""
    arrays = _reference_run(tiny_data, mode)
    suffix = os.environ.get("WRITE_TRAIN_REFERENCE")
    if suffix:
        path = REFERENCES / f"{stem}-{suffix}.npz"
        np.savez(path, machine=np.asarray(_machine()), **arrays)
        pytest.skip(f"reference written to {path}")
    files = sorted(REFERENCES.glob(f"{stem}-*.npz")) + sorted(
        REFERENCES.glob(f"{stem}.npz")
    )
    assert files, f"no reference {stem}*.npz in {REFERENCES}"
    recorded = {}
    for path in files:
        with np.load(path, allow_pickle=False) as ref:
            recorded[str(ref["machine"]).split("+")[0]] = {k: ref[k] for k in ref.files}
    exact = _machine() in recorded
    ref = recorded[_machine()] if exact else next(iter(recorded.values()))
    assert sorted(k for k in ref if k != "machine") == sorted(arrays)
    for key, value in arrays.items():
        if exact:
            np.testing.assert_array_equal(value, ref[key], err_msg=key)
        else:
            np.testing.assert_allclose(
                value, ref[key], rtol=1e-4, atol=1e-6, err_msg=key
            )


def test_deployable_returns_a_model_with_a_module_attribute_whole():
    """A network whose own submodule is called ``module`` is no wrapper: it comes back whole."""

    class Holder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.module = torch.nn.Linear(3, 2)

        def forward(self, x):
            return self.module(x)

    holder = Holder()
    assert train.deployable(holder) is holder
    wrapped = torch.nn.DataParallel(holder)
    assert train.deployable(wrapped) is holder


def test_a_checkpoint_that_cannot_be_written_stops_before_training(tiny_data, tmp_path):
    calls = []
    model = train.build_model("plain", 4, depth=2, model_kwargs=TINY)
    config = tiny_config(epochs=1)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match="cannot be created"):
        train.train(
            model,
            tiny_data,
            config,
            device="cpu",
            checkpoint=blocker / "x.pt",
            log=calls.append,
        )
    folder = tmp_path / "folder.pt"
    folder.mkdir()
    with pytest.raises(OSError, match="is a folder, not a regular file"):
        train.train(
            model, tiny_data, config, device="cpu", checkpoint=folder, log=calls.append
        )
    assert calls == []  # no epoch ran


def test_checkpoint_write_does_not_follow_a_planted_link(tiny_data, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    target = tmp_path / "run.pt"
    for pid in range(os.getpid() - 2, os.getpid() + 3):  # the old predictable names
        (tmp_path / f".run.pt.{pid}.tmp").symlink_to(victim)
    model = train.build_model("plain", 4, depth=2, model_kwargs=TINY)
    train.train(
        model, tiny_data, tiny_config(epochs=1), device="cpu", checkpoint=target
    )
    assert victim.read_text() == "keep me" and target.stat().st_size > 0


def test_a_newer_checkpoint_is_not_answered_with_delete_it(tiny_data, tmp_path):
    ckpt = tmp_path / "c.pt"
    model = train.build_model("plain", 4, depth=np.int64(2), model_kwargs=TINY)
    train.train(model, tiny_data, tiny_config(epochs=1), device="cpu", checkpoint=ckpt)
    payload = torch.load(ckpt, weights_only=True)
    payload["version"] = train.CHECKPOINT_VERSION + 1
    torch.save(payload, ckpt)
    with pytest.raises(train.CheckpointError, match="newer than this trainer"):
        train.train(
            train.build_model("plain", 4, depth=2, model_kwargs=TINY),
            tiny_data,
            tiny_config(epochs=2),
            device="cpu",
            checkpoint=ckpt,
        )
