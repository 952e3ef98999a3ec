"""Multilayer perceptrons trained on small problems, batched over seeds, and the Gram matrices
of their embeddings.

The chapter *Non-linear networks* (``book/nonlinear_networks.ipynb``) explains and uses them
(the paper's Observation 2): rho of the kernel ``K = Phi Phi^T`` of the embeddings ``Phi``
(``N x width``, one row per input) after training (:func:`support.rank.gram_entropy`). The
kernels of random networks at infinite width are :mod:`support.arccos_kernels`.

* An MLP of ``depth`` linear layers: ``depth - 1`` hidden layers of ``width`` units with the
  chosen activation, then a linear read-out. The embedding is the last hidden layer's output
  (the read-out's input).
* **Batched over seeds**: weights are tensors ``(S, out, in)``, seed ``s`` owns slice ``s``, and
  training minimises the SUM of per-seed losses with Adam (elementwise), so every seed trains
  independently of the others.
* Initialisation: Gaussian with variance ``gain^2 / fan_in`` (``support.activations.gain``),
  zero biases; SIREN (``"sine"``) uses Sitzmann et al.'s uniform initialisation. Seed ``s``
  draws layer ``l`` from the stream ``support.seeding.torch_generator(s, "mlp-init", l)``.
* Data: scikit-learn's handwritten digits (ships offline; 1797 8x8 images, 10 classes) and a
  synthetic low-rank regression ``y = x A B``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from support.activations import SIREN_OMEGA, activate, check_activation, gain
from support.checks import check_int, check_seeds
from support.seeding import torch_generator

DTYPE = torch.float32


# --------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------


@dataclass
class MLP:
    """A batch of ``S`` MLPs with one activation: ``weights[i]`` is ``(S, out_i, in_i)``,
    ``biases[i]`` is ``(S, out_i)``; the last pair is the linear read-out."""

    weights: list
    biases: list
    activation: str

    @property
    def depth(self) -> int:
        return len(self.weights)

    def parameters(self) -> list:
        return [*self.weights, *self.biases]


def init_mlp(
    in_dim: int, width: int, out_dim: int, depth: int, activation: str, seeds
) -> MLP:
    """Random MLPs (one per seed) with ``depth`` linear layers, ``depth >= 2``.

    Seed ``s`` always gets the same network whatever other seeds are in the batch.
    """
    in_dim, width, out_dim = (
        check_int(v, k)
        for v, k in ((in_dim, "in_dim"), (width, "width"), (out_dim, "out_dim"))
    )
    depth = check_int(depth, "depth", 2)
    check_activation(activation)
    seeds = check_seeds(seeds)
    dims = [in_dim] + [width] * (depth - 1) + [out_dim]
    weights, biases = [], []
    for layer in range(depth):
        fan_in, fan_out = dims[layer], dims[layer + 1]
        ws = []
        for s in seeds:
            gen = torch_generator(s, "mlp-init", layer)
            if activation == "sine" and layer == 0:
                w = (torch.rand(fan_out, fan_in, generator=gen) * 2 - 1) / fan_in
            elif activation == "sine":
                bound = math.sqrt(6.0 / fan_in) / SIREN_OMEGA
                w = (torch.rand(fan_out, fan_in, generator=gen) * 2 - 1) * bound
            else:
                g = gain(activation) if layer < depth - 1 else 1.0
                w = torch.randn(fan_out, fan_in, generator=gen) * g / math.sqrt(fan_in)
            ws.append(w)
        weights.append(torch.stack(ws).to(DTYPE))
        biases.append(torch.zeros(len(seeds), fan_out, dtype=DTYPE))
    return MLP(weights, biases, activation)


def embed(net: MLP, x: torch.Tensor) -> torch.Tensor:
    """Embeddings ``(S, N, width)``: the last hidden layer's output for inputs ``x`` (``(N, in)``)."""
    if x.ndim != 2 or x.shape[1] != net.weights[0].shape[2]:
        raise ValueError(
            f"x must have shape (N, {net.weights[0].shape[2]}), got {tuple(x.shape)}"
        )
    h = x.to(DTYPE).expand(net.weights[0].shape[0], *x.shape)
    for w, b in zip(net.weights[:-1], net.biases[:-1]):
        h = activate(torch.baddbmm(b[:, None, :], h, w.mT), net.activation)
    return h


def forward(net: MLP, x: torch.Tensor) -> torch.Tensor:
    """Network outputs ``(S, N, out)``."""
    return torch.baddbmm(net.biases[-1][:, None, :], embed(net, x), net.weights[-1].mT)


