"""Linear over-parameterization: expand linear layers into products, train, collapse exactly.

The chapter *Linear over-parameterization* (``book/linear_overparam.ipynb``) derives everything
here. The paper's recipe replaces every linear layer of a network (``nn.Linear``, ``nn.Conv1d``,
``nn.Conv2d``, ``nn.Conv3d``) by ``depth`` linear layers with nothing in between -- a ``k x k``
convolution followed by ``1 x 1`` convolutions of hidden width ``int(out_channels * width)`` --
trains that, and collapses the product back to one layer for inference.

How this module does it. ``expand`` registers a :mod:`torch.nn.utils.parametrize`
parametrization on each chosen layer: the layer keeps its class, hyper-parameters and forward,
but its ``weight`` becomes a function of factor parameters (the sub-layers' kernels), computed
once per forward as the composite kernel (:func:`compose_kernels`). A training step therefore
costs one convolution per layer plus a small kernel product, instead of ``depth`` full-resolution
convolutions, and has exactly the function and gradients of running the sub-layers one after
another (:func:`as_sequential` builds that sequential network). With ``bias="all"`` (the official
code's layout) every sub-layer has a bias and the layer's ``bias`` is parametrized too: biases
propagate through the later sub-layers' spatially summed kernels.

Placement rules that make the composite *exact*, borders included: all padding (any
``padding_mode``) is applied once, to the input of the first sub-layer, and the later ones are
"valid"; the stride is applied by the last sub-layer; every sub-layer uses the layer's dilation
and groups. The composite of kernels of sizes ``k_1, ..., k_d`` has size
``sum(k_i) - d + 1`` per spatial dimension. With the default kernel list ``[k, 1, ..., 1]`` it is
the original ``k`` and ``collapse`` returns the original architecture (a plain layer whose
``state_dict`` loads into the unexpanded model). A list such as ``[5, 3, 1]`` defines a different
effective kernel (7 here); ``expand`` refuses it unless ``allow_kernel_change=True``, in which
case the layer's kernel becomes the effective one and its padding grows by
``dilation * (k_eff - k) / 2`` per side, so output shapes are unchanged (the collapsed network is
then a network with larger kernels, not the original one).

Initialisation (``init="paper"``, the official code's scheme): factors are Kaiming-normal, gain 1
for all but the last (no non-linearity between them) and gain ``sqrt(2 / (1 + negative_slope^2))``
for the last; fan-out for convolutions, fan-in for ``nn.Linear``. The collapsed weight then has,
whatever the depth, the variance of the base layer's Kaiming initialisation (per entry for
``[k, 1, ..., 1]``; summed over kernel taps for other kernel lists). ``expand(model, depth=1)``
re-initialises plain layers with that same base scheme, which gives the baseline the paper
compares against. ``init="keep"`` factorises the current weight exactly instead
(``W_1 = [W; 0]``, identities after it), e.g. to expand a pretrained network.

Three options of :func:`expand` cover what the official library and ExpandNets add
(book/linear_overparam.ipynb, "Options"): ``residual=k`` puts a linear residual connection around
every ``k`` factors (still one composite weight, ``prod_j (I + P_j)``; refused where the identity
has no exact single-layer form: channels or stride changing across a block, even kernels);
``expansion_rate=r`` gives ExpandNets' wider inner factors (``in -> r in -> r out -> out``);
``batch_norm=True`` puts a batch-norm after every factor as the official code does. Training-mode
batch-norm needs the intermediate activations, so such a layer becomes a
:class:`SequentialExpansion` that trains sub-layer by sub-layer; :func:`collapse` folds the running
statistics in eval mode and refuses in training mode.

Public API: :func:`expand`, :func:`collapse`, :func:`expanded_layers`, :func:`factors`,
:func:`compose_kernels`, :func:`compose_biases`, :func:`compose_expansion`, :func:`as_sequential`,
:func:`count_parameters`, :func:`unwrap`, :class:`ExpansionPlan`, :class:`SequentialExpansion`
(cost measurement is :mod:`support.costs`). Evaluation of an expanded model needs no collapse
(it already runs one layer per layer); wrap it in ``torch.nn.utils.parametrize.cached()`` so that
each composite is computed once per pass. Compile in place with ``nn.Module.compile()`` so that the
model stays the module these functions look into; DDP / DataParallel wrappers are recognised by
class (:func:`unwrap`). Only public PyTorch API is used: ``parametrize`` for the factors, the
layers' own constructors (through ``torch.nn.utils.skip_init``), ``load_state_dict`` and
``set_submodule`` for collapsed and rebuilt layers. The training-step benchmark lives with the
chapter's recipes (``python -m support.experiments.linear_overparam bench``).
"""

from __future__ import annotations

import copy
import math
import numbers
import os
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize, skip_init

__all__ = [
    "expand",
    "collapse",
    "expanded_layers",
    "factors",
    "compose_kernels",
    "compose_biases",
    "compose_expansion",
    "as_sequential",
    "count_parameters",
    "unwrap",
    "ExpansionPlan",
    "SequentialExpansion",
]

_EXPANDABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


# --------------------------------------------------------------------------------------------
# Kernel algebra
# --------------------------------------------------------------------------------------------


