"""One trainer for the CIFAR networks, plain or linearly over-parameterized (``support.expand``).

The chapter *Expanded CNNs on CIFAR* (``book/cifar_expanded.ipynb``) explains it; its recipes,
grids and command line live in ``support.experiments.cifar_expanded``.

What :func:`train` does, and why:

* **Precision by device** (:func:`precision_for`): bf16 autocast on Ampere/Hopper GPUs, fp16
  autocast with a gradient scaler on older GPUs (e.g. the T4 of free Colab, which has no bf16
  hardware), fp32 on the CPU (exact and reproducible).
* ``channels_last`` memory format and optional ``torch.compile`` (GPU speed).
* SGD with (optionally Nesterov) momentum, label smoothing, and a per-step learning-rate
  schedule (:func:`lr_factor`: linear warm-up then linear decay, cosine, step, or constant).
* **Evaluation of the collapsed model**: an expanded network is collapsed (a copy of it) to the
  original architecture before every evaluation, so the accuracies reported are those of the
  network one would deploy.
* **Checkpoints every epoch with exact resume**: the :class:`TrainingState` (model, optimizer,
  scheduler, gradient scaler, history, recorded spectra, random state) is written atomically
  after each epoch as tensors and plain values only, and read back with
  ``torch.load(weights_only=True)``, so a checkpoint from elsewhere cannot run code. It carries a
  fingerprint of what it was made for (:func:`run_fingerprint`: data, model, config); a rerun
  with the same checkpoint path continues where the last one stopped only if the fingerprint
  matches, and (on the CPU) ends with bit-identical weights. A Colab disconnect therefore loses
  at most one epoch, and a checkpoint of another run is refused, never silently continued.
* A **clear stop on a non-finite loss** (:class:`NonFiniteLossError`), checked every few steps so
  the GPU is not synchronised at every step.
* tqdm progress only in interactive use; executed chapters stay quiet.
* **DistributedDataParallel** when launched by ``torchrun`` (NCCL on GPUs, gloo on CPUs): each
  process takes every ``world_size``-th example of the epoch's permutation, ``batch_size`` stays the
  global batch, evaluations are summed over processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn
from torch.nn.utils import parametrize

from support import data as data_mod
from support import files, models, seeding
from support.checks import check_choice, check_flag, check_int, check_real
from support.expand import collapse, expand, expanded_layers, factors, unwrap
from support.hardware import describe_device, resolve_device
from support.rank import gram_entropy

SCHEDULES = ("linear", "cosine", "step", "constant")
WEIGHT_DECAY_TARGETS = ("factors", "collapsed")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
CHECKPOINT_FORMAT = "support.train checkpoint"
CHECKPOINT_VERSION = 2


class NonFiniteLossError(FloatingPointError):
    """Training stopped because the loss became NaN or infinite (lower the learning rate)."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed: unreadable, foreign, or made for another run."""


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (all plain values, so a config can be stored as JSON).

    ``lr`` is the peak learning rate of SGD with momentum ``momentum`` (Nesterov if
    ``nesterov``); ``weight_decay`` is applied to weights (ndim >= 2), not to biases or
    BatchNorm parameters. ``weight_decay_on`` says which weights of an expanded layer it
    penalises: ``"factors"`` (SGD's own decay on every factor, as the paper's code does; at
    balanced factors this is a Schatten-2/d quasi-norm of the effective weight, an explicit
    low-rank regulariser that grows with depth) or ``"collapsed"`` (the plain network's penalty
    ``weight_decay / 2 * ||W||^2`` on the effective weight, added to the loss, the factors
    themselves undecayed: :func:`collapsed_weight_penalty`). Layers that are not expanded get
    SGD's decay either way, so at depth 1 the two are the same recipe. ``schedule`` is one of
    "linear" (warm-up over the first ``warmup`` fraction of steps, then linear decay to 0),
    "cosine" (same warm-up, cosine decay), "step" (x ``gamma`` at each fraction in
    ``milestones``), "constant". ``translate``/``flip``: training augmentation. ``precision``:
    "auto" (see :func:`precision_for`), "fp32", "bf16" or "fp16". ``check_every``: steps between
    non-finite-loss checks. ``record_layer``: name of a Conv2d/Linear module whose (collapsed)
    weight's singular values are recorded at initialisation and after every epoch.
    ``train_eval``: also measure the accuracy on the un-augmented training set after every epoch
    (costs one extra forward pass over it), else only at the end. Every field is checked when
    the config is made (ValueError naming it).
    """

    epochs: int = 10
    batch_size: int = 512
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    weight_decay_on: str = "factors"
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
        self.epochs = check_int(self.epochs, "epochs", 1)
        self.batch_size = check_int(self.batch_size, "batch_size", 1)
        self.lr = check_real(self.lr, "lr", minimum=0.0, strict=True)
        self.momentum = check_real(self.momentum, "momentum", minimum=0.0, maximum=1.0)
        if self.momentum == 1.0:
            raise ValueError("momentum must be < 1, got 1")
        self.nesterov = check_flag(self.nesterov, "nesterov")
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.weight_decay = check_real(self.weight_decay, "weight_decay", minimum=0.0)
        check_choice(self.weight_decay_on, "weight_decay_on", WEIGHT_DECAY_TARGETS)
        self.label_smoothing = check_real(
            self.label_smoothing, "label_smoothing", minimum=0.0, maximum=1.0
        )
        if self.label_smoothing == 1.0:
            raise ValueError("label_smoothing must be < 1, got 1")
        check_choice(self.schedule, "schedule", SCHEDULES)
        self.warmup = check_real(self.warmup, "warmup", minimum=0.0, maximum=1.0)
        if self.warmup == 1.0:
            raise ValueError("warmup must be < 1, got 1")
        if isinstance(self.milestones, (str, bytes)) or not hasattr(
            self.milestones, "__iter__"
        ):
            raise TypeError(
                f"milestones must be a sequence of fractions, got {self.milestones!r}"
            )
        self.milestones = tuple(
            check_real(m, "milestones entry", minimum=0.0, maximum=1.0, strict=True)
            for m in self.milestones
        )
        if list(self.milestones) != sorted(set(self.milestones)):
            raise ValueError(f"milestones must be increasing, got {self.milestones}")
        self.gamma = check_real(self.gamma, "gamma", minimum=0.0, strict=True)
        self.translate = check_int(self.translate, "translate", 0)
        for flag in ("flip", "channels_last", "compile", "train_eval"):
            setattr(self, flag, check_flag(getattr(self, flag), flag))
        check_choice(self.precision, "precision", PRECISIONS)
        self.seed = check_int(self.seed, "seed", 0)
        self.check_every = check_int(self.check_every, "check_every", 1)
        if self.record_layer is not None and not isinstance(self.record_layer, str):
            raise TypeError(
                f"record_layer must be a module name or None, got {self.record_layer!r}"
            )

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
    (DistributedDataParallel and DataParallel wrappers are looked through, by class)."""
    if expanded_layers(model):
        return collapse(model)
    return unwrap(model)


