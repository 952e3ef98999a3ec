"""One trainer for the CIFAR networks, plain or linearly over-parameterized (``support.expand``).

The chapter *Expanded CNNs on CIFAR* (``book/cifar_expanded.ipynb``) uses it; ``python -m
support.train`` runs one training from the command line (also under ``torchrun`` for multi-GPU
data parallelism) and ``benchmarks/cifar_paper_scale.py`` runs the chapter's paper-scale grid.

What :func:`train` does, and why:

* **Precision by device** (:func:`precision_for`): bf16 autocast on Ampere/Hopper GPUs, fp16
  autocast with a gradient scaler on older GPUs (e.g. the T4 of free Colab, which has no bf16
  hardware), fp32 on the CPU (exact and reproducible).
* ``channels_last`` memory format and optional ``torch.compile`` (GPU speed).
* SGD with Nesterov momentum, label smoothing, and a per-step learning-rate schedule
  (:func:`lr_factor`: linear warm-up then linear decay, cosine, step, or constant).
* **Evaluation of the collapsed model**: an expanded network is collapsed (a copy of it) to the
  original architecture before every evaluation, so the accuracies reported are those of the
  network one would deploy.
* **Checkpoints every epoch with exact resume**: model, optimizer, scheduler, gradient scaler,
  history and random states are written atomically after each epoch; a rerun with the same
  checkpoint path continues where the last one stopped and (on the CPU) ends with bit-identical
  weights. A Colab disconnect therefore loses at most one epoch.
* A **clear stop on a non-finite loss** (:class:`NonFiniteLossError`), checked every few steps so
  the GPU is not synchronised at every step.
* tqdm progress only in interactive use; executed chapters stay quiet.
* **DistributedDataParallel** when launched by ``torchrun`` (NCCL on GPUs, gloo on CPUs): each
  process takes every ``world_size``-th example of the epoch's permutation, ``batch_size`` stays the
  global batch, evaluations are summed over processes.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from support import data as data_mod
from support import models
from support.hardware import describe_device, resolve_device

SCHEDULES = ("linear", "cosine", "step", "constant")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


class NonFiniteLossError(FloatingPointError):
    """Training stopped because the loss became NaN or infinite (lower the learning rate)."""


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (all plain values, so a config can be stored as JSON).

    ``lr`` is the peak learning rate of SGD (Nesterov momentum ``momentum``); ``weight_decay`` is
    applied to weights (ndim >= 2), not to biases or BatchNorm parameters. ``schedule`` is one of
    "linear" (warm-up over the first ``warmup`` fraction of steps, then linear decay to 0),
    "cosine" (same warm-up, cosine decay), "step" (x ``gamma`` at each fraction in
    ``milestones``), "constant". ``translate``/``flip``: training augmentation. ``precision``:
    "auto" (see :func:`precision_for`), "fp32", "bf16" or "fp16". ``check_every``: steps between
    non-finite-loss checks. ``record_layer``: name of a Conv2d/Linear module whose (collapsed)
    weight's singular values are recorded at initialisation and after every epoch.
    ``train_eval``: also measure the accuracy on the un-augmented training set after every
    epoch (costs one extra forward pass over it), else only at the end.
    """

    epochs: int = 10
    batch_size: int = 512
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    label_smoothing: float = 0.2
    schedule: str = "linear"
    warmup: float = 0.2
    milestones: tuple = (0.5, 0.75)
    gamma: float = 0.1
    translate: int = 2
    flip: bool = True
    precision: str = "auto"
    channels_last: bool = True
    compile: bool = False
    seed: int = 0
    check_every: int = 10
    record_layer: str | None = None
    train_eval: bool = False

    def __post_init__(self):
        if self.epochs <= 0 or self.batch_size <= 0:
            raise ValueError(f"epochs and batch_size must be positive, got {self.epochs}, {self.batch_size}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"warmup must be a fraction in [0, 1), got {self.warmup}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.check_every <= 0:
            raise ValueError(f"check_every must be positive, got {self.check_every}")
        self.milestones = tuple(self.milestones)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        return d


def lr_factor(step: int, total: int, config: TrainConfig) -> float:
    """Multiplier of ``config.lr`` at optimizer step ``step`` (0-based) of ``total``."""
    t = step / max(total, 1)
    if config.schedule == "constant":
        return 1.0
    if config.schedule == "step":
        return config.gamma ** sum(t >= m for m in config.milestones)
    if config.warmup > 0 and t < config.warmup:
        return (step + 1) / (config.warmup * total)
    u = (t - config.warmup) / (1 - config.warmup)
    if config.schedule == "linear":
        return max(0.0, 1.0 - u)
    return 0.5 * (1 + math.cos(math.pi * u))


def precision_for(device, requested: str = "auto") -> str:
    """Training precision: "fp32" on CPU, "bf16" on GPUs with native bf16 (compute capability >= 8,
    Ampere/Hopper), "fp16" (with a gradient scaler) on older GPUs such as the T4. ``requested``
    other than "auto" is returned as is (on a CPU, bf16/fp16 autocast works but is slow: it is
    there to test the mixed-precision code path without a GPU)."""
    device = torch.device(device)
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    if requested != "auto":
        return requested
    if device.type != "cuda":
        return "fp32"
    major, _ = torch.cuda.get_device_capability(device)
    return "bf16" if major >= 8 else "fp16"


# ------------------------------------------------------------------------------- expansion glue
def deployable(model: nn.Module) -> nn.Module:
    """The network one would deploy: a collapsed copy of an expanded ``model``, else ``model`` itself
    (DistributedDataParallel and ``torch.compile`` wrappers are looked through)."""
    from support.expand import collapse, expanded_layers

    if expanded_layers(model):
        return collapse(model)
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def build_model(name: str, num_classes: int, *, depth: int = 1, width: float = 1.0, seed: int = 0,
                model_kwargs: dict | None = None, whitening_images: torch.Tensor | None = None) -> nn.Module:
    """Build a model from ``support.models`` with seed ``seed`` and the paper's initialisation.

    ``depth=1`` is the baseline: ``support.expand.expand(model, depth=1)`` re-initialises its layers
    with the base scheme of the expanded ones (Kaiming, as in the official code), so baseline and
    expanded networks start from the same weight distribution. ``depth > 1`` expands every Conv2d
    and Linear into ``depth`` factors of hidden width ``int(out * width)``. The frozen whitening
    layer of :class:`support.models.FastCNN` is never expanded; its filters come from
    ``whitening_images`` (normalised, (N, 3, H, W)).
    """
    from support.expand import expand

    if depth < 1:
        raise ValueError(f"depth must be >= 1 (1 = baseline), got {depth}")
    torch.manual_seed(seed)
    model = models.build(name, num_classes=num_classes, **(model_kwargs or {}))
    if isinstance(model, models.FastCNN):
        if whitening_images is None:
            raise ValueError("FastCNN needs whitening_images (normalised training images) to set its whitening layer")
        models.init_whitening(model, whitening_images)
    expand(model, depth=depth, width=width,
           layers=lambda n, m: isinstance(m, (nn.Conv2d, nn.Linear)) and n not in models.WHITENING_LAYERS)
    return model


# ------------------------------------------------------------------------------------ training
@dataclass
class TrainResult:
    """What a run leaves: per-epoch ``history`` (lists), ``final`` metrics, recorded singular values
    (``spectra``: (epochs + 1, k), row 0 at initialisation), the trained ``model`` (collapsed when it
    was expanded) and bookkeeping."""

    history: dict
    final: dict
    spectra: np.ndarray | None
    model: nn.Module
    precision: str
    device: str
    wall_time_s: float
    resumed_from_epoch: int = 0
    config: dict = field(default_factory=dict)


def _dist_info():
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _interactive() -> bool:
    return sys.stderr.isatty()


@torch.no_grad()
def evaluate(model: nn.Module, loader, precision: str = "fp32") -> dict:
    """Accuracy and mean cross-entropy of ``model`` over an evaluation loader (summed over processes)."""
    was_training = model.training
    model.eval()
    device = loader.device
    totals = torch.zeros(3, dtype=torch.float64, device=device)
    with _autocast(device, precision):
        for x, y in loader:
            logits = model(x).float()
            totals[0] += F.cross_entropy(logits, y, reduction="sum").double()
            totals[1] += (logits.argmax(1) == y).sum()
            totals[2] += len(y)
    model.train(was_training)
    if _dist_info()[1] > 1:
        torch.distributed.all_reduce(totals)
    loss, correct, n = totals.tolist()
    return {"acc": correct / n, "loss": loss / n}


def _autocast(device, precision: str):
    device = torch.device(device)
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def layer_singular_values(model: nn.Module, layer: str) -> np.ndarray:
    """Singular values (descending, float64) of layer ``layer``'s weight, reshaped (out, in * k * k).

    For an expanded model the weight is the effective (collapsed) one.
    """
    module = dict(model.named_modules()).get(layer)
    if not isinstance(module, (nn.Conv2d, nn.Linear)):
        raise ValueError(f"record_layer {layer!r} is not a Conv2d/Linear module of {type(model).__name__}")
    with torch.no_grad():
        w = module.weight.detach().float().reshape(module.weight.shape[0], -1)
        return torch.linalg.svdvals(w.cpu().double()).numpy()


def _optimizer(model: nn.Module, config: TrainConfig):
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    return torch.optim.SGD([{"params": decay, "weight_decay": config.weight_decay},
                            {"params": no_decay, "weight_decay": 0.0}],
                           lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)


def _atomic_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def train(model: nn.Module, data: data_mod.ImageArrays, config: TrainConfig, *, device="auto",
          checkpoint=None, progress: bool | str = "auto", log=None, stop_after_epoch: int | None = None) -> TrainResult:
    """Train ``model`` on ``data`` with ``config``; return a :class:`TrainResult`.

    ``checkpoint``: a file path; after every epoch the full training state is written there, and if
    the file exists when ``train`` starts, the run resumes from it (its stored config must equal
    ``config``, else ValueError). ``stop_after_epoch`` ends the call after that epoch as an
    interruption would (the checkpoint is kept; calling again resumes). ``progress``: tqdm bar
    (True/False; "auto" = only when stderr is a terminal). ``log``: callable receiving one line per
    epoch (e.g. ``print``), or None for silence. Under ``torchrun`` (an initialised process group)
    the model is wrapped in DistributedDataParallel and only rank 0 writes the checkpoint.

    Raises :class:`NonFiniteLossError` when the training loss becomes NaN/Inf.
    """
    start_time = time.perf_counter()
    device = resolve_device(device) if isinstance(device, str) else torch.device(device)
    precision = precision_for(device, config.precision)
    rank, world = _dist_info()
    if config.batch_size % world:
        raise ValueError(f"batch_size={config.batch_size} must be divisible by the {world} processes")
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    train_loader, train_eval_loader, test_loader = data_mod.loaders(
        data, config.batch_size // world, device=device, dtype=torch.float32 if precision == "fp32" else dtype,
        seed=config.seed, rank=rank, world_size=world, translate=config.translate, flip=config.flip,
        channels_last=config.channels_last)
    model = model.to(device, memory_format=torch.channels_last if config.channels_last else torch.contiguous_format)
    optimizer = _optimizer(model, config)
    total_steps = config.epochs * len(train_loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, config))
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    history = {k: [] for k in ("epoch", "lr", "train_loss", "train_acc_augmented", "test_acc", "test_loss",
                               "train_acc")}
    spectra = []
    start_epoch = 0
    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    if ckpt_path is not None and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        if state["config"] != config.to_dict():
            raise ValueError(f"checkpoint {ckpt_path} was written by a different config; "
                             f"delete it or pass the same config")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        history, spectra, start_epoch = state["history"], list(state["spectra"]), state["epoch"]
        torch.set_rng_state(state["rng_cpu"])
    elif config.record_layer is not None:
        spectra.append(layer_singular_values(deployable(model), config.record_layer))
    resumed_from = start_epoch
    net = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        net = torch.compile(net)
    show = _interactive() if progress == "auto" else bool(progress)
    bar = None
    if show and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, initial=start_epoch * len(train_loader), desc="train", leave=False)
    last_epoch = config.epochs if stop_after_epoch is None else min(config.epochs, stop_after_epoch)
    for epoch in range(start_epoch, last_epoch):
        net.train()
        train_loader.set_epoch(epoch)
        sums = torch.zeros(3, dtype=torch.float64, device=device)
        for step, (x, y) in enumerate(train_loader):
            with _autocast(device, precision):
                logits = net(x)
                loss = loss_fn(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            sums[0] += loss.detach().double() * len(y)
            sums[1] += (logits.detach().argmax(1) == y).sum()
            sums[2] += len(y)
            if (step + 1) % config.check_every == 0 or step + 1 == len(train_loader):
                if not torch.isfinite(sums[0]):
                    raise NonFiniteLossError(f"non-finite training loss at epoch {epoch + 1}, step {step + 1} "
                                             f"(lr {scheduler.get_last_lr()[0]:.4g}); lower the learning rate")
            if bar is not None:
                bar.update()
        if world > 1:
            torch.distributed.all_reduce(sums)
        inference = deployable(model)
        test = evaluate(inference, test_loader, precision)
        train_acc = (evaluate(inference, train_eval_loader, precision)["acc"]
                     if config.train_eval or epoch + 1 == config.epochs else float("nan"))
        s = sums.tolist()
        for key, value in (("epoch", epoch + 1), ("lr", scheduler.get_last_lr()[0]), ("train_loss", s[0] / s[2]),
                           ("train_acc_augmented", s[1] / s[2]), ("test_acc", test["acc"]),
                           ("test_loss", test["loss"]), ("train_acc", train_acc)):
            history[key].append(float(value))
        if config.record_layer is not None:
            spectra.append(layer_singular_values(inference, config.record_layer))
        if log is not None and rank == 0:
            log(f"epoch {epoch + 1}/{config.epochs}: train loss {s[0] / s[2]:.4f}, "
                f"train acc (augmented) {s[1] / s[2]:.4f}, test acc {test['acc']:.4f}")
        if ckpt_path is not None and rank == 0:
            _atomic_save({"config": config.to_dict(), "epoch": epoch + 1, "model": model.state_dict(),
                          "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                          "scaler": scaler.state_dict(), "history": history, "spectra": spectra,
                          "rng_cpu": torch.get_rng_state()}, ckpt_path)
        if world > 1:
            torch.distributed.barrier()
    if bar is not None:
        bar.close()
    done = len(history["epoch"])
    final = {"epochs_done": done}
    if done:
        final.update(test_acc=history["test_acc"][-1], test_loss=history["test_loss"][-1],
                     train_acc=history["train_acc"][-1], train_loss=history["train_loss"][-1])
    return TrainResult(history=history, final=final, spectra=np.array(spectra) if spectra else None,
                       model=deployable(model), precision=precision, device=describe_device(device),
                       wall_time_s=time.perf_counter() - start_time, resumed_from_epoch=resumed_from,
                       config=config.to_dict())


# --------------------------------------------------------------------------- embeddings and stats
@torch.no_grad()
def penultimate_embeddings(model: nn.Module, loader, max_examples: int | None = None) -> torch.Tensor:
    """Penultimate embeddings ``model.features(x)`` (float32, CPU) of an evaluation loader's images."""
    model.eval()
    out, n = [], 0
    for x, _ in loader:
        out.append(model.features(x).float().cpu())
        n += len(x)
        if max_examples is not None and n >= max_examples:
            break
    feats = torch.cat(out)
    return feats if max_examples is None else feats[:max_examples]


def paired_difference(treatment, baseline, confidence: float = 0.95) -> dict:
    """Mean and t-interval of the paired differences ``treatment - baseline`` (one pair per seed).

    Returns mean, std (sample, ddof=1), n and the two-sided ``confidence`` interval
    ``mean +- t_{n-1} * std / sqrt(n)``. Needs n >= 2 pairs of equal length.
    """
    from scipy import stats

    a, b = np.asarray(treatment, dtype=float), np.asarray(baseline, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"treatment and baseline must be 1-D of equal length, got {a.shape} and {b.shape}")
    if len(a) < 2:
        raise ValueError(f"a confidence interval needs at least 2 pairs, got {len(a)}")
    d = a - b
    mean, std = float(d.mean()), float(d.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, len(d) - 1)) * std / math.sqrt(len(d))
    return {"mean": mean, "std": std, "n": len(d), "ci_low": mean - half, "ci_high": mean + half,
            "confidence": confidence}


