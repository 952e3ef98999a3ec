"""Recipes of the chapter *Expanded CNNs on CIFAR*: the CPU study, the GPU grid, one-run training.

* ``STUDIES`` and :func:`run_study`: the study of the paper's classification claim in its own
  regime, at a size two CPU cores can train: a CIFAR-10 training subset, the full test set, a
  plain CNN trained as a baseline and with every layer expanded into 2 and 4 factors, the same
  step schedule for every arm (the paper's 180 epochs with learning-rate drops at 60 and 120),
  five paired seeds. Runs go seed by seed (all depths of seed 0, then of seed 1, ...) and the
  result is stored after every seed, so whatever has finished is a complete paired set; every
  run checkpoints each epoch, so a rerun resumes.
* ``GRIDS`` and :func:`run_grid`: the paper-scale grid (all of CIFAR-10, a fast CNN in the
  spirit of the speed records and the plain CNN; GPU).
* :func:`run_experiment` trains every (depth, seed) pair of one architecture and
  :func:`summarize` reduces it to means, standard deviations and paired intervals.

Command line::

    # the CPU study (hours), its step-time ratio, the GPU grid, one run (torchrun too)
    python -m support.experiments.cifar_expanded study plain5k
    python -m support.experiments.cifar_expanded steptime --save
    python -m support.experiments.cifar_expanded grid --scale gpu --budget-s 420
    python -m support.experiments.cifar_expanded train --model plain --depth 4 ...
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from support import data as data_mod
from support import models, paths, results
from support.expand import count_parameters
from support.experiments import command_line as cli
from support.hardware import resolve_device
from support.train import (
    TrainConfig,
    build_model,
    embedding_rho,
    paired_difference,
    train,
)

DEPTHS = (1, 2, 4)


def measure_run(
    data: data_mod.ImageArrays,
    model_name: str,
    *,
    depth: int,
    config: TrainConfig,
    model_kwargs: dict | None = None,
    width: float = 1.0,
    device="cpu",
    checkpoint=None,
    rho_loader=None,
    rho_examples: int = 500,
    whitening=None,
) -> dict:
    """Build ``model_name`` at expansion ``depth`` from ``config.seed``, train it on ``data`` and
    measure it; return one run's numbers.

    The keys: ``test_acc``, ``train_acc`` (final epoch, collapsed network), ``training_time_s``,
    ``history`` (per epoch: test and train accuracy and loss, learning rate), ``spectra`` (the
    recorded layer's singular values at initialisation and after every epoch, or None),
    ``params`` (trainable, during training), ``params_deployed`` and ``flops_deployed`` (the
    collapsed network), ``device``, ``precision`` and, with ``rho_loader``, ``embedding_rho_init``
    and ``embedding_rho`` (:func:`support.train.embedding_rho` before and after training).
    With ``checkpoint`` the run checkpoints there every epoch and resumes from it.
    """
    model = build_model(
        model_name,
        data.num_classes,
        depth=depth,
        width=width,
        seed=config.seed,
        model_kwargs=model_kwargs,
        whitening_images=whitening,
    )
    run = {"params": count_parameters(model)}
    if rho_loader is not None:
        run["embedding_rho_init"] = embedding_rho(
            model.to(device), rho_loader, rho_examples
        )
    result = train(model, data, config, device=device, checkpoint=checkpoint)
    run.update(
        test_acc=result.final["test_acc"],
        train_acc=result.final["train_acc"],
        training_time_s=result.training_time_s,
        history={key: result.history[key] for key in HISTORY_FIELDS},
        spectra=result.spectra,
        params_deployed=count_parameters(result.model),
        flops_deployed=models.count_flops(result.model),
        device=result.device,
        precision=result.precision,
    )
    if rho_loader is not None:
        run["embedding_rho"] = embedding_rho(result.model, rho_loader, rho_examples)
    return run


HISTORY_FIELDS = ("test_acc", "test_loss", "train_acc", "train_loss", "lr")


def run_experiment(
    data: data_mod.ImageArrays,
    model_name: str,
    *,
    depths=DEPTHS,
    seeds=(0, 1, 2),
    config: TrainConfig,
    model_kwargs: dict | None = None,
    width: float = 1.0,
    device="auto",
    checkpoint_dir=None,
    log=None,
    rho_examples: int = 500,
    on_seed_done=None,
) -> dict:
    """Train ``model_name`` at every expansion depth (1 = baseline) for every seed; collect the results.

    Runs go seed by seed: all depths of the first seed, then of the next. Run ``(depth, seed)``
    uses ``config`` with ``seed`` replaced, so baseline and expanded runs of one seed see the same
    batches and augmentations (a paired comparison). Returns a dict of numpy arrays indexed
    ``[depth, seed]``: ``test_acc``, ``train_acc``, ``embedding_rho`` (trained) and
    ``embedding_rho_init``, ``training_time_s``; per epoch ``history_<key>`` ``[depth, seed,
    epoch]`` for test and train accuracy and loss and the learning rate; ``spectra`` ``[depth,
    seed, epoch + 1, k]`` when ``config.record_layer`` is set; per depth ``params`` (trainable,
    during training), ``params_deployed`` and ``flops_deployed`` of the collapsed network; and
    ``seeds_done``, the number of seeds whose every depth has finished (entries beyond it are
    NaN). ``on_seed_done(out)`` is called after each seed. With ``checkpoint_dir`` each run
    checkpoints there every epoch, so rerunning after an interruption resumes.
    """
    whitening = whitening_images(data, model_name)
    device = resolve_device(device)
    rho_examples = min(rho_examples, len(data.test_labels))
    rho_loader = embedding_loader(data, rho_examples, device)
    out = empty_table((len(depths), len(seeds)), config.epochs, len(depths))
    for j, seed in enumerate(seeds):
        for i, depth in enumerate(depths):
            ckpt = (
                None
                if checkpoint_dir is None
                else Path(checkpoint_dir) / f"{model_name}-d{depth}-s{seed}.pt"
            )
            run = measure_run(
                data,
                model_name,
                depth=depth,
                config=dataclasses.replace(config, seed=seed),
                model_kwargs=model_kwargs,
                width=width,
                device=device,
                checkpoint=ckpt,
                rho_loader=rho_loader,
                rho_examples=rho_examples,
                whitening=whitening,
            )
            fill_table(out, (i, j), run)
            if log is not None:
                log(
                    f"{model_name} depth {depth} seed {seed}: test {run['test_acc']:.4f}, "
                    f"train {run['train_acc']:.4f}, {run['training_time_s']:.0f} s training"
                )
        out["seeds_done"] = np.int64(j + 1)
        if on_seed_done is not None:
            on_seed_done(out)
    return out


def whitening_images(data: data_mod.ImageArrays, model_name: str):
    """The normalised training images the fast CNN sets its frozen whitening layer from (None for
    other models)."""
    if model_name != "fast":
        return None
    mean, std = data_mod.NORMALIZATION[data.name]
    return data_mod.normalized_tensor(data.train_images[:5000], mean, std)


def embedding_loader(data: data_mod.ImageArrays, examples: int, device):
    """An evaluation loader over the first ``examples`` test images (for embedding rho)."""
    mean, std = data_mod.NORMALIZATION[data.name]
    return data_mod.DeviceLoader(
        data.test_images[:examples],
        data.test_labels[:examples],
        500,
        train=False,
        device=device,
        mean=mean,
        std=std,
    )


def empty_table(shape: tuple, epochs: int, n_models: int) -> dict:
    """NaN-filled arrays for runs indexed ``shape`` (e.g. ``[depth, seed]``) of ``epochs`` epochs,
    and per-model parameter and FLOP counts (``n_models`` = ``shape[0]``)."""
    out = {
        k: np.full(shape, np.nan)
        for k in (
            "test_acc",
            "train_acc",
            "embedding_rho",
            "embedding_rho_init",
            "training_time_s",
        )
    }
    for key in HISTORY_FIELDS:
        out[f"history_{key}"] = np.full((*shape, epochs), np.nan)
    out.update(
        params=np.zeros(n_models, np.int64),
        params_deployed=np.zeros(n_models, np.int64),
        flops_deployed=np.zeros(n_models, np.int64),
        seeds_done=np.int64(0),
    )
    return out


def fill_table(out: dict, index: tuple, run: dict) -> None:
    """Write one :func:`measure_run` result into the arrays of :func:`empty_table` at ``index``
    (``(model, seed)``)."""
    for key in ("test_acc", "train_acc", "training_time_s"):
        out[key][index] = run[key]
    for key in ("embedding_rho_init", "embedding_rho"):
        if key in run:
            out[key][index] = run[key]
    for key in HISTORY_FIELDS:
        out[f"history_{key}"][index] = run["history"][key]
    if run["spectra"] is not None:
        if "spectra" not in out:
            shape = out["test_acc"].shape
            out["spectra"] = np.full(
                (*shape, *run["spectra"].shape), np.nan, dtype=np.float32
            )
        out["spectra"][index] = run["spectra"]
    model = index[0]
    for key in ("params", "params_deployed", "flops_deployed"):
        out[key][model] = run[key]
    out["device"], out["precision"] = run["device"], run["precision"]


def summarize(out: dict, depths, confidence: float = 0.95) -> dict:
    """:func:`summarize_arms` for one network per expansion depth, keyed ``depth_<d>``."""
    return summarize_arms(out, [f"depth_{d}" for d in depths], confidence)


def summarize_arms(out: dict, labels, confidence: float = 0.95) -> dict:
    """Mean and standard deviation over the finished seeds of every arm's test and train accuracy
    and embedding rho, and each later arm's paired difference to the first (the baseline) with
    its t-interval (:func:`support.train.paired_difference`, when at least two seeds finished)."""
    done = int(out["seeds_done"])
    summary = {}
    for i, label in enumerate(labels):
        entry = {}
        for key in ("test_acc", "train_acc", "embedding_rho", "embedding_rho_init"):
            values = out[key][i, :done]
            entry[key] = {
                "mean": float(np.mean(values)) if done else float("nan"),
                "std": float(np.std(values, ddof=1)) if done > 1 else float("nan"),
            }
        if i > 0 and done >= 2:
            for key in ("test_acc", "train_acc"):
                entry[f"{key}_minus_baseline"] = paired_difference(
                    out[key][i, :done], out[key][0, :done], confidence
                )
        summary[label] = entry
    return summary


def _arrays(out: dict) -> dict:
    return {k: v for k, v in out.items() if isinstance(v, (np.ndarray, np.generic))}


# ---------------------------------------------------------------------------------- the CPU study
@dataclass(frozen=True)
class Study:
    """One regime of the CPU study: data size, augmentation, network and the shared recipe."""

    name: str
    n_train: int
    augment: bool
    model_kwargs: dict
    seeds: tuple = (0, 1, 2, 3, 4)
    depths: tuple = DEPTHS
    epochs: int = 180
    batch_size: int = 128
    lr: float = 0.05
    record_layer: str = "body.12"
    rho_examples: int = 1000

    @property
    def result_name(self) -> str:
        return f"cifar_study_{self.name}"

    def config(self) -> TrainConfig:
        """The recipe every arm shares: SGD with momentum 0.9, weight decay 5e-4, no label smoothing,
        the learning rate divided by 10 after 1/3 and 2/3 of training (the paper's 60/120 of 180)."""
        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            momentum=0.9,
            nesterov=False,
            weight_decay=5e-4,
            label_smoothing=0.0,
            schedule="step",
            warmup=0.0,
            milestones=(1 / 3, 2 / 3),
            gamma=0.1,
            translate=2 if self.augment else 0,
            flip=self.augment,
            precision="fp32",
            train_eval=True,
            record_layer=self.record_layer,
        )


SMALL_PLAIN = {"widths": [16, 32, 64, 128]}
STUDIES = {
    s.name: s
    for s in (
        Study("plain5k", 5000, augment=False, model_kwargs=SMALL_PLAIN),
        Study("plain5k_augmented", 5000, augment=True, model_kwargs=SMALL_PLAIN),
        Study("plain2500", 2500, augment=False, model_kwargs=SMALL_PLAIN),
        Study("plain10k", 10000, augment=False, model_kwargs=SMALL_PLAIN),
    )
}


def run_study(
    name: str,
    *,
    device="cpu",
    checkpoint_dir=None,
    results_dir=None,
    allow_dirty: bool = False,
    log=None,
) -> results.StoredResult:
    """Run study ``STUDIES[name]`` (resuming whatever a previous call finished) and store it after
    every seed as ``cifar_study_<name>``; return the stored result.

    The data: a class-balanced CIFAR-10 training subset of ``n_train`` images (subset seed 0, the
    same for every run) and the full 10,000-image test set. Provenance records the commit the
    study started from, which must be clean unless ``allow_dirty``, and the config the number of
    torch threads (results are bit-reproducible for a given thread count on a given CPU). On a
    shared machine one thread is faster: two threads wait on each other whenever the scheduler
    deschedules one of them.
    """
    if name not in STUDIES:
        raise ValueError(f"study must be one of {sorted(STUDIES)}, got {name!r}")
    study = STUDIES[name]
    commit = results.git_commit()
    if not allow_dirty:
        results.require_clean(commit, f"study {name!r}")
    cifar = data_mod.load_cifar("cifar10")
    data = cifar.subset(study.n_train, None, seed=0)
    config = study.config()
    checkpoint_dir = (
        Path(checkpoint_dir)
        if checkpoint_dir
        else paths.cache_dir() / "checkpoints" / study.result_name
    )
    start = time.perf_counter()
    study_config = {
        "study": name,
        "dataset": "cifar10",
        "data_source": data.source,
        "n_train": int(len(data.train_labels)),
        "n_test": int(len(data.test_labels)),
        "model": "plain",
        "model_kwargs": study.model_kwargs,
        "depths": list(study.depths),
        "width": 1.0,
        "seeds_planned": list(study.seeds),
        "train_config": config.to_dict(),
        "rho_examples": study.rho_examples,
        "torch_threads": torch.get_num_threads(),
    }

    def store(out):
        done = int(out["seeds_done"])
        record = results.provenance(
            device=device,
            seeds=list(study.seeds[:done]),
            wall_time_s=float(np.nansum(out["training_time_s"])),
            commit=commit,
        )
        results.save(
            study.result_name,
            config={**study_config, "precision": out["precision"]},
            scalars=summarize(out, study.depths),
            arrays=_arrays(out),
            provenance_record=record,
            directory=results_dir,
            allow_dirty=allow_dirty,
        )
        if log is not None:
            log(
                f"stored {study.result_name} with {done} seed(s) ({time.perf_counter() - start:.0f} s this call)"
            )

    run_experiment(
        data,
        "plain",
        depths=study.depths,
        seeds=study.seeds,
        config=config,
        model_kwargs=study.model_kwargs,
        device=device,
        checkpoint_dir=checkpoint_dir,
        log=log,
        rho_examples=study.rho_examples,
        on_seed_done=store,
    )
    return results.load(study.result_name, results_dir)


# ------------------------------------------------------------------------------ step-time ratio
STEP_TIME_RESULT = "cifar_step_time_cpu"


def step_time(
    *,
    study: str = "plain5k",
    repeats: int = 15,
    threads: int = 1,
    device="cpu",
    seed: int = 0,
) -> dict:
    """Training-step time of the study's network at every expansion depth, side by side.

    Each depth's model is built exactly as the study builds it (``build_model``: expanded
    layers trained through their effective weight) and timed on one fixed batch of the study's
    size with the study's optimizer settings irrelevant to speed (SGD with momentum), interleaved
    ``repeats`` times (``support.benchmarking``). Returns medians in milliseconds and the median
    ratio to the plain network's step.
    """
    from support import benchmarking, seeding

    spec = STUDIES[study]
    dev = resolve_device(device)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = seeding.torch_generator(seed, "step-time-batch")
        x = torch.randn(spec.batch_size, 3, 32, 32, generator=gen).to(dev)
        y = torch.randint(0, 10, (spec.batch_size,), generator=gen).to(dev)
        nets = {
            f"depth {d}": build_model(
                "plain", 10, depth=d, seed=seed, model_kwargs=spec.model_kwargs
            ).to(dev)
            for d in spec.depths
        }
        sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else None
        times = benchmarking.interleaved(
            benchmarking.training_steps(nets, x, y), repeats, sync=sync
        )
    finally:
        torch.set_num_threads(previous)
    medians, ratios = (
        benchmarking.medians(times),
        benchmarking.median_ratios(times, f"depth {spec.depths[0]}"),
    )
    return {
        "config": {
            "study": study,
            "model": "plain",
            "model_kwargs": spec.model_kwargs,
            "batch": spec.batch_size,
            "depths": list(spec.depths),
            "repeats": repeats,
            "threads": threads,
            "seed": seed,
        },
        "device": dev,
        "median_ms": {k: 1e3 * v for k, v in medians.items()},
        "ratio": ratios,
    }


# ------------------------------------------------------------------------------ the paper-scale grid
@dataclass(frozen=True)
class Experiment:
    """One architecture of a grid: result-name ``stem``, model name and kwargs, and its recipe
    (the trainer's defaults otherwise: warm-up then linear decay, label smoothing, crop and flip,
    precision by device)."""

    stem: str
    model: str
    model_kwargs: dict
    epochs: int
    batch_size: int
    lr: float
    record_layer: str
    precision: str = "auto"

    def config(self) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            record_layer=self.record_layer,
            precision=self.precision,
        )