def build_model(
    name: str,
    num_classes: int,
    *,
    depth: int = 1,
    width: float = 1.0,
    seed: int = 0,
    model_kwargs: dict | None = None,
    whitening_images: torch.Tensor | None = None,
) -> nn.Module:
    """Build a model from ``support.models`` from ``seed`` with the paper's initialisation.

    ``depth=1`` is the baseline: ``support.expand.expand(model, depth=1)`` re-initialises its layers
    with the base scheme of the expanded ones (Kaiming, as in the official code), so baseline and
    expanded networks start from the same weight distribution. ``depth > 1`` expands every Conv2d
    and Linear into ``depth`` factors of hidden width ``int(out * width)``. The frozen whitening
    layer of :class:`support.models.FastCNN` is never expanded; its filters come from
    ``whitening_images`` (normalised, (N, 3, H, W)). The random stream is
    ``support.seeding.torch_seed(seed, "model-init")``.
    """
    depth = check_int(depth, "depth (1 = baseline)", 1)
    torch.manual_seed(seeding.torch_seed(seed, "model-init"))
    model = models.build(name, num_classes=num_classes, **(model_kwargs or {}))
    if isinstance(model, models.FastCNN):
        if whitening_images is None:
            raise ValueError(
                "FastCNN needs whitening_images (normalised training images) to set its whitening layer"
            )
        models.init_whitening(model, whitening_images)
    expand(
        model,
        depth=depth,
        width=width,
        layers=lambda n, m: (
            isinstance(m, (nn.Conv2d, nn.Linear)) and n not in models.WHITENING_LAYERS
        ),
    )
    return model