def embedding_rho(model: nn.Module, loader, max_examples: int = 500) -> float:
    """The paper's rho (spectral entropy, nats) of the Gram matrix K = Phi Phi^T of the penultimate
    embeddings Phi of the first ``max_examples`` images of ``loader``.

    The embeddings are centred (mean embedding subtracted) first: after a ReLU/max-pool every
    embedding shares a large mean component that would otherwise dominate K. The paper's exact
    construction of K is not known (only that it is a Gram matrix of embeddings), so this is our
    choice, stated in the chapter.
    """
    from support.rank import spectral_entropy

    phi = penultimate_embeddings(model, loader, max_examples).double()
    phi = phi - phi.mean(0)
    return float(spectral_entropy(phi @ phi.T))


def run_experiment(data: data_mod.ImageArrays, model_name: str, *, depths=(1, 2, 4), seeds=(0, 1, 2),
                   config: TrainConfig, model_kwargs: dict | None = None, width: float = 1.0, device="auto",
                   checkpoint_dir=None, log=None, rho_examples: int = 500) -> dict:
    """Train ``model_name`` at every expansion depth (1 = baseline) for every seed; collect the results.

    Run ``(depth, seed)`` uses ``config`` with ``seed`` replaced, so baseline and expanded runs of one
    seed see the same batches and augmentations (a paired comparison). Returns a dict of numpy
    arrays indexed ``[depth, seed]``: ``test_acc``, ``train_acc``, ``test_acc_history`` (per epoch),
    ``embedding_rho``, ``wall_time_s``; ``spectra`` ``[depth, seed, epoch + 1, k]`` when
    ``config.record_layer`` is set; and per depth ``params`` (trainable, during training),
    ``params_deployed`` and ``flops_deployed`` of the collapsed network. With ``checkpoint_dir``
    each run checkpoints there every epoch, so rerunning after an interruption resumes.
    """
    from support.expand import count_parameters

    mean, std = data_mod.NORMALIZATION[data.name]
    whitening = data_mod.normalized_tensor(data.train_images[:5000], mean, std) if model_name == "fast" else None
    device = resolve_device(device) if isinstance(device, str) else torch.device(device)
    rho_loader = data_mod.DeviceLoader(data.test_images[:rho_examples], data.test_labels[:rho_examples], 500,
                                       train=False, device=device, mean=mean, std=std)
    keys = ("test_acc", "train_acc", "embedding_rho", "wall_time_s")
    out = {k: np.full((len(depths), len(seeds)), np.nan) for k in keys}
    out["test_acc_history"] = np.full((len(depths), len(seeds), config.epochs), np.nan)
    out.update(params=[], params_deployed=[], flops_deployed=[])
    spectra, device_name, precision = [], None, None
    for i, depth in enumerate(depths):
        row = []
        for j, seed in enumerate(seeds):
            cfg = dataclasses.replace(config, seed=seed)
            model = build_model(model_name, data.num_classes, depth=depth, width=width, seed=seed,
                                model_kwargs=model_kwargs, whitening_images=whitening)
            if j == 0:
                out["params"].append(count_parameters(model))
            ckpt = None if checkpoint_dir is None else Path(checkpoint_dir) / f"{model_name}-d{depth}-s{seed}.pt"
            result = train(model, data, cfg, device=device, checkpoint=ckpt)
            out["test_acc"][i, j] = result.final["test_acc"]
            out["train_acc"][i, j] = result.final["train_acc"]
            out["test_acc_history"][i, j] = result.history["test_acc"]
            out["embedding_rho"][i, j] = embedding_rho(result.model, rho_loader, rho_examples)
            out["wall_time_s"][i, j] = result.wall_time_s
            if result.spectra is not None:
                row.append(result.spectra)
            if j == 0:
                out["params_deployed"].append(count_parameters(result.model))
                out["flops_deployed"].append(models.count_flops(result.model))
            device_name, precision = result.device, result.precision
            if log is not None:
                log(f"{model_name} depth {depth} seed {seed}: test {result.final['test_acc']:.4f}, "
                    f"train {result.final['train_acc']:.4f}, {result.wall_time_s:.1f} s")
        if row:
            spectra.append(np.stack(row))
    if spectra:
        out["spectra"] = np.stack(spectra)
    for k in ("params", "params_deployed", "flops_deployed"):
        out[k] = np.asarray(out[k], dtype=np.int64)
    out["device"], out["precision"] = device_name, precision
    return out