def gram(phi: torch.Tensor) -> torch.Tensor:
    """Gram matrices ``K = Phi Phi^T`` of embeddings ``(..., N, width)``: ``(..., N, N)``."""
    if phi.ndim < 2:
        raise ValueError(f"phi must have shape (..., N, width), got {tuple(phi.shape)}")
    return phi @ phi.mT


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    """Train/test tensors. ``task`` is "classification" (integer labels) or "regression"."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    task: str

    @property
    def in_dim(self) -> int:
        return self.x_train.shape[1]

    @property
    def out_dim(self) -> int:
        return (
            int(self.y_train.max()) + 1
            if self.task == "classification"
            else self.y_train.shape[1]
        )


def load_digits_dataset(seed: int = 0, test_fraction: float = 0.25) -> Dataset:
    """scikit-learn's handwritten digits, stratified split, features standardised with the
    training set's mean and standard deviation (constant pixels left at zero)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_fraction, random_state=int(seed), stratify=y
    )
    mean, std = x_tr.mean(0), x_tr.std(0)
    std[std == 0] = 1.0
    tr = torch.as_tensor((x_tr - mean) / std, dtype=DTYPE)
    te = torch.as_tensor((x_te - mean) / std, dtype=DTYPE)
    return Dataset(
        tr, torch.as_tensor(y_tr), te, torch.as_tensor(y_te), "classification"
    )


def lowrank_regression_dataset(
    n_train: int = 512,
    n_test: int = 512,
    in_dim: int = 32,
    out_dim: int = 32,
    rank: int = 4,
    seed: int = 0,
) -> Dataset:
    """Synthetic low-rank regression ``y = x A B / ||A B||`` with Gaussian ``x`` (``in_dim``),
    ``A`` (``in_dim x rank``), ``B`` (``rank x out_dim``), normalised to unit output power."""
    n_train, n_test, in_dim, out_dim = (
        check_int(v, k)
        for v, k in (
            (n_train, "n_train"),
            (n_test, "n_test"),
            (in_dim, "in_dim"),
            (out_dim, "out_dim"),
        )
    )
    rank = check_int(rank, "rank")
    if rank > min(in_dim, out_dim):
        raise ValueError(
            f"rank must be <= min(in_dim, out_dim) = {min(in_dim, out_dim)}, got {rank}"
        )
    gen = torch_generator(seed, "lowrank-regression")
    m = torch.randn(in_dim, rank, generator=gen) @ torch.randn(
        rank, out_dim, generator=gen
    )
    m = m * math.sqrt(out_dim) / torch.linalg.matrix_norm(m)
    x = torch.randn(n_train + n_test, in_dim, generator=gen)
    y = x @ m
    return Dataset(
        x[:n_train].to(DTYPE),
        y[:n_train].to(DTYPE),
        x[n_train:].to(DTYPE),
        y[n_train:].to(DTYPE),
        "regression",
    )


def class_sorted_subset(labels: torch.Tensor, per_class: int) -> torch.Tensor:
    """Indices of the first ``per_class`` examples of every class, grouped by class (so that a
    Gram matrix over them shows class blocks on its diagonal)."""
    per_class = check_int(per_class, "per_class")
    idx = []
    for c in torch.unique(labels):
        members = torch.nonzero(labels == c).flatten()
        if len(members) < per_class:
            raise ValueError(
                f"class {int(c)} has {len(members)} examples, fewer than per_class={per_class}"
            )
        idx.append(members[:per_class])
    return torch.cat(idx)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def _per_seed_loss(out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    if task == "classification":
        s, n, c = out.shape
        return (
            torch.nn.functional.cross_entropy(
                out.reshape(s * n, c), y.repeat(s), reduction="none"
            )
            .reshape(s, n)
            .mean(1)
        )
    return ((out - y) ** 2).mean(dim=(1, 2))


def evaluate(net: MLP, data: Dataset) -> dict:
    """Per-seed train/test loss, and test accuracy for classification (numpy arrays)."""
    with torch.no_grad():
        out_tr, out_te = forward(net, data.x_train), forward(net, data.x_test)
        result = {
            "train_loss": _per_seed_loss(out_tr, data.y_train, data.task).numpy(),
            "test_loss": _per_seed_loss(out_te, data.y_test, data.task).numpy(),
        }
        if data.task == "classification":
            result["test_accuracy"] = (
                (out_te.argmax(-1) == data.y_test).float().mean(1).numpy()
            )
    return result


def train_mlp(
    data: Dataset,
    depth: int,
    activation: str,
    seeds,
    *,
    width: int = 64,
    steps: int = 500,
    lr: float = 1e-3,
) -> MLP:
    """Train one MLP per seed on ``data`` with full-batch Adam (cosine decay to zero) on the sum
    over seeds of the per-seed loss (cross-entropy or mean squared error)."""
    steps = check_int(steps, "steps")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    net = init_mlp(data.in_dim, width, data.out_dim, depth, activation, seeds)
    params = [p.requires_grad_(True) for p in net.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        _per_seed_loss(
            forward(net, data.x_train), data.y_train, data.task
        ).sum().backward()
        opt.step()
        sched.step()
    for p in params:
        p.requires_grad_(False)
    return net