# ------------------------------------------------------------------------------------ training
@dataclass
class TrainResult:
    """What a run leaves: per-epoch ``history`` (lists), ``final`` metrics, recorded singular values
    (``spectra``: (epochs + 1, k), row 0 at initialisation), the trained ``model`` (collapsed when it
    was expanded) and bookkeeping. ``wall_time_s`` is this call's time; ``training_time_s`` the
    time spent in epochs over every session of the run (a resumed run included)."""

    history: dict
    final: dict
    spectra: np.ndarray | None
    model: nn.Module
    precision: str
    device: str
    wall_time_s: float
    training_time_s: float = 0.0
    resumed_from_epoch: int = 0
    config: dict = field(default_factory=dict)


HISTORY_KEYS = (
    "epoch",
    "lr",
    "train_loss",
    "train_acc_augmented",
    "test_acc",
    "test_loss",
    "train_acc",
)


def _dist_info():
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


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
    return torch.autocast(
        device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16
    )


def layer_singular_values(model: nn.Module, layer: str) -> np.ndarray:
    """Singular values (descending, float64) of layer ``layer``'s weight, reshaped (out, in * k * k).

    For an expanded model the weight is the effective (collapsed) one.
    """
    module = dict(model.named_modules()).get(layer)
    if not isinstance(module, (nn.Conv2d, nn.Linear)):
        raise ValueError(
            f"record_layer {layer!r} is not a Conv2d/Linear module of {type(model).__name__}"
        )
    with torch.no_grad():
        w = module.weight.detach().float().reshape(module.weight.shape[0], -1)
        return torch.linalg.svdvals(w.cpu().double()).numpy()


def collapsed_weight_penalty(model: nn.Module, weight_decay: float) -> torch.Tensor:
    """``weight_decay / 2 * sum ||W_e||^2`` over the expanded layers of ``model``, W_e the effective
    (collapsed) weight each one forms from its factors.

    This is the penalty SGD's weight decay puts on a plain layer's weight, moved onto the
    weight the expanded network actually computes with: added to the loss, its gradient reaches
    the factors through the composite, so the explicit regulariser is the plain network's and
    only the parameterisation differs (``TrainConfig.weight_decay_on="collapsed"``; chapter
    *Expanded CNNs on CIFAR*, tuning). Zero for a model with no expanded layer.
    """
    layers = expanded_layers(model).values()
    for layer in layers:
        if not parametrize.is_parametrized(layer, "weight"):
            raise ValueError(
                f"decay on the collapsed weight needs layers trained through their composite "
                f"weight; {type(layer).__name__} (an expansion with batch-norm) has none"
            )
    total = sum(_at_least_fp32(layer.weight).square().sum() for layer in layers)
    return 0.5 * weight_decay * total if layers else torch.zeros(())


def _at_least_fp32(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in float32 when it is in a half precision (autocast), else as it is."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def _expanded_factor_ids(model: nn.Module) -> set:
    """ids of the factor parameters of every expanded layer (the weights the composite is made of)."""
    return {
        id(w) for layer in expanded_layers(model).values() for w in factors(layer)[0]
    }


def _optimizer(model: nn.Module, config: TrainConfig):
    skip = (
        _expanded_factor_ids(model) if config.weight_decay_on == "collapsed" else set()
    )
    trainable = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trainable if p.ndim >= 2 and id(p) not in skip]
    no_decay = [p for p in trainable if p.ndim < 2 or id(p) in skip]
    return torch.optim.SGD(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
    )