def summarize(results: dict, depths, confidence: float = 0.95) -> dict:
    """Mean +- std (over seeds) of test and train accuracy per depth, and for each expanded depth the
    paired difference to the baseline (depth ``depths[0]``) with its t-interval (:func:`paired_difference`)."""
    summary = {}
    for i, depth in enumerate(depths):
        entry = {}
        for key in ("test_acc", "train_acc", "embedding_rho"):
            values = results[key][i]
            entry[key] = {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")}
        if i > 0 and results["test_acc"].shape[1] >= 2:
            entry["test_acc_minus_baseline"] = paired_difference(results["test_acc"][i], results["test_acc"][0], confidence)
            entry["train_acc_minus_baseline"] = paired_difference(results["train_acc"][i], results["train_acc"][0], confidence)
        summary[f"depth_{depth}"] = entry
    return summary


@dataclass(frozen=True)
class Experiment:
    """One architecture of a grid: result-name ``stem``, model name and kwargs, and its recipe."""

    stem: str
    model: str
    model_kwargs: dict
    epochs: int
    batch_size: int
    lr: float
    record_layer: str

    def config(self) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, record_layer=self.record_layer)


# The chapter's grids (``benchmarks/cifar_paper_scale.py`` runs them; the chapter estimates their
# cost from them). "gpu": full CIFAR, 5 seeds, ResNet-18 last (only if the time budget allows);
# "cpu": the stand-in that fits about 45 minutes on 2 shared CPU cores.
GRIDS = {
    "gpu": {"subset": None, "seeds": (0, 1, 2, 3, 4), "depths": (1, 2, 4), "experiments": (
        Experiment("fast", "fast", {"widths": [64, 256, 256]}, 10, 1024, 1.0, "groups.2.conv2"),
        Experiment("plain", "plain", {"widths": [64, 128, 256, 512]}, 15, 512, 0.1, "body.12"),
        Experiment("resnet18", "resnet18", {"width": 64}, 10, 512, 0.1, "blocks.7.conv2"),
    )},
    "cpu": {"subset": (4000, 1000), "seeds": (0, 1, 2), "depths": (1, 2, 4), "experiments": (
        Experiment("plain", "plain", {"widths": [16, 32, 64, 128]}, 10, 128, 0.05, "body.12"),
    )},
}