# "gpu": full CIFAR, 5 seeds, ResNet-18 last (only if the time budget allows); short speed-run
# recipes (warm-up and linear decay, label smoothing, crop and flip), untuned.
GRIDS = {
    "gpu": {
        "subset": None,
        "seeds": (0, 1, 2, 3, 4),
        "depths": DEPTHS,
        "experiments": (
            Experiment(
                stem="fast",
                model="fast",
                model_kwargs={"widths": [64, 256, 256]},
                epochs=10,
                batch_size=1024,
                lr=1.0,
                record_layer="groups.2.conv2",
            ),
            Experiment(
                stem="plain",
                model="plain",
                model_kwargs={"widths": [64, 128, 256, 512]},
                epochs=15,
                batch_size=512,
                lr=0.1,
                record_layer="body.12",
            ),
            Experiment(
                stem="resnet18",
                model="resnet18",
                model_kwargs={"width": 64},
                epochs=10,
                batch_size=512,
                lr=0.1,
                record_layer="blocks.7.conv2",
            ),
        ),
    },
}


def run_grid(
    scale: str,
    dataset: str = "cifar10",
    *,
    device="auto",
    budget_s: float | None = None,
    only=None,
    checkpoint_dir=None,
    results_dir=None,
    allow_dirty: bool = False,
    log=None,
) -> list:
    """Run the experiments of ``GRIDS[scale]`` on ``dataset`` and store each one as soon as it is done.

    Results are stored as ``cifar_<dataset>_<stem>_<scale>`` (config, the :func:`summarize`
    scalars, the :func:`run_experiment` arrays, provenance with the commit the grid started from).
    ``budget_s``: start no new experiment once this many seconds have passed. ``only``: stems to
    run. Every run checkpoints under ``checkpoint_dir`` (default: the cache folder, one
    sub-folder per grid), so repeating a cut-off call resumes it. Returns the names stored.
    """
    if scale not in GRIDS:
        raise ValueError(f"scale must be one of {sorted(GRIDS)}, got {scale!r}")
    commit = results.git_commit()
    if not allow_dirty:
        results.require_clean(commit, f"grid {scale!r}")
    grid, t0, saved = GRIDS[scale], time.perf_counter(), []
    data = data_mod.load_cifar(dataset)
    if grid["subset"]:
        data = data.subset(*grid["subset"], seed=0)
    if log is not None:
        log(f"data: {data.source}; loaded in {time.perf_counter() - t0:.1f} s")
    base = Path(checkpoint_dir) if checkpoint_dir else paths.cache_dir() / "checkpoints"
    for exp in grid["experiments"]:
        if only and exp.stem not in only:
            continue
        if budget_s is not None and time.perf_counter() - t0 > budget_s:
            if log is not None:
                log(f"time budget of {budget_s} s spent: {exp.stem} not started")
            continue
        config, start = exp.config(), time.perf_counter()
        name = f"cifar_{dataset}_{exp.stem}_{scale}"
        out = run_experiment(
            data,
            exp.model,
            depths=grid["depths"],
            seeds=grid["seeds"],
            config=config,
            model_kwargs=exp.model_kwargs,
            device=device,
            log=log,
            checkpoint_dir=base / name,
        )
        results.save(
            name,
            config={
                "scale": scale,
                "dataset": dataset,
                "data_source": data.source,
                "n_train": int(len(data.train_labels)),
                "n_test": int(len(data.test_labels)),
                "model": exp.model,
                "model_kwargs": exp.model_kwargs,
                "depths": list(grid["depths"]),
                "width": 1.0,
                "train_config": config.to_dict(),
                "precision": out["precision"],
            },
            scalars=summarize(out, grid["depths"]),
            arrays=_arrays(out),
            provenance_record=results.provenance(
                device=None if device == "auto" else device,
                seeds=grid["seeds"],
                wall_time_s=time.perf_counter() - start,
                commit=commit,
            ),
            directory=results_dir,
            allow_dirty=allow_dirty,
        )
        saved.append(name)
        if log is not None:
            log(f"stored {name} ({time.perf_counter() - start:.0f} s)")
    return saved