def run_fingerprint(
    model: nn.Module, data: data_mod.ImageArrays, config: TrainConfig
) -> dict:
    """What a checkpoint was made for: the data (:meth:`support.data.ImageArrays.fingerprint`), the model (class,
    and the name and shape of every state entry, which fixes expansion depth and width) and the
    config. Resuming requires equality."""
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    return {
        "data": data.fingerprint(),
        "model": {"class": type(model).__name__, "state_shapes": shapes},
        "config": config.to_dict(),
    }


class TrainingState:
    """Everything a run needs to continue after an interruption, as one object.

    It owns the model, the optimizer, the per-step learning-rate scheduler, the gradient scaler,
    the per-epoch ``history``, the recorded ``spectra``, the number of finished ``epoch`` s and the
    seconds spent training so far (``elapsed_s``, over every session of an interrupted run).
    ``state_dict()`` returns tensors and plain Python values only (what
    ``torch.load(weights_only=True)`` accepts); ``load_state_dict()`` restores it, and the
    global torch random state with it.
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        steps_per_epoch: int,
        precision: str,
        device,
    ):
        self.model, self.config = model, config
        self.optimizer = _optimizer(model, config)
        total = config.epochs * steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, total, config)
        )
        self.scaler = torch.amp.GradScaler(
            torch.device(device).type, enabled=precision == "fp16"
        )
        self.history = {k: [] for k in HISTORY_KEYS}
        self.spectra: list[np.ndarray] = []
        self.epoch = 0
        self.elapsed_s = 0.0

    def state_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "history": {k: list(v) for k, v in self.history.items()},
            "spectra": [
                torch.from_numpy(np.asarray(s, dtype=np.float64)) for s in self.spectra
            ],
            "elapsed_s": float(self.elapsed_s),
            "rng_cpu": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.history = {
            k: [float(v) for v in state["history"][k]] for k in HISTORY_KEYS
        }
        self.spectra = [s.cpu().numpy() for s in state["spectra"]]
        self.epoch = int(state["epoch"])
        self.elapsed_s = float(state["elapsed_s"])
        torch.set_rng_state(state["rng_cpu"])


def save_checkpoint(path, state: TrainingState, fingerprint: dict) -> None:
    """Write ``state`` and ``fingerprint`` to ``path`` atomically (temporary file, then rename).

    An I/O failure (a full disk, say) raises OSError naming the file; the previous checkpoint,
    if any, is kept.
    """
    path = Path(path)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "fingerprint": fingerprint,
        "state": state.state_dict(),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with files.atomic_writer(path, "checkpoint") as handle:
            torch.save(payload, handle)
    except (OSError, RuntimeError) as exc:
        raise OSError(
            f"could not write checkpoint {path} ({exc}); the previous checkpoint is kept"
        ) from exc


def load_checkpoint(path, device, fingerprint: dict) -> dict:
    """The training state stored in checkpoint ``path``, after checking it was made for ``fingerprint``.

    Loads with ``weights_only=True`` (tensors and plain values; no code can run). Raises
    :class:`CheckpointError`, naming the file and what to do, when it is unreadable, not a
    checkpoint of this trainer, or made for other data, another model or another config.
    """
    path = Path(path)
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # unpickling, zip, I/O errors all mean "cannot resume"
        raise CheckpointError(
            f"checkpoint {path} is unreadable or not a checkpoint of this trainer "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            f"delete it to start the run over"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not a checkpoint of support.train; delete it or pass another path"
        )
    version = payload.get("version")
    if isinstance(version, int) and version > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has version {version}, newer than this trainer's "
            f"{CHECKPOINT_VERSION}: resume it with the newer code that wrote it"
        )
    if version != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has version {version!r}, this trainer writes "
            f"{CHECKPOINT_VERSION}; delete it to start the run over"
        )
    stored = payload.get("fingerprint", {})
    for part in ("data", "model", "config"):
        if stored.get(part) != fingerprint[part]:
            raise CheckpointError(
                f"checkpoint {path} was made for another run (its {part} differs); "
                f"delete it, or pass a checkpoint path of its own to this run"
            )
    return payload["state"]


def train_epoch(
    net: nn.Module, loader, state: TrainingState, precision: str, loss_fn, bar=None
) -> torch.Tensor:
    """One pass over ``loader``: forward, backward, optimizer and scheduler step per batch.

    Returns ``[summed loss, correct predictions, examples]`` (float64, on the device; summed
    over processes by the caller). Raises :class:`NonFiniteLossError` when the running loss
    stops being finite (checked every ``config.check_every`` steps and at the end).
    """
    device, config = loader.device, state.config
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    on_collapsed = config.weight_decay_on == "collapsed" and config.weight_decay > 0
    for step, (x, y) in enumerate(loader):
        # With decay on the collapsed weight, each composite is formed once per step and used
        # by both the forward pass and the penalty.
        with (
            _autocast(device, precision),
            parametrize.cached() if on_collapsed else contextlib.nullcontext(),
        ):
            logits = net(x)
            loss = loss_fn(logits.float(), y)
            objective = (
                loss + collapsed_weight_penalty(net, config.weight_decay)
                if on_collapsed
                else loss
            )
        state.optimizer.zero_grad(set_to_none=True)
        state.scaler.scale(objective).backward()
        state.scaler.step(state.optimizer)
        state.scaler.update()
        state.scheduler.step()
        sums[0] += loss.detach().double() * len(y)
        sums[1] += (logits.detach().argmax(1) == y).sum()
        sums[2] += len(y)
        if (
            (step + 1) % config.check_every == 0 or step + 1 == len(loader)
        ) and not torch.isfinite(sums[0]):
            raise NonFiniteLossError(
                f"non-finite training loss at epoch {state.epoch + 1}, step {step + 1} "
                f"(lr {state.scheduler.get_last_lr()[0]:.4g}); lower the learning rate"
            )
        if bar is not None:
            bar.update()
    return sums


def _record_epoch(
    state: TrainingState,
    sums: torch.Tensor,
    lr: float,
    inference: nn.Module,
    loaders,
    precision: str,
) -> None:
    """Append one epoch's metrics (``lr``: the learning rate of its first step) and the recorded
    layer's spectrum to ``state``."""
    _, train_eval_loader, test_loader = loaders
    config = state.config
    test = evaluate(inference, test_loader, precision)
    last = state.epoch + 1 == config.epochs
    train_acc = (
        evaluate(inference, train_eval_loader, precision)["acc"]
        if config.train_eval or last
        else math.nan
    )
    s = sums.tolist()
    row = {
        "epoch": state.epoch + 1,
        "lr": lr,
        "train_loss": s[0] / s[2],
        "train_acc_augmented": s[1] / s[2],
        "test_acc": test["acc"],
        "test_loss": test["loss"],
        "train_acc": train_acc,
    }
    for key in HISTORY_KEYS:
        state.history[key].append(float(row[key]))
    if config.record_layer is not None:
        state.spectra.append(layer_singular_values(inference, config.record_layer))