def _compose_pair(
    first: torch.Tensor, second: torch.Tensor, groups: int
) -> torch.Tensor:
    """Kernel of "apply ``first``, then ``second``" (valid cross-correlations, same groups).

    ``first``: (h, c_in/g, *k1), ``second``: (c_out, h/g, *k2) -> (c_out, c_in/g, *(k1+k2-1)).
    ``K[o, c, t] = sum_m sum_{q+r=t} second[o, m, q] first[m, c, r]`` within each group.
    """
    h, c_in_g = first.shape[:2]
    c_out = second.shape[0]
    k1, k2 = first.shape[2:], second.shape[2:]
    # second is a matrix per group: a (batched) matrix product
    if all(k == 1 for k in k2):
        a = first.reshape(groups, h // groups, -1)
        b = second.reshape(groups, c_out // groups, h // groups)
        return torch.bmm(b, a).reshape(c_out, c_in_g, *k1)
    # first is a matrix: mix its channels into every tap of second
    if all(k == 1 for k in k1):
        a = first.reshape(groups, h // groups, c_in_g)
        b = second.reshape(groups, c_out // groups, h // groups, -1)
        out = torch.einsum("gomp,gmc->gocp", b, a)
        return out.reshape(c_out, c_in_g, *k2)
    # general case: a full convolution of the two kernels over the spatial taps
    spatial = tuple(range(2, second.dim()))
    out = _CONV_FN[len(k1)](
        first.transpose(0, 1),
        second.flip(spatial),
        padding=tuple(k - 1 for k in k2),
        groups=groups,
    )
    return out.transpose(0, 1)


def compose_kernels(kernels, groups: int = 1) -> torch.Tensor:
    """Single kernel of the chain of linear layers ``kernels`` (applied first to last).

    Matrices (``nn.Linear`` weights, shape ``(out, in)``) compose to the product
    ``W_d ... W_1``; convolution kernels (``(out, in/groups, *k)``, PyTorch's cross-correlation
    convention) compose to the kernel of size ``sum(k_i) - d + 1`` of the chain of "valid"
    convolutions with the same dilation and groups. The chain is folded from the last kernel
    backwards, so a ``[k, 1, ..., 1]`` chain costs matrix products of the small trailing factors
    first. See book/linear_overparam.ipynb for the derivation.
    """
    kernels = list(kernels)
    if not kernels:
        raise ValueError("compose_kernels: kernels is empty")
    ndim = kernels[0].dim()
    if any(k.dim() != ndim for k in kernels) or ndim < 2:
        raise ValueError(
            "compose_kernels: kernels must all be matrices or all conv kernels of the "
            f"same rank, got shapes {[tuple(k.shape) for k in kernels]}"
        )
    for a, b in zip(kernels, kernels[1:]):
        if b.shape[1] * groups != a.shape[0]:
            raise ValueError(
                f"compose_kernels: kernel of shape {tuple(b.shape)} cannot follow one of "
                f"shape {tuple(a.shape)} with groups={groups}"
            )
    if ndim == 2:
        return torch.linalg.multi_dot(kernels[::-1]) if len(kernels) > 1 else kernels[0]
    out = kernels[-1]
    for k in reversed(kernels[:-1]):
        out = _compose_pair(k, out, groups)
    return out


def compose_biases(weights, biases, groups: int = 1) -> torch.Tensor:
    """Bias of the chain of linear layers with kernels ``weights`` and biases ``biases`` (first
    to last): ``c_1 = b_1``, ``c_i = S_i c_{i-1} + b_i`` with ``S_i`` the spatially summed kernel
    of sub-layer ``i`` (a constant field passes a valid convolution as that sum), block-diagonal
    over the groups. Exact when all padding is applied to the chain's input; see
    book/linear_overparam.ipynb."""
    c = biases[0]
    for w, b in zip(weights[1:], biases[1:]):
        out_i, h_g = w.shape[:2]
        s = w.reshape(groups, out_i // groups, h_g, -1).sum(-1)
        c = torch.bmm(s, c.reshape(groups, h_g, 1)).reshape(out_i) + b
    return c


def _centred_identity(kernel: torch.Tensor, groups: int) -> torch.Tensor:
    """The identity map in the shape of ``kernel``: ``I`` for a matrix, otherwise a Dirac kernel
    at the centre tap of every dimension (the residual of a block whose output is the centre crop
    of its input; the tap count is odd, checked when the layer is expanded)."""
    if kernel.dim() == 2:
        return torch.eye(kernel.shape[0], dtype=kernel.dtype, device=kernel.device)
    return nn.init.dirac_(torch.empty_like(kernel), groups=groups)


def _blocks(n: int, residual: int | None):
    """Index ranges of the residual blocks of ``n`` factors (``residual`` factors each)."""
    return [range(start, start + residual) for start in range(0, n, residual)]


def compose_expansion(
    weights, groups: int = 1, residual: int | None = None
) -> torch.Tensor:
    """Composite kernel of an expansion: :func:`compose_kernels` of the factors ``weights``, or,
    with ``residual = k``, of the blocks ``I + compose(W_{k(j+1)}, ..., W_{kj+1})`` (a linear
    residual connection around every ``k`` consecutive factors; the identity is the centred Dirac
    kernel for convolutions). See book/linear_overparam.ipynb."""
    if residual is None:
        return compose_kernels(weights, groups)
    blocks = []
    for block in _blocks(len(weights), residual):
        kernel = compose_kernels([weights[i] for i in block], groups)
        blocks.append(kernel + _centred_identity(kernel, groups))
    return compose_kernels(blocks, groups)


def _compose_expansion_bias(weights, biases, groups, residual):
    """Composite bias of an expansion (:func:`compose_biases`, blockwise with residual blocks,
    whose identity path adds no bias). ``None`` biases count as zero."""
    biases = [
        torch.zeros(w.shape[0], dtype=w.dtype, device=w.device) if b is None else b
        for w, b in zip(weights, biases)
    ]
    if residual is None:
        return compose_biases(weights, biases, groups)
    kernels, block_biases = [], []
    for block in _blocks(len(weights), residual):
        ws = [weights[i] for i in block]
        kernel = compose_kernels(ws, groups)
        kernels.append(kernel + _centred_identity(kernel, groups))
        block_biases.append(compose_biases(ws, [biases[i] for i in block], groups))
    return compose_biases(kernels, block_biases, groups)


# --------------------------------------------------------------------------------------------
# Parametrizations
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpansionPlan:
    """How one layer is expanded: its name, the sub-layers' kernel sizes (first to last; empty
    tuples for ``nn.Linear``), the hidden widths (output width of every sub-layer but the last),
    the groups, and the layer's kernel after expansion (``None`` for ``nn.Linear``).
    ``grows_kernel``: the effective kernel differs from the layer's, so the layer is rebuilt with
    the larger kernel (``allow_kernel_change=True``). ``residual``: factors per linear residual
    block (``None``: no residual connection). ``batch_norm``: a batch-norm after every factor."""

    name: str
    kernel_sizes: tuple
    hidden: tuple
    groups: int
    effective_kernel: tuple | None
    grows_kernel: bool
    residual: int | None = None
    batch_norm: bool = False

    @property
    def depth(self) -> int:
        return len(self.kernel_sizes)


class _ExpandedWeight(nn.Module):
    """``weight = compose_expansion(original0, ..., original{d-1})``.

    ``right_inverse`` (what ``layer.weight = W`` and registration call) factorises a weight:
    exactly as ``[W; 0]`` then identities where the plan allows it (kernel list ``[k, 1, ..., 1]``,
    hidden widths >= output channels per group, no residual blocks); the composite of zero
    factors (the zero map, or the identity with residual blocks) as zero factors under any plan;
    anything else is a ValueError (such a weight has no exact factorisation to give).
    """

    def __init__(self, plan: ExpansionPlan):
        super().__init__()
        self.plan = plan

    def forward(self, *ws):
        # The composite is formed in the factors' precision even under autocast: the cast to the
        # autocast dtype happens once, at the layer's own convolution / matmul.
        with torch.autocast(device_type=ws[0].device.type, enabled=False):
            return compose_expansion(ws, self.plan.groups, self.plan.residual)

    def right_inverse(self, weight):
        plan = self.plan
        if plan.residual is not None:
            zeros = _zero_factors(weight, plan)
            if torch.equal(weight, self.forward(*zeros)):
                return zeros
            raise ValueError(
                "an expansion with residual blocks has no exact factorisation of an assigned "
                "weight other than the identity"
            )
        if not torch.count_nonzero(weight):
            return _zero_factors(weight, plan)
        return _exact_factors(weight, plan.kernel_sizes, plan.hidden, plan.groups)


class _ExpandedBias(nn.Module):
    """``bias = b_d + S_d (b_{d-1} + S_{d-1}(...))`` from every sub-layer's bias.

    It reads the sub-layer kernels from the layer's weight parametrization (held as a plain,
    unregistered reference so that they appear once in ``parameters()`` and ``state_dict()``).
    ``right_inverse`` gives every sub-layer but the last a zero bias, which is exact for any bias.
    """

    def __init__(self, weight_parametrization: nn.Module, plan: ExpansionPlan):
        super().__init__()
        object.__setattr__(self, "_weights", weight_parametrization)
        self.plan = plan

    def forward(self, *bs):
        wp = self._weights
        ws = [getattr(wp, f"original{i}") for i in range(len(bs))]
        with torch.autocast(device_type=bs[0].device.type, enabled=False):
            if self.plan.residual is None:
                return compose_biases(ws, bs, self.plan.groups)
            return _compose_expansion_bias(ws, bs, self.plan.groups, self.plan.residual)

    def right_inverse(self, bias):
        zeros = [
            torch.zeros(h, dtype=bias.dtype, device=bias.device)
            for h in self.plan.hidden
        ]
        return tuple(zeros) + (bias.detach().clone(),)


def _factor_shapes(weight, plan: ExpansionPlan):
    """Shapes of the sub-layers' kernels for a layer whose weight is ``weight``."""
    out, in_g = weight.shape[0], weight.shape[1]
    dims = [*plan.hidden, out]
    return [
        (o, in_g if i == 0 else dims[i - 1] // plan.groups, *k)
        for i, (o, k) in enumerate(zip(dims, plan.kernel_sizes))
    ]


def _zero_factors(weight, plan: ExpansionPlan):
    return tuple(weight.new_zeros(shape) for shape in _factor_shapes(weight, plan))


def _eye_blocks(
    groups: int, rows_per_group: int, cols_per_group: int, like: torch.Tensor
):
    """(groups * rows, cols) stack of per-group [I 0] / [I; 0] blocks."""
    e = torch.eye(rows_per_group, cols_per_group, dtype=like.dtype, device=like.device)
    return e.repeat(groups, 1)


def _exact_factors(weight, kernel_sizes, hidden, groups):
    """Factors whose composite is exactly ``weight``: ``[W; 0]`` (per group), then identities
    (``[I 0]`` / ``[I; 0]`` blocks between hidden widths)."""
    out = weight.shape[0]
    k_eff = tuple(weight.shape[2:])
    if tuple(kernel_sizes[0]) != k_eff or any(
        any(x != 1 for x in k) for k in kernel_sizes[1:]
    ):
        raise ValueError(
            f"exact factorisation needs the kernel list [k, 1, ..., 1] with k = {k_eff}; "
            f"got {list(kernel_sizes)} (use init='paper' for other kernel lists)"
        )
    if min(hidden) < out:
        raise ValueError(
            f"exact factorisation needs hidden width >= out features ({min(hidden)} < {out}); "
            "use width >= 1 or init='paper'"
        )
    o_g = out // groups
    ones = (1,) * len(k_eff)
    h_g = [h // groups for h in hidden]
    w = weight.detach().reshape(groups, o_g, *weight.shape[1:])
    first = torch.cat([w, w.new_zeros(groups, h_g[0] - o_g, *weight.shape[1:])], 1)
    first = first.reshape(hidden[0], *weight.shape[1:])
    middle = [
        _eye_blocks(groups, rows, cols, weight).reshape(groups * rows, cols, *ones)
        for cols, rows in zip(h_g, h_g[1:])
    ]
    last = _eye_blocks(groups, o_g, h_g[-1], weight).reshape(out, h_g[-1], *ones)
    return (first, *middle, last)


# --------------------------------------------------------------------------------------------
# expand / collapse
# --------------------------------------------------------------------------------------------


def _kernel_list(module, depth, kernel_sizes, name):
    """Per-factor kernel tuples for ``module`` (empty tuples for nn.Linear)."""
    if isinstance(module, nn.Linear):
        return [()] * depth
    nd = len(module.kernel_size)
    if kernel_sizes is None:
        return [tuple(module.kernel_size)] + [(1,) * nd] * (depth - 1)
    out = []
    for k in kernel_sizes:
        k = (k,) * nd if isinstance(k, int) else tuple(k)
        if len(k) != nd or any((not isinstance(x, int)) or x < 1 for x in k):
            raise ValueError(
                f"expand: kernel_sizes entry {k!r} is not a valid {nd}-d kernel size "
                f"for module '{name}'"
            )
        out.append(k)
    return out


_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _validate_module(name, module):
    label = f"module '{name}' ({type(module).__name__})"
    if parametrize.is_parametrized(module) or isinstance(module, SequentialExpansion):
        raise ValueError(
            f"expand: {label} already has parametrizations (is it expanded already? "
            "collapse it first)"
        )
    if isinstance(module, _EXPANDABLE) and "weight" not in dict(
        module.named_parameters(recurse=False)
    ):
        raise ValueError(
            f"expand: {label} has a weight that is not a parameter (a hook such as "
            "torch.nn.utils.spectral_norm or weight_norm recomputes it at every forward and "
            "would overwrite the factors); remove the hook, or use the parametrize versions "
            "after collapsing"
        )
    if isinstance(module, _TRANSPOSED):
        raise ValueError(
            f"expand: {label} is a transposed convolution, which is not supported; "
            "exclude it with layers="
        )
    if (
        isinstance(module, nn.modules.lazy.LazyModuleMixin)
        and module.has_uninitialized_params()
    ):
        raise ValueError(
            f"expand: {label} is lazy and uninitialised; run one forward pass first"
        )
    if type(module) not in _EXPANDABLE:
        raise ValueError(
            f"expand: {label} is not an nn.Linear / nn.Conv1d / nn.Conv2d / nn.Conv3d "
            "(subclasses are refused: collapse rebuilds layers with these constructors)"
        )


def _aliases(model, module) -> list:
    """Every name under which ``module`` is registered in ``model`` (a module may be registered
    twice; each name must be replaced when the module is)."""
    return [n for n, m in model.named_modules(remove_duplicate=False) if m is module]


def _select(model, layers):
    named = dict(model.named_modules(remove_duplicate=False))
    if layers is None:
        chosen = [
            n
            for n, m in model.named_modules()
            if isinstance(m, _EXPANDABLE + _TRANSPOSED)
        ]
    elif callable(layers):
        chosen = [n for n, m in model.named_modules() if layers(n, m)]
    else:
        if isinstance(layers, str):
            raise TypeError(
                "expand: layers must be None, a callable (name, module) -> bool, or a "
                "list of module names, not a string"
            )
        chosen = list(layers)
        missing = [n for n in chosen if n not in named]
        if missing:
            raise ValueError(
                f"expand: layers names {missing} are not modules of the model"
            )
        seen = {}
        for n in chosen:
            if id(named[n]) in seen:
                raise ValueError(
                    f"expand: layers names '{seen[id(named[n])]}' and '{n}' are the same "
                    "module; name each layer once"
                )
            seen[id(named[n])] = n
    for n in chosen:
        _validate_module(n, named[n])
    return [(n, named[n]) for n in chosen]


def _refuse_shared_parameters(model, chosen) -> None:
    """Expanding a layer replaces its weight and bias; a parameter shared with another module
    (tied weights) would silently become two independent ones, so it is an error."""
    owners = {}
    for module_name, module in model.named_modules(remove_duplicate=False):
        for param_name, param in module.named_parameters(recurse=False):
            owners.setdefault(id(param), []).append((module_name, module, param_name))
    for name, module in chosen:
        for param_name in ("weight", "bias"):
            param = getattr(module, param_name, None)
            if param is None:
                continue
            others = sorted(
                {
                    f"{n}.{p}" if n else p
                    for n, m, p in owners.get(id(param), [])
                    if m is not module
                }
            )
            if others:
                raise ValueError(
                    f"expand: module '{name}' shares its {param_name} with {others}; tied "
                    "parameters are not supported (expanding one side would untie them)"
                )


def _hidden_widths(name, module, depth, width, expansion_rate):
    """Output widths of the sub-layers before the last: ``int(out * width)`` each (the official
    code's rule), or with an expansion rate ``r`` ExpandNets' ``int(r * in)`` for the first and
    ``int(r * out)`` for the others (``in -> r in -> r out -> out`` at depth 3)."""
    is_conv = not isinstance(module, nn.Linear)
    groups = module.groups if is_conv else 1
    out = module.weight.shape[0]
    if expansion_rate is None:
        hidden = int(out * width)
        if depth > 1 and (hidden < 1 or hidden % groups):
            raise ValueError(
                f"expand: module '{name}': hidden width int({out} * {width}) = {hidden} "
                f"must be >= 1 and a multiple of groups={groups}"
            )
        return (hidden,) * (depth - 1)
    fan_in = module.weight.shape[1] * groups
    widths = [int(expansion_rate * fan_in)] + [int(expansion_rate * out)] * (depth - 2)
    bad = [h for h in widths if h < 1 or h % groups]
    if bad:
        raise ValueError(
            f"expand: module '{name}': expansion_rate {expansion_rate} gives hidden widths "
            f"{widths}, each must be >= 1 and a multiple of groups={groups}"
        )
    return tuple(widths)


def _check_residual(name, module, plan_dims, kernel_sizes, residual):
    """Refuse residual blocks that have no exact single-layer equivalent."""
    depth = len(kernel_sizes)
    if depth % residual:
        raise ValueError(
            f"expand: module '{name}': residual={residual} must divide depth={depth} "
            "(every factor belongs to one residual block)"
        )
    for block in _blocks(depth, residual):
        c_in, c_out = plan_dims[block[0]], plan_dims[block[-1] + 1]
        if c_in != c_out:
            raise ValueError(
                f"expand: module '{name}': a residual block from factor {block[0]} to "
                f"{block[-1]} maps {c_in} to {c_out} channels; x + F(x) needs the same "
                "number (use width=1 and a layer with as many outputs as inputs)"
            )
        taps = [
            sum(kernel_sizes[i][j] for i in block) - len(block) + 1
            for j in range(len(kernel_sizes[0]))
        ]
        if any(t % 2 == 0 for t in taps):
            raise ValueError(
                f"expand: module '{name}': the residual block from factor {block[0]} to "
                f"{block[-1]} has an even kernel {tuple(taps)}; its identity path (the centre "
                "of the input) is only defined for odd kernels"
            )
    if not isinstance(module, nn.Linear) and any(s != 1 for s in module.stride):
        raise ValueError(
            f"expand: module '{name}': stride {tuple(module.stride)} changes the resolution "
            "inside the last residual block, so x + F(x) has no exact single-layer form; "
            "use residual=None for strided layers"
        )


def _plan_for(
    name,
    module,
    depth,
    width,
    kernel_sizes,
    init,
    allow_kernel_change,
    expansion_rate=None,
    residual=None,
    batch_norm=False,
) -> ExpansionPlan:
    """Validate one layer's expansion and return its plan (nothing is modified)."""
    ks = _kernel_list(module, depth, kernel_sizes, name)
    is_conv = not isinstance(module, nn.Linear)
    groups = module.groups if is_conv else 1
    out = module.weight.shape[0]
    hidden = _hidden_widths(name, module, depth, width, expansion_rate)
    k_eff = (
        tuple(sum(k[j] for k in ks) - depth + 1 for j in range(len(ks[0])))
        if is_conv
        else None
    )
    grows = bool(is_conv and k_eff != tuple(module.kernel_size))
    if grows:
        if not allow_kernel_change:
            raise ValueError(
                f"expand: module '{name}': kernel_sizes {kernel_sizes} give an "
                f"effective kernel {k_eff}, not the layer's {tuple(module.kernel_size)}; "
                "pass allow_kernel_change=True to change the layer's kernel"
            )
        if init == "keep":
            raise ValueError(
                f"expand: module '{name}': init='keep' cannot change the kernel size"
            )
        # refuses odd growth
        _grown_padding(module, k_eff, name)
    if init == "keep" and depth > 1 and min(hidden) < out:
        raise ValueError(
            f"expand: module '{name}': init='keep' needs width >= 1 "
            f"(hidden {min(hidden)} < out {out})"
        )
    if residual is not None:
        _check_residual(
            name, module, [module.weight.shape[1] * groups, *hidden, out], ks, residual
        )
    return ExpansionPlan(
        name, tuple(ks), hidden, groups, k_eff, grows, residual, bool(batch_norm)
    )


def _residual_branch_variance(module, depth, residual, negative_slope):
    """Gain ``v`` of every residual branch at initialisation: the layer maps ``x`` to
    ``prod_j (I + P_j) x`` with ``E|P_j x|^2 = v |x|^2``, so ``(1 + v)^(depth / residual)`` is set
    to the base layer's Kaiming gain ``E|W x|^2 / |x|^2`` (``2 / (1 + a^2)``, divided by the
    groups for a grouped convolution's fan-out rule); ``v = 0`` when that gain is at most 1."""
    gain2 = 2.0 / (1.0 + negative_slope**2)
    if not isinstance(module, nn.Linear):
        gain2 /= module.groups
    return max(gain2 ** (residual / depth) - 1.0, 0.0)


def _paper_factors(module, ks, hidden, negative_slope, residual=None):
    """Sampled factors and biases of the paper's initialisation (see the module docstring).

    With residual blocks every factor is drawn norm-preserving (gain 1, the intermediate rule)
    and the last factor of each block is scaled to the branch gain of
    :func:`_residual_branch_variance`, so that the collapsed layer keeps the base layer's
    second moment (the official code keeps the plain scheme and adds the identities on top)."""
    w0 = module.weight
    is_conv = not isinstance(module, nn.Linear)
    groups = module.groups if is_conv else 1
    in_g = w0.shape[1]
    depth = len(ks)
    dims = [*hidden, w0.shape[0]]
    ws, bs = [], []
    for i, (k, out_i) in enumerate(zip(ks, dims)):
        fan_in_ch = in_g if i == 0 else dims[i - 1] // groups
        w = torch.empty(out_i, fan_in_ch, *k, dtype=w0.dtype, device=w0.device)
        taps = math.prod(k)
        last = i == depth - 1 and residual is None
        gain2 = 2.0 / (1.0 + negative_slope**2) if last else 1.0
        if residual is not None and (i + 1) % residual == 0:
            gain2 = _residual_branch_variance(module, depth, residual, negative_slope)
        # fan-out for convolutions; an intermediate factor's true fan-out is (out_i / groups) * taps
        if is_conv:
            fan = out_i * taps if last else (out_i // groups) * taps
        else:
            fan = fan_in_ch
        with torch.no_grad():
            w.normal_(0.0, math.sqrt(gain2 / fan))
        ws.append(w)
        bound = 1.0 / math.sqrt(fan_in_ch * taps)
        bs.append(
            torch.empty(out_i, dtype=w0.dtype, device=w0.device).uniform_(-bound, bound)
        )
    return ws, bs


def _grown_padding(module, k_eff, name):
    """Padding that keeps a conv's output shape when its kernel grows from its own to ``k_eff``."""
    k = tuple(module.kernel_size)
    if module.padding == "same":
        return module.padding
    old = (0,) * len(k) if module.padding == "valid" else module.padding
    new_padding = []
    for p, a, b, d in zip(old, k, k_eff, module.dilation):
        if (b - a) % 2:
            raise ValueError(
                f"expand: module '{name}': effective kernel {k_eff} differs from "
                f"{k} by an odd amount, so no symmetric padding keeps the output "
                "shape"
            )
        new_padding.append(p + d * (b - a) // 2)
    return tuple(new_padding)


def _constructor_args(layer, *, kernel_size=None, padding=None) -> dict:
    """Keyword arguments of ``layer``'s constructor (its class's hyper-parameters)."""
    has_bias = layer.bias is not None
    if parametrize.type_before_parametrizations(layer) is nn.Linear:
        return dict(
            in_features=layer.in_features,
            out_features=layer.out_features,
            bias=has_bias,
        )
    return dict(
        in_channels=layer.in_channels,
        out_channels=layer.out_channels,
        kernel_size=layer.kernel_size if kernel_size is None else kernel_size,
        stride=layer.stride,
        padding=layer.padding if padding is None else padding,
        dilation=layer.dilation,
        groups=layer.groups,
        bias=has_bias,
        padding_mode=layer.padding_mode,
    )


def _plain_like(layer, *, kernel_size=None, padding=None, device=None, dtype=None):
    """A new, uninitialised plain layer of ``layer``'s class and hyper-parameters (its constructor,
    through ``torch.nn.utils.skip_init``: no parameters are initialised, no random numbers drawn)."""
    weight = layer.weight
    return skip_init(
        parametrize.type_before_parametrizations(layer),
        **_constructor_args(layer, kernel_size=kernel_size, padding=padding),
        device=weight.device if device is None else device,
        dtype=weight.dtype if dtype is None else dtype,
    )


def _with_values(plain, weight, bias, requires_grad, training):
    """Load ``weight``/``bias`` into ``plain`` and set its flags; return it."""
    state = {"weight": weight} if bias is None else {"weight": weight, "bias": bias}
    plain.load_state_dict(state)
    for p in plain.parameters():
        p.requires_grad_(requires_grad)
    return plain.train(training)


def _expand_layer(module, plan, init, bias, ws, bs):
    """Expand one layer following ``plan``: in place, or, when its kernel grows, into a new layer
    that is returned (the caller puts it in place of the old one)."""
    if plan.depth == 1:
        if init == "paper":
            with torch.no_grad():
                module.weight.copy_(ws[0])
                if module.bias is not None:
                    module.bias.copy_(bs[0])
        return module
    if plan.batch_norm:
        return SequentialExpansion.from_layer(module, plan, ws, bs, bias)
    if plan.grows_kernel:
        w = module.weight
        grown = _plain_like(
            module,
            kernel_size=plan.effective_kernel,
            padding=_grown_padding(module, plan.effective_kernel, plan.name),
        )
        module = _with_values(
            grown,
            w.new_zeros(w.shape[0], w.shape[1], *plan.effective_kernel),
            None if module.bias is None else module.bias.detach().clone(),
            w.requires_grad,
            module.training,
        )
    # register on the composite of zero factors (the zero map, or the identity with residual
    # blocks: exact under any plan), then set the sampled factors
    if init == "paper":
        placeholder = torch.zeros_like(module.weight)
        if plan.residual is not None:
            placeholder = _ExpandedWeight(plan)(*_zero_factors(placeholder, plan))
        module.weight = nn.Parameter(
            placeholder, requires_grad=module.weight.requires_grad
        )
    parametrize.register_parametrization(module, "weight", _ExpandedWeight(plan))
    weight_originals = module.parametrizations.weight
    if module.bias is not None and bias == "all":
        parametrize.register_parametrization(
            module, "bias", _ExpandedBias(weight_originals, plan)
        )
        if init == "paper":
            with torch.no_grad():
                for i, b in enumerate(bs):
                    getattr(module.parametrizations.bias, f"original{i}").copy_(b)
    elif module.bias is not None and init == "paper":
        with torch.no_grad():
            module.bias.copy_(bs[-1])
    if init == "paper":
        with torch.no_grad():
            for i, w in enumerate(ws):
                getattr(weight_originals, f"original{i}").copy_(w)
    return module


def _snapshot(module):
    """What :func:`_restore` needs to undo an in-place expansion of ``module``: its own
    parameters (the objects, in registration order) and their values."""
    params = dict(module.named_parameters(recurse=False))
    return {
        "params": params,
        "values": {k: v.detach().clone() for k, v in params.items()},
    }


def _restore(module, snap) -> None:
    """Undo an in-place expansion: the same parameter objects, values and order as before."""
    if parametrize.is_parametrized(module):
        _unparametrize(module)
    for tensor_name in list(dict(module.named_parameters(recurse=False))):
        delattr(module, tensor_name)
    for tensor_name, param in snap["params"].items():
        module.register_parameter(tensor_name, param)
        with torch.no_grad():
            param.copy_(snap["values"][tensor_name])


def _set_submodule(model, name, module):
    """Put ``module`` at ``name`` inside ``model`` (public ``nn.Module.set_submodule``)."""
    model.set_submodule(name, module)


def _number(value, name, *, integer=False):
    """``value`` as a Python int / float (NumPy scalars accepted); a clear error otherwise."""
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        what = "an integer" if integer else "a finite number"
        raise ValueError(f"expand: {name} must be {what}, got {value!r}")
    return int(value) if integer else float(value)


def _refuse_scripted(model, caller):
    if isinstance(model, torch.jit.ScriptModule):
        raise TypeError(
            f"{caller}: {type(model).__name__} is a scripted or traced model, whose forward "
            "is fixed code that ignores replaced layers; expand the Python model, then script it"
        )


def _available_bytes(device) -> int | None:
    """Free memory on ``device`` (None where it cannot be read)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "cpu" and hasattr(os, "sysconf"):
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            return None
    return None


def _refuse_oversized(plans, chosen) -> None:
    """Refuse before allocating when the factors cannot fit in the device's free memory."""
    need = {}
    for plan, (_, module) in zip(plans, chosen):
        w = module.weight
        shapes = _factor_shapes(w, plan) if plan.depth > 1 else [tuple(w.shape)]
        size = sum(math.prod(shape) for shape in shapes) * w.element_size()
        need[w.device] = need.get(w.device, 0) + size
    for device, size in need.items():
        free = _available_bytes(device)
        if free is not None and size > free:
            raise ValueError(
                f"expand: the factors need {size / 2**30:.3g} GiB on {device} but "
                f"{free / 2**30:.3g} GiB are free; lower width / expansion_rate / depth"
            )


def expand(
    model: nn.Module,
    depth: int | None = None,
    width: float = 1.0,
    kernel_sizes=None,
    layers=None,
    init: str = "paper",
    bias: str = "all",
    negative_slope: float = 0.0,
    allow_kernel_change: bool = False,
    *,
    expansion_rate: float | None = None,
    residual: int | None = None,
    batch_norm: bool = False,
) -> nn.Module:
    """Expand linear layers of ``model`` in place into ``depth`` linear sub-layers; return ``model``.

    Each chosen layer keeps its class and forward; its ``weight`` (and with ``bias="all"`` its
    ``bias``) becomes a parametrization over factor parameters, stored as
    ``<layer>.parametrizations.weight.original0 ... original{depth-1}`` (first sub-layer first).
    With ``batch_norm=True`` the layer is instead replaced by a :class:`SequentialExpansion`
    (its sub-layers with a batch-norm after each, trained one after another because training-mode
    batch-norm needs the intermediate activations). All or nothing: every layer is validated
    first (tied parameters, duplicate names, unsupported or already expanded layers and factors
    that would not fit in memory are refused, naming the layer), and if expanding any layer
    fails, the layers already expanded are restored (same parameter objects, values and order)
    before the error propagates. A layer whose kernel grows (``allow_kernel_change``) or that
    gains batch-norms is put in place of the old one under every name it is registered with;
    when ``model`` is itself such a layer, the new layer is returned.

    Args:
        model: any module (not a scripted or traced one); the model itself may be a single layer.
        depth: number of sub-layers (>= 1). Defaults to ``len(kernel_sizes)`` or 2. ``depth=1``
            with ``init="paper"`` only re-initialises the layers (the paper's baseline).
        width: hidden width is ``int(out_features * width)`` (the official code's rule); must
            be > 0 and, for grouped convolutions, give a multiple of ``groups``.
        kernel_sizes: per-sub-layer kernel sizes (ints or tuples) for convolutions; default
            ``[k, 1, ..., 1]``. Their effective size ``sum(k_i) - depth + 1`` must equal the
            layer's kernel unless ``allow_kernel_change=True``.
        layers: ``None`` (every Linear/Conv1d/2d/3d; a transposed convolution raises), a list of
            module names (as in ``named_modules()``, each module once), or a predicate
            ``(name, module) -> bool``.
        init: ``"paper"`` (Kaiming factors, see module docstring) or ``"keep"`` (exact
            factorisation of the current weight; needs ``[k, 1, ..., 1]``, width >= 1, and
            neither residual blocks nor batch-norm).
        bias: ``"all"`` (every sub-layer has a bias, as in the official code) or ``"last"`` (only
            the last, i.e. the layer's own bias stays a plain parameter). Ignored for layers
            without bias.
        negative_slope: slope of the activation expected after the layer (gain of the last
            factor under ``init="paper"``; 0 = ReLU).
        allow_kernel_change: accept kernel lists whose effective kernel differs from the layer's.
        expansion_rate: ExpandNets' rate ``r`` instead of ``width``: hidden widths
            ``int(r * in)`` for the first sub-layer and ``int(r * out)`` for the others.
        residual: ``k`` adds a linear residual connection around every ``k`` consecutive factors
            (``x + F(x)``, the official code's ``residual_intervals``); ``k`` must divide
            ``depth``, each block must map as many channels out as in, the layer's stride must
            be 1 and each block's kernel odd. Still one composite weight:
            ``prod_j (I + P_j)``.
        batch_norm: a batch-norm (affine, PyTorch's default initialisation) after every factor,
            as the official code's ``batch_norm=True``; :func:`collapse` folds its running
            statistics (eval mode only).
    """
    _refuse_scripted(model, "expand")
    if depth is None:
        depth = len(kernel_sizes) if kernel_sizes is not None else 2
    if (
        isinstance(depth, bool)
        or not isinstance(depth, numbers.Integral)
        or int(depth) < 1
    ):
        raise ValueError(f"expand: depth must be an integer >= 1, got {depth!r}")
    depth = int(depth)
    if kernel_sizes is not None and len(kernel_sizes) != depth:
        raise ValueError(
            f"expand: kernel_sizes has {len(kernel_sizes)} entries but depth={depth}"
        )
    if (
        isinstance(width, bool)
        or not isinstance(width, numbers.Real)
        or not width > 0
        or not math.isfinite(width)
    ):
        raise ValueError(f"expand: width must be a finite number > 0, got {width!r}")
    width = float(width) if not isinstance(width, (int, float)) else width
    negative_slope = _number(negative_slope, "negative_slope")
    if init not in ("paper", "keep"):
        raise ValueError(f"expand: init must be 'paper' or 'keep', got {init!r}")
    if bias not in ("all", "last"):
        raise ValueError(f"expand: bias must be 'all' or 'last', got {bias!r}")
    if expansion_rate is not None:
        expansion_rate = _number(expansion_rate, "expansion_rate")
        if not (expansion_rate > 0 and math.isfinite(expansion_rate)):
            raise ValueError(
                f"expand: expansion_rate must be a finite number > 0, got {expansion_rate!r}"
            )
        if width != 1.0:
            raise ValueError("expand: give width or expansion_rate, not both")
    if residual is not None:
        residual = _number(residual, "residual", integer=True)
        if residual < 1:
            raise ValueError(f"expand: residual must be >= 1, got {residual}")
    if not isinstance(batch_norm, bool):
        raise ValueError(
            f"expand: batch_norm must be True or False, got {batch_norm!r}"
        )
    options = residual is not None or batch_norm or expansion_rate is not None
    if options and depth < 2:
        raise ValueError(
            "expand: expansion_rate, residual and batch_norm need depth >= 2"
        )
    if init == "keep" and (residual is not None or batch_norm):
        raise ValueError(
            "expand: init='keep' has no exact factorisation with residual blocks or "
            "batch-norm; use init='paper'"
        )

    chosen = _select(model, layers)
    _refuse_shared_parameters(model, chosen)
    plans = [
        _plan_for(
            name,
            module,
            depth,
            width,
            kernel_sizes,
            init,
            allow_kernel_change,
            expansion_rate,
            residual,
            batch_norm,
        )
        for name, module in chosen
    ]
    _refuse_oversized(plans, chosen)
    done, replaced = [], {}
    try:
        for plan, (name, module) in zip(plans, chosen):
            ws, bs = (
                _paper_factors(
                    module, plan.kernel_sizes, plan.hidden, negative_slope, residual
                )
                if init == "paper"
                else (None, None)
            )
            # expanded in place: remember how to undo it, even half done
            if not (plan.grows_kernel or plan.batch_norm):
                done.append((module, _snapshot(module)))
            result = _expand_layer(module, plan, init, bias, ws, bs)
            if result is not module:
                replaced[name] = (module, result)
    except BaseException:
        for module, snap in reversed(done):
            _restore(module, snap)
        raise
    for name, (old, new) in replaced.items():
        if name == "":
            return new
        for alias in _aliases(model, old):
            _set_submodule(model, alias, new)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside ``DistributedDataParallel`` / ``DataParallel`` wrappers (recognised by
    class; any other module is returned as it is). Compile models in place with
    ``nn.Module.compile()``, which keeps the module itself, so nothing needs unwrapping after
    compilation (``torch.compile(model)`` returns a wrapper whose submodule names gain a prefix)."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


def _is_expanded(module) -> bool:
    if isinstance(module, SequentialExpansion):
        return True
    return parametrize.is_parametrized(module, "weight") and isinstance(
        module.parametrizations.weight[0], _ExpandedWeight
    )


def expanded_layers(model: nn.Module) -> dict:
    """``{name: layer}`` for every expanded layer of ``model`` (DDP wrappers are looked through)."""
    return {n: m for n, m in unwrap(model).named_modules() if _is_expanded(m)}


def factors(layer: nn.Module):
    """``(weights, biases)`` of an expanded layer, first sub-layer first.

    ``biases`` is a list of per-sub-layer biases (``None`` for sub-layers without one).
    """
    if isinstance(layer, SequentialExpansion):
        return [f.weight for f in layer.factors], [f.bias for f in layer.factors]
    if not _is_expanded(layer):
        raise ValueError(f"factors: {type(layer).__name__} is not an expanded layer")
    wp = layer.parametrizations.weight
    d = wp[0].plan.depth
    ws = [getattr(wp, f"original{i}") for i in range(d)]
    if parametrize.is_parametrized(layer, "bias"):
        bp = layer.parametrizations.bias
        bs = [getattr(bp, f"original{i}") for i in range(d)]
    else:
        bs = [None] * (d - 1) + [layer.bias]
    return ws, bs


def _unparametrize(layer) -> None:
    """Make the parametrized ``layer`` an instance of its plain class again, dropping its
    parametrizations (and with them the factors) without touching the parametrized class, which
    deep copies of the layer share (``parametrize.remove_parametrizations`` deletes the class's
    properties and would break those copies). The caller registers the tensors afterwards."""
    layer.__class__ = parametrize.type_before_parametrizations(layer)
    delattr(layer, "parametrizations")


def _collapse_parametrized(layer) -> None:
    """Turn the parametrized ``layer`` back into its plain class in place, holding the composite
    weight and bias as parameters: the module object, its hooks, buffers, attributes and
    parameter order are kept; a composite tensor is trainable if any of its factors was, a plain
    bias keeps its own flag."""
    ws, bs = factors(layer)
    with torch.no_grad():
        weight, bias = layer.weight, layer.bias
    composite_bias = parametrize.is_parametrized(layer, "bias")
    weight = nn.Parameter(weight, requires_grad=any(w.requires_grad for w in ws))
    if composite_bias:
        bias = nn.Parameter(
            bias, requires_grad=any(b.requires_grad for b in bs if b is not None)
        )
    _unparametrize(layer)
    if "bias" in dict(layer.named_parameters(recurse=False)):
        delattr(layer, "bias")
    layer.register_parameter("weight", weight)
    layer.register_parameter("bias", bias)


def collapse(model: nn.Module, inplace: bool = False) -> nn.Module:
    """The model with every expanded layer replaced by its exact single-layer equivalent.

    Returns a model of the original architecture: expanded layers become plain
    ``nn.Linear``/``nn.ConvNd`` again holding the composite weight and bias as ordinary
    parameters, so its ``state_dict`` loads into the unexpanded model. A parametrized layer is
    turned back in place (the same module object: forward hooks, buffers, attributes and the
    parameter order are kept; ``requires_grad`` of each tensor follows its factors); a
    :class:`SequentialExpansion` (batch-norm) is replaced by a new layer built with its
    constructor, under every name it is registered with, and must be in eval mode (its
    running statistics are folded; in training mode batch-norm depends on the batch, so there
    is no single layer to give). By default the input is left untouched (the result is a new
    model); ``inplace=True`` changes ``model`` and returns it (the factors are then gone;
    rebuild the optimizer), or returns the new layer when ``model`` is itself a
    :class:`SequentialExpansion`. DDP / DataParallel wrappers are looked through. A model with
    nothing expanded comes back unchanged (a copy unless ``inplace``). See
    book/linear_overparam.ipynb.
    """
    model = unwrap(model)
    _refuse_scripted(model, "collapse")
    for name, layer in expanded_layers(model).items():
        if isinstance(layer, SequentialExpansion) and layer.training:
            raise ValueError(
                f"collapse: layer '{name}' has batch-norm in training mode, which "
                "normalises with each batch's statistics; call model.eval() first"
            )
    if not inplace:
        model = copy.deepcopy(model)
    for name, layer in expanded_layers(model).items():
        if isinstance(layer, SequentialExpansion):
            plain = layer.collapsed()
            if name == "":
                return plain
            for alias in _aliases(model, layer):
                _set_submodule(model, alias, plain)
        else:
            _collapse_parametrized(layer)
    return model


# --------------------------------------------------------------------------------------------
# The sequential form (the official code's training graph; our reference and benchmark baseline)
# --------------------------------------------------------------------------------------------


class _Pad(nn.Module):
    """``F.pad`` as a module (for padding modes / asymmetric 'same' padding)."""

    def __init__(self, pad, mode):
        super().__init__()
        self.pad, self.mode = tuple(pad), mode

    def forward(self, x):
        return F.pad(x, self.pad, mode=self.mode)


def _explicit_padding(layer):
    """Per-dimension (left, right) input padding of a conv layer, 'same'/'valid' resolved."""
    if layer.padding == "valid":
        return [(0, 0)] * len(layer.kernel_size)
    if layer.padding == "same":
        out = []
        for k, d in zip(layer.kernel_size, layer.dilation):
            total = d * (k - 1)
            out.append((total // 2, total - total // 2))
        return out
    return [(p, p) for p in layer.padding]


def _input_pad(layer):
    """The ``_Pad`` applying all of ``layer``'s padding to the input (``None`` if there is none)."""
    pads = _explicit_padding(layer)
    if not any(a or b for a, b in pads):
        return None
    flat = [x for a, b in reversed(pads) for x in (a, b)]
    mode = "constant" if layer.padding_mode == "zeros" else layer.padding_mode
    return _Pad(flat, mode)


def _sub_layer(layer, w, b, *, last: bool, padding=0):
    """One plain sub-layer of ``layer`` holding kernel ``w`` and bias ``b`` (valid unless
    ``padding`` is given; the layer's stride on the last sub-layer only)."""
    if isinstance(layer, nn.Linear) or w.dim() == 2:
        sub = skip_init(
            nn.Linear,
            w.shape[1],
            w.shape[0],
            bias=b is not None,
            device=w.device,
            dtype=w.dtype,
        )
    else:
        conv_cls = {3: nn.Conv1d, 4: nn.Conv2d, 5: nn.Conv3d}[w.dim()]
        sub = skip_init(
            conv_cls,
            w.shape[1] * layer.groups,
            w.shape[0],
            tuple(w.shape[2:]),
            stride=layer.stride if last else 1,
            padding=padding,
            dilation=layer.dilation,
            groups=layer.groups,
            bias=b is not None,
            device=w.device,
            dtype=w.dtype,
        )
    with torch.no_grad():
        sub.weight.copy_(w)
        if b is not None:
            sub.bias.copy_(b)
    return sub


def _sequential_of(layer):
    ws, bs = factors(layer)
    d = len(ws)
    if isinstance(layer, nn.Linear):
        return nn.Sequential(
            *(
                _sub_layer(layer, w, b, last=i == d - 1)
                for i, (w, b) in enumerate(zip(ws, bs))
            )
        )
    pads = _explicit_padding(layer)
    mods = []
    on_first = all(a == b for a, b in pads) and layer.padding_mode == "zeros"
    if not on_first and _input_pad(layer) is not None:
        mods.append(_input_pad(layer))
    for i, (w, b) in enumerate(zip(ws, bs)):
        padding = tuple(a for a, _ in pads) if i == 0 and on_first else 0
        mods.append(_sub_layer(layer, w, b, last=i == d - 1, padding=padding))
    return nn.Sequential(*mods)


def _centre_crop(x, size):
    """The centre ``size`` (spatial) of ``x``: the identity path of a residual block whose
    valid convolutions shrank the input by an even amount per dimension."""
    index = [slice(None), slice(None)]
    for n, m in zip(x.shape[2:], size):
        start = (n - m) // 2
        index.append(slice(start, start + m))
    return x[tuple(index)]


def _fold_batch_norm(w, b, norm):
    """Kernel and bias of "sub-layer ``(w, b)``, then ``norm`` in eval mode" (an affine map)."""
    scale = torch.rsqrt(norm.running_var + norm.eps)
    shift = -norm.running_mean * scale
    if norm.affine:
        scale, shift = scale * norm.weight, shift * norm.weight + norm.bias
    bias = shift if b is None else scale * b + shift
    return w * scale.reshape(-1, *([1] * (w.dim() - 1))), bias


class SequentialExpansion(nn.Module):
    """An expanded layer run sub-layer by sub-layer: all padding on its input, valid sub-layers,
    the stride on the last, optionally a batch-norm after every sub-layer and a linear residual
    connection around every ``residual`` sub-layers (``x + F(x)``, ``x`` centre-cropped to
    ``F(x)``'s size). :func:`expand` builds it for ``batch_norm=True`` (training-mode batch-norm
    needs the intermediate activations, so there is no composite to train through) and
    :func:`as_sequential` for residual expansions. :meth:`collapsed` gives the exact single
    layer of the original class and hyper-parameters (batch-norm in eval mode), with a bias
    even when the original layer had none: the batch-norms' shifts need one. See
    book/linear_overparam.ipynb.
    """

    def __init__(self, layer, ws, bs, *, residual=None, batch_norm=False):
        super().__init__()
        cls = parametrize.type_before_parametrizations(layer)
        self.layer_type = cls
        # batch-norm shifts its input, so the collapsed layer has a bias even if ``layer`` had none
        self.layer_args = _constructor_args(layer) | (
            {"bias": True} if batch_norm else {}
        )
        self.residual = residual
        self.pad = None if cls is nn.Linear else _input_pad(layer)
        self.factors = nn.ModuleList(
            _sub_layer(layer, w, b, last=i == len(ws) - 1)
            for i, (w, b) in enumerate(zip(ws, bs))
        )
        self.norms = None
        if batch_norm:
            norm_cls = {
                2: nn.BatchNorm1d,
                3: nn.BatchNorm1d,
                4: nn.BatchNorm2d,
                5: nn.BatchNorm3d,
            }[ws[0].dim()]
            self.norms = nn.ModuleList(
                norm_cls(w.shape[0], device=w.device, dtype=w.dtype) for w in ws
            )

    @classmethod
    def from_layer(cls, layer, plan, ws, bs, bias):
        """The expansion of ``layer`` following ``plan`` with factors ``ws`` and biases ``bs``
        (``bias="last"``: only the last sub-layer has one), in ``layer``'s training mode and with
        its ``requires_grad``; a grown kernel's padding keeps the output shape."""
        if layer.bias is None:
            bs = [None] * len(ws)
        elif bias == "last":
            bs = [None] * (len(ws) - 1) + [bs[-1]]
        if plan.grows_kernel:
            layer = _plain_like(
                layer,
                kernel_size=plan.effective_kernel,
                padding=_grown_padding(layer, plan.effective_kernel, plan.name),
            )
        out = cls(layer, ws, bs, residual=plan.residual, batch_norm=plan.batch_norm)
        for p in out.factors.parameters():
            p.requires_grad_(layer.weight.requires_grad)
        return out.train(layer.training)

    def forward(self, x):
        if self.norms is not None and self.layer_type is nn.Linear and x.dim() != 2:
            raise ValueError(
                "SequentialExpansion: a Linear expansion with batch-norm takes (batch, "
                f"features) inputs, got shape {tuple(x.shape)}"
            )
        if self.pad is not None:
            x = self.pad(x)
        block_input = x
        for i, sub in enumerate(self.factors):
            x = sub(x)
            if self.norms is not None:
                x = self.norms[i](x)
            if self.residual is not None and (i + 1) % self.residual == 0:
                x = x + _centre_crop(block_input, x.shape[2:])
                block_input = x
        return x

    def composite(self):
        """``(weight, bias)`` of the single equivalent layer (batch-norm folded with its running
        statistics, i.e. the eval-mode function)."""
        ws, bs = factors(self)
        if self.norms is not None:
            ws, bs = zip(
                *(_fold_batch_norm(w, b, n) for w, b, n in zip(ws, bs, self.norms))
            )
        groups = self.layer_args.get("groups", 1)
        weight = compose_expansion(ws, groups, self.residual)
        bias = None
        if self.layer_args["bias"]:
            bias = _compose_expansion_bias(ws, bs, groups, self.residual)
        return weight, bias

    def collapsed(self):
        """A new plain layer of the original class computing this expansion's eval function."""
        with torch.no_grad():
            weight, bias = self.composite()
        w0 = self.factors[0].weight
        plain = skip_init(
            self.layer_type, **self.layer_args, device=w0.device, dtype=w0.dtype
        )
        return _with_values(
            plain,
            weight.detach(),
            None if bias is None else bias.detach(),
            any(p.requires_grad for p in self.factors.parameters()),
            self.training,
        )


def as_sequential(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with each expanded layer replaced by its sub-layers run one after another.

    This is how the official code trains (padding on the first sub-layer, stride on the last),
    with fresh parameter copies: same function, ``depth`` convolutions per layer. Plain
    expansions become an ``nn.Sequential``; residual ones a :class:`SequentialExpansion`;
    batch-norm ones already are one (copied). Every name of a layer registered twice is
    replaced. It serves as the baseline of the benchmark and in the chapter; ``collapse`` is
    the inference form.
    """
    model = unwrap(model)
    _refuse_scripted(model, "as_sequential")
    out = copy.deepcopy(model)
    for name, layer in expanded_layers(out).items():
        if isinstance(layer, SequentialExpansion):
            continue
        plan = layer.parametrizations.weight[0].plan
        if plan.residual is None:
            seq = _sequential_of(layer)
        else:
            ws, bs = factors(layer)
            seq = SequentialExpansion(
                layer,
                [w.detach() for w in ws],
                [None if b is None else b.detach() for b in bs],
                residual=plan.residual,
            ).train(layer.training)
        if name == "":
            return seq
        for alias in _aliases(out, layer):
            _set_submodule(out, alias, seq)
    return out


# --------------------------------------------------------------------------------------------
# Counting
# --------------------------------------------------------------------------------------------


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars (factors count, composite weights do not)."""
    return sum(p.numel() for p in unwrap(model).parameters() if p.requires_grad)