def run_grid(scale: str, dataset: str = "cifar10", *, device="auto", budget_s: float | None = None, only=None,
             checkpoint_dir=".cache/checkpoints", results_dir=None, log=None) -> list:
    """Run the experiments of ``GRIDS[scale]`` on ``dataset`` and store each one as soon as it is done.

    Results go through ``support.results`` as ``cifar_<dataset>_<stem>_<scale>`` (config, the
    :func:`summarize` scalars, the :func:`run_experiment` arrays, provenance with the wall time).
    ``budget_s``: start no new experiment once this many seconds have passed. ``only``: stems to run.
    Every run checkpoints under ``checkpoint_dir``, so repeating a cut-off call resumes it.
    Returns the names stored. ``benchmarks/cifar_paper_scale.py`` is the command-line front end.
    """
    from support import results

    if scale not in GRIDS:
        raise ValueError(f"scale must be one of {sorted(GRIDS)}, got {scale!r}")
    grid, t0, saved = GRIDS[scale], time.perf_counter(), []
    data = data_mod.load_cifar(dataset)
    if grid["subset"]:
        data = data.subset(*grid["subset"], seed=0)
    if log is not None:
        log(f"data: {data.source}; loaded in {time.perf_counter() - t0:.1f} s")
    for exp in grid["experiments"]:
        if only and exp.stem not in only:
            continue
        if budget_s is not None and time.perf_counter() - t0 > budget_s:
            if log is not None:
                log(f"time budget of {budget_s} s spent: {exp.stem} not started")
            continue
        config, start = exp.config(), time.perf_counter()
        out = run_experiment(data, exp.model, depths=grid["depths"], seeds=grid["seeds"], config=config,
                             model_kwargs=exp.model_kwargs, device=device, log=log,
                             checkpoint_dir=None if checkpoint_dir is None else f"{checkpoint_dir}/{scale}-{dataset}")
        wall = time.perf_counter() - start
        name = f"cifar_{dataset}_{exp.stem}_{scale}"
        results.save(name, config={
            "scale": scale, "dataset": dataset, "data_source": data.source, "n_train": int(len(data.train_labels)),
            "n_test": int(len(data.test_labels)), "model": exp.model, "model_kwargs": exp.model_kwargs,
            "depths": list(grid["depths"]), "width": 1.0, "train_config": config.to_dict(),
            "precision": out["precision"]},
            scalars=summarize(out, grid["depths"]),
            arrays={k: v for k, v in out.items() if isinstance(v, np.ndarray)},
            provenance_record=results.provenance(device=None if device == "auto" else device, seeds=grid["seeds"],
                                                 wall_time_s=wall),
            **({} if results_dir is None else {"directory": results_dir}))
        saved.append(name)
        if log is not None:
            log(f"stored {name} ({wall:.0f} s)")
    return saved