def train(
    model: nn.Module,
    data: data_mod.ImageArrays,
    config: TrainConfig,
    *,
    device="auto",
    checkpoint=None,
    progress: bool | str = "auto",
    log=None,
    stop_after_epoch: int | None = None,
) -> TrainResult:
    """Train ``model`` on ``data`` with ``config``; return a :class:`TrainResult`.

    ``checkpoint``: a file path; after every epoch the full :class:`TrainingState` is written
    there, and if the file exists when ``train`` starts, the run resumes from it (its fingerprint,
    :func:`run_fingerprint`, must match, else :class:`CheckpointError`). ``stop_after_epoch``
    ends the call after that epoch as an interruption would (the checkpoint is kept; calling
    again resumes). ``progress``: tqdm bar (True/False; "auto" = only when stderr is a terminal).
    ``log``: callable receiving one line per epoch (e.g. ``print``), or None for silence. Under
    ``torchrun`` (an initialised process group) the model is wrapped in DistributedDataParallel
    and only rank 0 writes the checkpoint.

    Raises :class:`NonFiniteLossError` when the training loss becomes NaN/Inf.
    """
    start_time = time.perf_counter()
    device = resolve_device(device)
    precision = precision_for(device, config.precision)
    loaders = _loaders(data, config, device, precision)
    fingerprint = (
        run_fingerprint(model, data, config) if checkpoint is not None else None
    )
    model = model.to(
        device,
        memory_format=torch.channels_last
        if config.channels_last
        else torch.contiguous_format,
    )
    state = TrainingState(model, config, len(loaders[0]), precision, device)
    ckpt_path = None if checkpoint is None else _checkpoint_path(checkpoint)
    _start_or_resume(state, ckpt_path, device, fingerprint)
    resumed_from = state.epoch
    last_epoch = (
        config.epochs
        if stop_after_epoch is None
        else min(config.epochs, stop_after_epoch)
    )
    _run_epochs(
        state,
        _wrapped(model, config, device),
        loaders,
        precision,
        until=last_epoch,
        bar=_progress_bar(progress, config, len(loaders[0]), state.epoch),
        log=log,
        checkpoint=(ckpt_path, fingerprint),
    )
    history = state.history
    final = {"epochs_done": state.epoch}
    if state.epoch:
        final.update(
            test_acc=history["test_acc"][-1],
            test_loss=history["test_loss"][-1],
            train_acc=history["train_acc"][-1],
            train_loss=history["train_loss"][-1],
        )
    return TrainResult(
        history=history,
        final=final,
        spectra=np.array(state.spectra) if state.spectra else None,
        model=deployable(model),
        precision=precision,
        device=describe_device(device),
        wall_time_s=time.perf_counter() - start_time,
        training_time_s=state.elapsed_s,
        resumed_from_epoch=resumed_from,
        config=config.to_dict(),
    )


