"""What an expanded layer costs: parameters, and multiply-accumulates in each of its forms.

The chapter *Linear over-parameterization* (``book/linear_overparam.ipynb``) compares three forms
of an expanded layer (:mod:`support.expand`): the sub-layers run one after another (how the
official code trains), one layer with the composite kernel plus the per-step cost of forming that
kernel (how :func:`support.expand.expand` trains), and the collapsed layer (inference). Every
multiply-accumulate count here is measured by PyTorch's own
:class:`torch.utils.flop_counter.FlopCounterMode` on the actual forward of each form (it counts
matrix products and convolutions, two FLOPs per MAC; element-wise work such as biases and
batch-norm is not counted), so nothing is counted by a formula that could drift from the code.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn.utils import parametrize
from torch.utils.flop_counter import FlopCounterMode

from support.expand import (
    SequentialExpansion,
    as_sequential,
    collapse,
    expanded_layers,
    unwrap,
)

__all__ = ["LayerCost", "layer_costs", "forward_macs"]


@dataclass
class LayerCost:
    """Per-layer counts for one input (see book/linear_overparam.ipynb).

    ``params_*`` are parameter counts; ``macs_*`` multiply-accumulates per example:
    ``sequential`` runs the sub-layers one after another, ``collapsed`` runs one layer (also what
    the effective-weight forward costs), ``compose`` is the per-step cost of forming the
    composite kernel (independent of the batch size; 0 for a batch-norm expansion, which trains
    sequentially and forms its kernel only when collapsed).
    """

    name: str
    params_expanded: int
    params_collapsed: int
    macs_sequential: int
    macs_collapsed: int
    macs_compose: int


def forward_macs(fn, *args) -> int:
    """Multiply-accumulates of ``fn(*args)`` as counted by ``FlopCounterMode`` (FLOPs / 2)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn(*args)
    return int(counter.get_total_flops()) // 2


def layer_costs(model: nn.Module, example_input: torch.Tensor) -> list:
    """:class:`LayerCost` rows for every expanded layer of ``model``, from one forward pass on
    ``example_input`` (a batch of one: counts are per example; batch-norm expansions are counted
    in eval mode)."""
    model = unwrap(model)
    layers = expanded_layers(model)
    inputs = {}
    hooks = [
        m.register_forward_hook(lambda m, i, o, n=n: inputs.__setitem__(n, i[0]))
        for n, m in layers.items()
    ]
    try:
        with torch.no_grad(), parametrize.cached():
            model(example_input)
    finally:
        for h in hooks:
            h.remove()
    rows = []
    for name, layer in layers.items():
        x = inputs[name]
        frozen = copy.deepcopy(layer).eval()
        plain = collapse(frozen)
        compose = (
            0
            if isinstance(layer, SequentialExpansion)
            else forward_macs(getattr, frozen, "weight")
        )
        rows.append(
            LayerCost(
                name,
                params_expanded=sum(p.numel() for p in layer.parameters()),
                params_collapsed=sum(p.numel() for p in plain.parameters()),
                macs_sequential=forward_macs(as_sequential(frozen), x),
                macs_collapsed=forward_macs(plain, x),
                macs_compose=compose,
            )
        )
    return rows