# ------------------------------------------------------------------------------------- the CLI
def _parse(argv):
    p = argparse.ArgumentParser(prog="python -m support.train",
                                description="Train one CIFAR model (plain or expanded); works under torchrun.")
    p.add_argument("--model", default="fast", choices=sorted(models.MODELS))
    p.add_argument("--model-kwargs", default="{}", help="JSON dict for the model, e.g. '{\"widths\": [8, 16]}'")
    p.add_argument("--dataset", default="cifar10", choices=sorted(data_mod.NORMALIZATION))
    p.add_argument("--source", default="auto", choices=["auto", "jpeg", "torchvision"])
    p.add_argument("--synthetic", type=int, nargs=2, metavar=("N_TRAIN", "N_TEST"),
                   help="train on synthetic images instead of CIFAR (tests)")
    p.add_argument("--subset", type=int, nargs=2, metavar=("N_TRAIN", "N_TEST"))
    p.add_argument("--depth", type=int, default=1, help="expansion depth (1 = baseline)")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--device", default="auto")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--save-state", default=None, help="write the final (collapsed) state_dict here")
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("milestones", "record_layer"):
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            p.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"), default=None)
        else:
            p.add_argument(flag, type={"int": int, "float": float}.get(f.type, str), default=None)
    return p.parse_args(argv)