def _loaders(data, config: TrainConfig, device, precision: str):
    """The training, training-evaluation and test loaders of :func:`train`, this process's share
    of each batch under ``torchrun``."""
    rank, world = _dist_info()
    if config.batch_size % world:
        raise ValueError(
            f"batch_size={config.batch_size} must be divisible by the {world} processes"
        )
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[
        precision
    ]
    return data_mod.loaders(
        data,
        config.batch_size // world,
        device=device,
        dtype=torch.float32 if precision == "fp32" else dtype,
        seed=config.seed,
        rank=rank,
        world_size=world,
        translate=config.translate,
        flip=config.flip,
        channels_last=config.channels_last,
    )


def _checkpoint_path(checkpoint) -> Path:
    """The checkpoint path, checked before any training: a regular file (or nothing) in a folder
    this process can create and write, so that a run never trains an epoch it cannot save."""
    path = files.check_target(checkpoint, "checkpoint")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(
            f"checkpoint folder {path.parent} cannot be created ({exc.strerror})"
        ) from exc
    if not os.access(path.parent, os.W_OK):
        raise OSError(f"checkpoint folder {path.parent} is not writable")
    return path


def _start_or_resume(state: TrainingState, ckpt_path, device, fingerprint) -> None:
    """Load the checkpoint into ``state`` when one exists, else record the initial spectrum."""
    if ckpt_path is not None and ckpt_path.exists():
        state.load_state_dict(load_checkpoint(ckpt_path, device, fingerprint))
    elif state.config.record_layer is not None:
        state.spectra.append(
            layer_singular_values(deployable(state.model), state.config.record_layer)
        )


