"""CIFAR networks for the expanded-CNN chapter, and how to count their parameters and FLOPs.

The chapter *Expanded CNNs on CIFAR* (``book/cifar_expanded.ipynb``) trains each of these with and
without linear over-parameterization (``support.expand``): every ``nn.Conv2d`` / ``nn.Linear`` they
contain can be expanded into a product of linear maps and collapsed back afterwards.

* :class:`FastCNN`: a network in the spirit of the CIFAR-10 speed records (airbench94, Jordan 2024,
  arXiv:2404.00498): a frozen 2x2 patch-whitening convolution,
  three conv groups (conv3x3 -> max-pool -> BN -> GELU -> conv3x3 -> BN -> GELU), global max-pool,
  a scaled linear head. Widths (64, 256, 256) by default.
* :class:`ResNet18`: the usual CIFAR ResNet-18 (3x3 stem, no stem pooling, four stages of two
  basic blocks), with a width knob for small CPU runs.
* :class:`PlainCNN`: a small plain CNN (conv-BN-ReLU-pool stages, 512 channels last) like the
  one whose layer spectrum the paper plots (v1 Insight 3: 512 singular values).

Every model has ``features(x)`` (the penultimate embedding, whose Gram-matrix rho the chapter
measures) and ``forward(x) = head(features(x))``; ``WHITENING_LAYERS`` names layers that must
not be expanded (fixed, data-dependent filters).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _bn(channels: int, frozen_weight: bool) -> nn.BatchNorm2d:
    """BatchNorm as the speed records use it: fast running statistics, scale optionally frozen at 1."""
    bn = nn.BatchNorm2d(channels, momentum=0.4, eps=1e-12 if frozen_weight else 1e-5)
    if frozen_weight:
        bn.weight.requires_grad_(False)
    return bn


class ConvGroup(nn.Module):
    """conv3x3 -> max-pool 2 -> BN -> GELU -> conv3x3 -> BN -> GELU (pooling before BN: 4x fewer elements)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.bn1 = _bn(c_out, frozen_weight=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = _bn(c_out, frozen_weight=True)

    def forward(self, x):
        x = F.gelu(self.bn1(self.pool(self.conv1(x))))
        return F.gelu(self.bn2(self.conv2(x)))


class FastCNN(nn.Module):
    """Speed-record-style CIFAR network (see the module docstring); ``whiten`` stays unexpanded.

    Call :func:`init_whitening` with training images before training: it sets the 2x2 whitening
    filters from the patch covariance (eigenvectors scaled by 1/sqrt(eigenvalue), with their
    negations, so 24 channels) and freezes them; their bias still learns.
    """

    def __init__(
        self, num_classes: int = 10, widths=(64, 256, 256), logit_scale: float = 1 / 9
    ):
        super().__init__()
        if len(widths) != 3 or min(widths) <= 0:
            raise ValueError(
                f"widths must be three positive channel counts, got {widths}"
            )
        self.whiten = nn.Conv2d(3, 24, 2, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)
        c = [24, *widths]
        self.groups = nn.Sequential(*(ConvGroup(c[i], c[i + 1]) for i in range(3)))
        self.head = nn.Linear(widths[-1], num_classes, bias=False)
        self.logit_scale = float(logit_scale)

    def features(self, x):
        x = self.groups(F.gelu(self.whiten(x)))
        return x.amax(dim=(2, 3))

    def forward(self, x):
        return self.head(self.features(x)) * self.logit_scale


@torch.no_grad()
def init_whitening(model: FastCNN, images: torch.Tensor, eps: float = 5e-4) -> None:
    """Set ``model.whiten`` to the PCA whitening of 2x2 patches of ``images`` (N, 3, H, W), normalised.

    Filters: eigenvectors of the patch covariance divided by sqrt(eigenvalue + eps), followed by
    their negations (GELU after them keeps both signs). Deterministic given ``images``.
    """
    if not isinstance(model, FastCNN):
        raise TypeError(f"init_whitening needs a FastCNN, got {type(model).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(
            f"images: expected shape (N, 3, H, W), got {tuple(images.shape)}"
        )
    weight = model.whiten.weight
    patches = (
        F.unfold(images.float(), kernel_size=2).transpose(1, 2).reshape(-1, 12).double()
    )
    patches = patches - patches.mean(0)
    cov = patches.T @ patches / len(patches)
    eigvals, eigvecs = torch.linalg.eigh(cov)
    filters = (eigvecs.T / torch.sqrt(eigvals + eps)[:, None]).reshape(12, 3, 2, 2)
    weight.copy_(torch.cat([filters, -filters]).to(weight.dtype))


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv-BN pairs with an identity or 1x1-conv shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                nn.BatchNorm2d(c_out),
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """CIFAR ResNet-18: 3x3 stem, stages of widths ``width * (1, 2, 4, 8)`` (64 -> 512 by default)."""

    def __init__(self, num_classes: int = 10, width: int = 64):
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
        blocks, c_in = [], width
        for i, mult in enumerate((1, 2, 4, 8)):
            c_out = width * mult
            for j in range(2):
                blocks.append(
                    BasicBlock(c_in, c_out, stride=2 if (i > 0 and j == 0) else 1)
                )
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(c_in, num_classes)

    def features(self, x):
        return self.blocks(self.stem(x)).mean(dim=(2, 3))

    def forward(self, x):
        return self.head(self.features(x))


class PlainCNN(nn.Module):
    """Plain CNN: per stage conv3x3 -> BN -> ReLU -> max-pool 2, then global average pool and a linear head.

    ``widths=(64, 128, 256, 512)`` by default, so the last conv has 512 filters and its weight
    512 singular values, as in the paper's singular-value dynamics figure. ``batch_norm=False``
    drops BN (convs get biases): then data-parallel training equals one-process training exactly.
    """

    def __init__(
        self, num_classes: int = 10, widths=(64, 128, 256, 512), batch_norm: bool = True
    ):
        super().__init__()
        if not widths or min(widths) <= 0:
            raise ValueError(f"widths must be positive channel counts, got {widths}")
        layers, c_in = [], 3
        for c_out in widths:
            norm = [nn.BatchNorm2d(c_out)] if batch_norm else []
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batch_norm),
                *norm,
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            c_in = c_out
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, num_classes)

    def features(self, x):
        return self.body(x).mean(dim=(2, 3))

    def forward(self, x):
        return self.head(self.features(x))


MODELS = {"fast": FastCNN, "resnet18": ResNet18, "plain": PlainCNN}
WHITENING_LAYERS = ("whiten",)


def build(name: str, num_classes: int = 10, **kwargs) -> nn.Module:
    """Construct a model by name: "fast" (:class:`FastCNN`), "resnet18", "plain"; kwargs go to it."""
    if name not in MODELS:
        raise ValueError(f"model name must be one of {sorted(MODELS)}, got {name!r}")
    return MODELS[name](num_classes=num_classes, **kwargs)


def count_flops(model: nn.Module, input_shape=(1, 3, 32, 32)) -> int:
    """FLOPs of one forward pass on a zero input of ``input_shape`` (torch's FlopCounterMode: 2 per MAC).

    Counts matrix multiplications and convolutions, the operations that dominate CNN cost. The
    model is run in eval mode on CPU-side zeros of its parameters' dtype and device.
    """
    from torch.utils.flop_counter import FlopCounterMode

    param = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(input_shape, dtype=param.dtype, device=param.device))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