# ---------------------------------------------------------------------- the airbench reference
AIRBENCH_RESULT = "cifar_airbench94_reference"


def write_airbench_arrays(data: data_mod.ImageArrays, folder) -> Path:
    """Write ``data`` as the ``train.pt``/``test.pt`` files the ``airbench`` package reads
    (``{"images": uint8 (N, 32, 32, 3), "labels": int64 (N,), "classes": [str]}``), so that
    airbench94 trains on exactly the images our grid uses, with no download. Returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        torch.save(
            {
                "images": torch.from_numpy(getattr(data, f"{split}_images").copy()),
                "labels": torch.from_numpy(getattr(data, f"{split}_labels").copy()),
                "classes": list(data.classes),
            },
            folder / f"{split}.pt",
        )
    return folder


def airbench_reference(data: data_mod.ImageArrays, *, runs: int, workdir) -> dict:
    """airbench94 (the ``airbench`` package, CUDA only) on ``data`` and this GPU: per run the test
    accuracy with its test-time augmentation and the wall seconds of training, after one warm-up
    run. The fast CNN of :data:`GRIDS` is a network in its spirit; this puts both on one GPU."""
    import airbench

    write_airbench_arrays(data, Path(workdir) / "cifar10")
    accuracy, seconds = [], []
    here = os.getcwd()
    os.chdir(workdir)  # airbench reads ./cifar10/{train,test}.pt
    try:
        airbench.warmup94(verbose=False)
        test = airbench.CifarLoader("cifar10", train=False, batch_size=2000)
        for run in range(runs):
            torch.cuda.synchronize()
            start = time.perf_counter()
            model = airbench.train94(run=run, verbose=False)
            torch.cuda.synchronize()
            seconds.append(time.perf_counter() - start)
            accuracy.append(float(airbench.evaluate(model, test, tta_level=2)))
    finally:
        os.chdir(here)
    return {"test_acc": accuracy, "train_seconds": seconds}


# ------------------------------------------------------------------------------------- the CLI
def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(
            f"not valid JSON ({exc.msg}): {text[:80]!r}"
        ) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text[:80]!r}")
    return value


def _writable_file(text: str) -> str:
    """A path a run may write at its end: checked before training, so a finished run is not lost."""
    path = Path(text)
    if path.exists() and not path.is_file():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a regular file")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise argparse.ArgumentTypeError(
            f"folder {folder} does not exist or is not writable"
        )
    return text


def _train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="fast", choices=sorted(models.MODELS))
    p.add_argument(
        "--model-kwargs",
        type=_json_object,
        default={},
        help="JSON object for the model, e.g. '{\"widths\": [8, 16]}'",
    )
    p.add_argument(
        "--dataset", default="cifar10", choices=sorted(data_mod.NORMALIZATION)
    )
    p.add_argument("--source", default="auto", choices=["auto", "jpeg", "torchvision"])
    p.add_argument(
        "--synthetic",
        type=cli.positive_int,
        nargs=2,
        metavar=("N_TRAIN", "N_TEST"),
        help="train on synthetic images instead of CIFAR (tests)",
    )
    p.add_argument(
        "--subset", type=cli.positive_int, nargs=2, metavar=("N_TRAIN", "N_TEST")
    )
    p.add_argument(
        "--depth",
        type=cli.positive_int,
        default=1,
        help="expansion depth (1 = baseline)",
    )
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--device", type=cli.device, default="auto")
    p.add_argument("--checkpoint", type=_writable_file, default=None)
    p.add_argument(
        "--save-state",
        type=_writable_file,
        default=None,
        help="write the final (collapsed) state_dict here",
    )
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("milestones", "record_layer"):
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        else:
            p.add_argument(
                flag, type={"int": int, "float": float}.get(f.type, str), default=None
            )


def train_command(args) -> int:
    """``train``: one training run (plain or expanded); under ``torchrun`` with DDP.

    Prints one line per epoch and, last, a JSON line with the final metrics (rank 0 only).
    """
    overrides = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if getattr(args, f.name, None) is not None
    }
    try:
        config = TrainConfig(**overrides)
    except ValueError as exc:
        args.parser.error(str(exc))
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    device = resolve_device(args.device)
    if distributed:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
        torch.distributed.init_process_group(
            "nccl" if device.type == "cuda" else "gloo"
        )
    if args.synthetic:
        data = data_mod.synthetic(*args.synthetic, seed=config.seed)
    else:
        data = data_mod.load_cifar(args.dataset, source=args.source)
    if args.subset:
        data = data.subset(*args.subset, seed=config.seed)
    model = build_model(
        args.model,
        data.num_classes,
        depth=args.depth,
        width=args.width,
        seed=config.seed,
        model_kwargs=args.model_kwargs,
        whitening_images=whitening_images(data, args.model),
    )
    result = train(
        model, data, config, device=device, checkpoint=args.checkpoint, log=print
    )
    if not distributed or torch.distributed.get_rank() == 0:
        summary = {
            "final": result.final,
            "precision": result.precision,
            "device": result.device,
            "wall_time_s": round(result.wall_time_s, 3),
        }
        print(json.dumps(summary))
        if args.save_state:
            torch.save(result.model.state_dict(), args.save_state)
    if distributed:
        torch.distributed.destroy_process_group()
    return 0


def _study_command(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in args.names:
        stored = run_study(
            name, device=args.device, allow_dirty=args.allow_dirty, log=cli.say
        )
        cli.say(results.describe(stored))
    return 0


def _grid_command(args) -> int:
    stems = [e.stem for e in GRIDS[args.scale]["experiments"]]
    unknown = sorted(set(args.only or ()) - set(stems))
    if unknown:
        args.parser.error(
            f"--only: no experiment {unknown} in grid {args.scale!r} {stems}"
        )
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
        cli.say(
            f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, "
            f"CUDA {torch.version.cuda}"
        )
    names = run_grid(
        args.scale,
        args.dataset,
        device=args.device,
        budget_s=args.budget_s,
        only=args.only,
        results_dir=args.results_dir,
        allow_dirty=args.allow_dirty,
        log=cli.say,
    )
    cli.say(f"stored {names}")
    return 0


def _steptime_command(args) -> int:
    from support import benchmarking

    def record():
        load = benchmarking.load_average()
        out = step_time(repeats=args.repeats, threads=args.threads, device=args.device)
        scalars = {
            "median_ms": out["median_ms"],
            "ratio": out["ratio"],
            "load_average_before": load,
        }
        return {"config": out["config"], "scalars": scalars, "seeds": [0]}

    if args.save:
        scalars = cli.store(STEP_TIME_RESULT, record, args, device=args.device).scalars
    else:
        scalars = record()["scalars"]
    for name, ms in scalars["median_ms"].items():
        cli.say(
            f"{name}: {ms:.1f} ms per step, {scalars['ratio'][name]:.3f}x the plain step"
        )
    return 0


def _airbench_command(args) -> int:
    import tempfile

    if not torch.cuda.is_available():
        cli.say("airbench94 needs a CUDA GPU; none is available")
        return 1
    data = data_mod.load_cifar("cifar10")

    def record():
        with tempfile.TemporaryDirectory() as workdir:
            out = airbench_reference(data, runs=args.runs, workdir=workdir)
        scalars = {
            "test_acc_mean": float(np.mean(out["test_acc"])),
            "train_seconds_median": float(np.median(out["train_seconds"])),
            **out,
        }
        config = {"runs": args.runs, "data_source": data.source, "tta_level": 2}
        return {"config": config, "scalars": scalars, "seeds": list(range(args.runs))}

    stored = results.cached(
        AIRBENCH_RESULT,
        record,
        recompute=True,
        device="cuda",
        allow_dirty=args.allow_dirty,
        directory=args.results_dir,
    )
    cli.say(results.describe(stored))
    s = stored.scalars
    cli.say(
        f"airbench94: {s['test_acc_mean']:.4f} test accuracy, "
        f"{s['train_seconds_median']:.2f} s per training run"
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    top, sub = cli.parser(
        "cifar_expanded", "Recipes of the chapter 'Expanded CNNs on CIFAR'."
    )

    def command(name, func, text, stores=True):
        p = cli.command(sub, name, func, text, stores=stores)
        p.set_defaults(parser=p)
        return p

    p = command("study", _study_command, "run (or resume) CPU studies, stored per seed")
    p.add_argument("names", nargs="+", choices=sorted(STUDIES))
    p.add_argument("--device", type=cli.device, default="cpu")
    p.add_argument(
        "--threads", type=cli.positive_int, default=None, help="torch threads"
    )
    p = command("grid", _grid_command, "run the paper-scale (GPU) grid")
    p.add_argument("--scale", choices=sorted(GRIDS), required=True)
    p.add_argument(
        "--dataset", default="cifar10", choices=sorted(data_mod.NORMALIZATION)
    )
    p.add_argument("--device", type=cli.device, default="auto")
    p.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="start no new experiment after this many seconds",
    )
    p.add_argument("--only", nargs="*", default=None, help="experiment stems to run")
    p.add_argument("--results-dir", default=None, help="store here, not book/results")
    p = command("steptime", _steptime_command, "training-step time by depth")
    p.add_argument("--repeats", type=cli.positive_int, default=15)
    p.add_argument("--threads", type=cli.positive_int, default=1)
    p.add_argument("--device", type=cli.device, default="cpu")
    p.add_argument("--save", action="store_true", help=f"store as {STEP_TIME_RESULT}")
    p = command("airbench", _airbench_command, "airbench94 on the same images and GPU")
    p.add_argument("--runs", type=cli.positive_int, default=5)
    p.add_argument("--results-dir", default=None)
    _train_arguments(
        command("train", train_command, "train one model (torchrun too)", stores=False)
    )
    return top


def main(argv=None) -> int:
    return cli.run(_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