def _wrapped(model: nn.Module, config: TrainConfig, device) -> nn.Module:
    """The module the training steps call: ``model`` under DistributedDataParallel when several
    processes train, compiled when ``config.compile``."""
    net = model
    if _dist_info()[1] > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if config.compile:
        net = torch.compile(net)
    return net


def _progress_bar(progress, config: TrainConfig, steps_per_epoch: int, epoch: int):
    """A tqdm bar over the run's steps (rank 0 only), or None; "auto": only on a terminal."""
    show = sys.stderr.isatty() if progress == "auto" else bool(progress)
    if not show or _dist_info()[0] != 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(
        total=config.epochs * steps_per_epoch,
        initial=epoch * steps_per_epoch,
        desc="train",
        leave=False,
    )


def _run_epochs(
    state: TrainingState, net, loaders, precision, *, until, bar, log, checkpoint
) -> None:
    """Train epoch after epoch until ``state.epoch == until``: record each epoch's metrics, log
    a line, and write the checkpoint (rank 0) after each one."""
    rank, world = _dist_info()
    train_loader, config = loaders[0], state.config
    ckpt_path, fingerprint = checkpoint
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    while state.epoch < until:
        epoch_start = time.perf_counter()
        net.train()
        train_loader.set_epoch(state.epoch)
        lr = state.scheduler.get_last_lr()[0]
        sums = train_epoch(net, train_loader, state, precision, loss_fn, bar)
        if world > 1:
            torch.distributed.all_reduce(sums)
        _record_epoch(state, sums, lr, deployable(state.model), loaders, precision)
        state.epoch += 1
        state.elapsed_s += time.perf_counter() - epoch_start
        if log is not None and rank == 0:
            h = state.history
            log(
                f"epoch {state.epoch}/{config.epochs}: train loss {h['train_loss'][-1]:.4f}, "
                f"train acc (augmented) {h['train_acc_augmented'][-1]:.4f}, "
                f"test acc {h['test_acc'][-1]:.4f}"
            )
        if ckpt_path is not None and rank == 0:
            save_checkpoint(ckpt_path, state, fingerprint)
        if world > 1:
            torch.distributed.barrier()
    if bar is not None:
        bar.close()


# --------------------------------------------------------------------------- embeddings and stats
@torch.no_grad()
def penultimate_embeddings(
    model: nn.Module, loader, max_examples: int | None = None
) -> torch.Tensor:
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

    Returns mean, std (sample, ddof=1), n and the two-sided ``confidence`` interval of the mean
    difference (scipy's paired t-test, ``ttest_rel(...).confidence_interval``). Needs n >= 2
    pairs of equal length.
    """
    a, b = np.asarray(treatment, dtype=float), np.asarray(baseline, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(
            f"treatment and baseline must be 1-D of equal length, got {a.shape} and {b.shape}"
        )
    if len(a) < 2:
        raise ValueError(f"a confidence interval needs at least 2 pairs, got {len(a)}")
    d = a - b
    if np.all(
        d == d[0]
    ):  # zero spread: scipy's t-interval is undefined, the interval is the point
        low = high = float(d[0])
    else:
        ci = stats.ttest_rel(a, b).confidence_interval(confidence)
        low, high = float(ci.low), float(ci.high)
    return {
        "mean": float(d.mean()),
        "std": float(d.std(ddof=1)),
        "n": len(d),
        "ci_low": low,
        "ci_high": high,
        "confidence": confidence,
    }


def embedding_rho(model: nn.Module, loader, max_examples: int = 500) -> float:
    """The paper's rho (spectral entropy, nats) of the Gram matrix K = Phi Phi^T of the penultimate
    embeddings Phi of the first ``max_examples`` images of ``loader``.

    The embeddings are centred (mean embedding subtracted) first: after a ReLU/max-pool every
    embedding shares a large mean component that would otherwise dominate K. The paper's exact
    construction of K is not known (only that it is a Gram matrix of embeddings), so this is our
    choice, stated in the chapter.
    """
    phi = penultimate_embeddings(model, loader, max_examples)
    return float(gram_entropy(phi, centre=True))