def main(argv=None) -> int:
    """Command line: train one model (``--help`` lists the options); under ``torchrun`` with DDP.

    Prints one line per epoch and, last, a JSON line with the final metrics (rank 0 only).
    """
    import json

    args = _parse(argv)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    device = resolve_device(args.device)
    if distributed:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                 if getattr(args, f.name, None) is not None}
    config = TrainConfig(**overrides)
    if args.synthetic:
        data = data_mod.synthetic(*args.synthetic, seed=config.seed)
    else:
        data = data_mod.load_cifar(args.dataset, source=args.source)
    if args.subset:
        data = data.subset(*args.subset, seed=config.seed)
    whitening = None
    if args.model == "fast":
        mean, std = data_mod.NORMALIZATION[data.name]
        whitening = data_mod.normalized_tensor(data.train_images[:5000], mean, std)
    model = build_model(args.model, data.num_classes, depth=args.depth, width=args.width, seed=config.seed,
                        model_kwargs=json.loads(args.model_kwargs), whitening_images=whitening)
    result = train(model, data, config, device=device, checkpoint=args.checkpoint, log=print)
    rank, _ = _dist_info()
    if rank == 0:
        print(json.dumps({"final": result.final, "precision": result.precision, "device": result.device,
                          "wall_time_s": round(result.wall_time_s, 3)}))
        if args.save_state:
            torch.save(result.model.state_dict(), args.save_state)
    if distributed:
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
