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

Public API: :func:`expand`, :func:`collapse`, :func:`expanded_layers`, :func:`factors`,
:func:`compose_kernels`, :func:`compose_biases`, :func:`as_sequential`, :func:`count_parameters`,
:func:`layer_costs`, :class:`ExpansionPlan`. Evaluation of an expanded model needs no collapse
(it already runs one layer per layer); wrap it in ``torch.nn.utils.parametrize.cached()`` so that
each composite is computed once per pass. Only public PyTorch API is used: ``parametrize`` for
the factors, the layers' own constructors (through ``torch.nn.utils.skip_init``) and
``load_state_dict`` for collapsed and rebuilt layers. The training-step benchmark lives with the
chapter's recipes (``python -m support.experiments.linear_overparam bench``).
"""

from __future__ import annotations

import copy
import math
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
    "as_sequential",
    "count_parameters",
    "layer_costs",
    "LayerCost",
    "ExpansionPlan",
    "compose_biases",
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
    if all(
        k == 1 for k in k2
    ):  # second is a matrix per group: a (batched) matrix product
        a = first.reshape(groups, h // groups, -1)
        b = second.reshape(groups, c_out // groups, h // groups)
        return torch.bmm(b, a).reshape(c_out, c_in_g, *k1)
    if all(
        k == 1 for k in k1
    ):  # first is a matrix: mix its channels into every tap of second
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


# --------------------------------------------------------------------------------------------
# Parametrizations
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpansionPlan:
    """How one layer is expanded: its name, the sub-layers' kernel sizes (first to last; empty
    tuples for ``nn.Linear``), the hidden width, the groups, and the layer's kernel after
    expansion (``None`` for ``nn.Linear``). ``grows_kernel``: the effective kernel differs from
    the layer's, so the layer is rebuilt with the larger kernel (``allow_kernel_change=True``)."""

    name: str
    kernel_sizes: tuple
    hidden: int
    groups: int
    effective_kernel: tuple | None
    grows_kernel: bool

    @property
    def depth(self) -> int:
        return len(self.kernel_sizes)


class _ExpandedWeight(nn.Module):
    """``weight = compose_kernels(original0, ..., original{d-1})``.

    ``right_inverse`` (what ``layer.weight = W`` and registration call) factorises a weight:
    exactly as ``[W; 0]`` then identities where the plan allows it (kernel list ``[k, 1, ..., 1]``,
    hidden width >= output channels per group); the zero map as zero factors under any plan;
    anything else is a ValueError (such a weight has no exact factorisation to give).
    """

    def __init__(self, plan: ExpansionPlan):
        super().__init__()
        self.plan = plan

    def forward(self, *ws):
        # The composite is formed in the factors' precision even under autocast: the cast to the
        # autocast dtype happens once, at the layer's own convolution / matmul.
        with torch.autocast(device_type=ws[0].device.type, enabled=False):
            return compose_kernels(ws, self.plan.groups)

    def right_inverse(self, weight):
        plan = self.plan
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
            return compose_biases(ws, bs, self.plan.groups)

    def right_inverse(self, bias):
        zeros = [
            torch.zeros(self.plan.hidden, dtype=bias.dtype, device=bias.device)
        ] * (self.plan.depth - 1)
        return tuple(zeros) + (bias.detach().clone(),)


def _factor_shapes(weight, plan: ExpansionPlan):
    """Shapes of the sub-layers' kernels for a layer whose weight is ``weight``."""
    out, in_g = weight.shape[0], weight.shape[1]
    h_g = plan.hidden // plan.groups
    dims = [plan.hidden] * (plan.depth - 1) + [out]
    return [
        (o, in_g if i == 0 else h_g, *k)
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
    """Factors whose composite is exactly ``weight``: ``[W; 0]`` (per group), then identities."""
    out = weight.shape[0]
    k_eff = tuple(weight.shape[2:])
    if tuple(kernel_sizes[0]) != k_eff or any(
        any(x != 1 for x in k) for k in kernel_sizes[1:]
    ):
        raise ValueError(
            f"exact factorisation needs the kernel list [k, 1, ..., 1] with k = {k_eff}; "
            f"got {list(kernel_sizes)} (use init='paper' for other kernel lists)"
        )
    if hidden < out:
        raise ValueError(
            f"exact factorisation needs hidden width >= out features ({hidden} < {out}); "
            "use width >= 1 or init='paper'"
        )
    depth = len(kernel_sizes)
    h_g, o_g = hidden // groups, out // groups
    ones = (1,) * len(k_eff)
    w = weight.detach().reshape(groups, o_g, *weight.shape[1:])
    first = torch.cat([w, w.new_zeros(groups, h_g - o_g, *weight.shape[1:])], 1)
    first = first.reshape(hidden, *weight.shape[1:])
    middle = [
        _eye_blocks(groups, h_g, h_g, weight).reshape(hidden, h_g, *ones)
        for _ in range(depth - 2)
    ]
    last = _eye_blocks(groups, o_g, h_g, weight).reshape(out, h_g, *ones)
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
    if parametrize.is_parametrized(module):
        raise ValueError(
            f"expand: {label} already has parametrizations (is it expanded already? "
            "collapse it first)"
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


def _select(model, layers):
    named = dict(model.named_modules())
    if layers is None:
        chosen = [
            n for n, m in named.items() if isinstance(m, _EXPANDABLE + _TRANSPOSED)
        ]
    elif callable(layers):
        chosen = [n for n, m in named.items() if layers(n, m)]
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


def _plan_for(
    name, module, depth, width, kernel_sizes, init, allow_kernel_change
) -> ExpansionPlan:
    """Validate one layer's expansion and return its plan (nothing is modified)."""
    ks = _kernel_list(module, depth, kernel_sizes, name)
    is_conv = not isinstance(module, nn.Linear)
    groups = module.groups if is_conv else 1
    out = module.weight.shape[0]
    hidden = int(out * width)
    if depth > 1 and (hidden < 1 or hidden % groups):
        raise ValueError(
            f"expand: module '{name}': hidden width int({out} * {width}) = {hidden} "
            f"must be >= 1 and a multiple of groups={groups}"
        )
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
        _grown_padding(module, k_eff, name)  # refuses odd growth
    if init == "keep" and depth > 1 and hidden < out:
        raise ValueError(
            f"expand: module '{name}': init='keep' needs width >= 1 "
            f"(hidden {hidden} < out {out})"
        )
    return ExpansionPlan(name, tuple(ks), hidden, groups, k_eff, grows)


def _paper_factors(module, ks, hidden, negative_slope):
    """Sampled factors and biases of the paper's initialisation (see the module docstring)."""
    w0 = module.weight
    is_conv = not isinstance(module, nn.Linear)
    groups = module.groups if is_conv else 1
    in_g = w0.shape[1]
    depth = len(ks)
    dims = [hidden] * (depth - 1) + [w0.shape[0]]
    ws, bs = [], []
    for i, (k, out_i) in enumerate(zip(ks, dims)):
        fan_in_ch = in_g if i == 0 else hidden // groups
        w = torch.empty(out_i, fan_in_ch, *k, dtype=w0.dtype, device=w0.device)
        taps = math.prod(k)
        last = i == depth - 1
        gain2 = 2.0 / (1.0 + negative_slope**2) if last else 1.0
        if (
            is_conv
        ):  # fan-out; an intermediate factor's true fan-out is (out_i / groups) * taps
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


def _plain_like(layer, *, kernel_size=None, padding=None, device=None, dtype=None):
    """A new, uninitialised plain layer of ``layer``'s class and hyper-parameters (its constructor,
    through ``torch.nn.utils.skip_init``: no parameters are initialised, no random numbers drawn)."""
    cls = parametrize.type_before_parametrizations(layer)
    weight = layer.weight
    device = weight.device if device is None else device
    dtype = weight.dtype if dtype is None else dtype
    has_bias = layer.bias is not None
    if cls is nn.Linear:
        return skip_init(
            nn.Linear,
            layer.in_features,
            layer.out_features,
            bias=has_bias,
            device=device,
            dtype=dtype,
        )
    return skip_init(
        cls,
        layer.in_channels,
        layer.out_channels,
        layer.kernel_size if kernel_size is None else kernel_size,
        stride=layer.stride,
        padding=layer.padding if padding is None else padding,
        dilation=layer.dilation,
        groups=layer.groups,
        bias=has_bias,
        padding_mode=layer.padding_mode,
        device=device,
        dtype=dtype,
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
    if (
        init == "paper"
    ):  # register on the zero map (exact under any plan), then set the sampled factors
        module.weight = nn.Parameter(
            torch.zeros_like(module.weight), requires_grad=module.weight.requires_grad
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
    """What :func:`_restore` needs to undo an in-place expansion of ``module``."""
    return {
        "weight": module.weight,
        "bias": module.bias,
        "values": {
            k: v.detach().clone() for k, v in module.named_parameters(recurse=False)
        },
    }


def _restore(module, snap) -> None:
    for tensor_name in ("bias", "weight"):
        if parametrize.is_parametrized(module, tensor_name):
            parametrize.remove_parametrizations(
                module, tensor_name, leave_parametrized=True
            )
    for tensor_name in ("weight", "bias"):
        if snap[tensor_name] is not None:
            setattr(module, tensor_name, snap[tensor_name])
    with torch.no_grad():
        for k, v in module.named_parameters(recurse=False):
            v.copy_(snap["values"][k])


def _set_submodule(model, name, module):
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child, module)


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
) -> nn.Module:
    """Expand linear layers of ``model`` in place into ``depth`` linear sub-layers; return ``model``.

    Each chosen layer keeps its class and forward; its ``weight`` (and with ``bias="all"`` its
    ``bias``) becomes a parametrization over factor parameters, stored as
    ``<layer>.parametrizations.weight.original0 ... original{depth-1}`` (first sub-layer first).
    All or nothing: every layer is validated first (tied parameters, unsupported or already
    expanded layers are refused, naming the layer), and if expanding any layer fails, the layers
    already expanded are restored before the error propagates. A layer whose kernel grows
    (``allow_kernel_change``) is rebuilt with its constructor and put in place of the old one;
    when ``model`` is itself such a layer, the new layer is returned.

    Args:
        model: any module; the model itself may be a single layer.
        depth: number of sub-layers (>= 1). Defaults to ``len(kernel_sizes)`` or 2. ``depth=1``
            with ``init="paper"`` only re-initialises the layers (the paper's baseline).
        width: hidden width is ``int(out_features * width)`` (the official code's rule); must
            be > 0 and, for grouped convolutions, give a multiple of ``groups``.
        kernel_sizes: per-sub-layer kernel sizes (ints or tuples) for convolutions; default
            ``[k, 1, ..., 1]``. Their effective size ``sum(k_i) - depth + 1`` must equal the
            layer's kernel unless ``allow_kernel_change=True``.
        layers: ``None`` (every Linear/Conv1d/2d/3d; a transposed convolution raises), a list of
            module names (as in ``named_modules()``), or a predicate ``(name, module) -> bool``.
        init: ``"paper"`` (Kaiming factors, see module docstring) or ``"keep"`` (exact
            factorisation of the current weight; needs ``[k, 1, ..., 1]`` and width >= 1).
        bias: ``"all"`` (every sub-layer has a bias, as in the official code) or ``"last"`` (only
            the last, i.e. the layer's own bias stays a plain parameter). Ignored for layers
            without bias.
        negative_slope: slope of the activation expected after the layer (gain of the last
            factor under ``init="paper"``; 0 = ReLU).
        allow_kernel_change: accept kernel lists whose effective kernel differs from the layer's.
    """
    if depth is None:
        depth = len(kernel_sizes) if kernel_sizes is not None else 2
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"expand: depth must be an integer >= 1, got {depth!r}")
    if kernel_sizes is not None and len(kernel_sizes) != depth:
        raise ValueError(
            f"expand: kernel_sizes has {len(kernel_sizes)} entries but depth={depth}"
        )
    if (
        isinstance(width, bool)
        or not isinstance(width, (int, float))
        or not width > 0
        or not math.isfinite(width)
    ):
        raise ValueError(f"expand: width must be a finite number > 0, got {width!r}")
    if init not in ("paper", "keep"):
        raise ValueError(f"expand: init must be 'paper' or 'keep', got {init!r}")
    if bias not in ("all", "last"):
        raise ValueError(f"expand: bias must be 'all' or 'last', got {bias!r}")

    chosen = _select(model, layers)
    _refuse_shared_parameters(model, chosen)
    plans = [
        _plan_for(name, module, depth, width, kernel_sizes, init, allow_kernel_change)
        for name, module in chosen
    ]
    done, replaced = [], {}
    try:
        for plan, (name, module) in zip(plans, chosen):
            ws, bs = (
                _paper_factors(module, plan.kernel_sizes, plan.hidden, negative_slope)
                if init == "paper"
                else (None, None)
            )
            if (
                not plan.grows_kernel
            ):  # expanded in place: remember how to undo it, even half done
                done.append((module, _snapshot(module)))
            result = _expand_layer(module, plan, init, bias, ws, bs)
            if result is not module:
                replaced[name] = result
    except BaseException:
        for module, snap in reversed(done):
            _restore(module, snap)
        raise
    for name, module in replaced.items():
        if name == "":
            return module
        _set_submodule(model, name, module)
    return model


def _unwrap(model):
    """The plain module inside a DDP / DataParallel wrapper or a ``torch.compile`` result."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def _is_expanded(module) -> bool:
    return parametrize.is_parametrized(module, "weight") and isinstance(
        module.parametrizations.weight[0], _ExpandedWeight
    )


def expanded_layers(model: nn.Module) -> dict:
    """``{name: layer}`` for every expanded layer of ``model`` (wrappers are looked through)."""
    return {n: m for n, m in _unwrap(model).named_modules() if _is_expanded(m)}


def factors(layer: nn.Module):
    """``(weights, biases)`` of an expanded layer, first sub-layer first.

    ``biases`` is a list of per-sub-layer biases (``None`` for sub-layers without one).
    """
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


def _plain_layer(layer):
    """A new plain layer computing exactly what the expanded ``layer`` computes: its class built
    with its constructor, holding the composite weight and bias (``layer`` is untouched)."""
    with torch.no_grad():
        weight = layer.weight.detach().clone()
        bias = None if layer.bias is None else layer.bias.detach().clone()
    ws, _ = factors(layer)
    return _with_values(
        _plain_like(layer),
        weight,
        bias,
        any(w.requires_grad for w in ws),
        layer.training,
    )


def collapse(model: nn.Module, inplace: bool = False) -> nn.Module:
    """The model with every expanded layer replaced by its exact single-layer equivalent.

    Returns a model of the original architecture: expanded layers become plain
    ``nn.Linear``/``nn.ConvNd`` again (built with their constructors) holding the composite
    weight and bias as ordinary parameters, so its ``state_dict`` loads into the unexpanded model.
    By default the input is left untouched (the result is a new model); ``inplace=True`` puts the
    plain layers in place of the expanded ones inside ``model`` and returns ``model`` (the factors
    are then gone; rebuild the optimizer), or returns the new layer when ``model`` is itself one
    expanded layer. DDP / DataParallel / ``torch.compile`` wrappers are looked through. A model
    with nothing expanded comes back unchanged (a copy unless ``inplace``). See
    book/linear_overparam.ipynb.
    """
    model = _unwrap(model)
    layers = expanded_layers(model)
    plain = {name: _plain_layer(layer) for name, layer in layers.items()}
    if inplace:
        if "" in plain:
            return plain[""]
        for name, layer in plain.items():
            _set_submodule(model, name, layer)
        return model
    memo = {id(layers[name]): layer for name, layer in plain.items()}
    return copy.deepcopy(model, memo)


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


def _sequential_of(layer):
    ws, bs = factors(layer)
    d = len(ws)
    is_conv = not isinstance(layer, nn.Linear)
    mods = []
    if is_conv:
        pads = _explicit_padding(layer)
        nd = len(pads)
        conv_cls = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[nd]
        symmetric = all(a == b for a, b in pads)
        if not symmetric or layer.padding_mode != "zeros":
            flat = [x for a, b in reversed(pads) for x in (a, b)]
            mode = "constant" if layer.padding_mode == "zeros" else layer.padding_mode
            mods.append(_Pad(flat, mode))
    for i, (w, b) in enumerate(zip(ws, bs)):
        if is_conv:
            first = i == 0 and symmetric and layer.padding_mode == "zeros"
            sub = skip_init(
                conv_cls,
                w.shape[1] * layer.groups,
                w.shape[0],
                tuple(w.shape[2:]),
                stride=layer.stride if i == d - 1 else 1,
                padding=tuple(a for a, _ in pads) if first else 0,
                dilation=layer.dilation,
                groups=layer.groups,
                bias=b is not None,
                device=w.device,
                dtype=w.dtype,
            )
        else:
            sub = skip_init(
                nn.Linear,
                w.shape[1],
                w.shape[0],
                bias=b is not None,
                device=w.device,
                dtype=w.dtype,
            )
        with torch.no_grad():
            sub.weight.copy_(w)
            if b is not None:
                sub.bias.copy_(b)
        mods.append(sub)
    return nn.Sequential(*mods)


def as_sequential(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with each expanded layer replaced by its sub-layers run one after another.

    This is how the official code trains (padding on the first sub-layer, stride on the last),
    with fresh parameter copies: same function, ``depth`` convolutions per layer. It serves as the
    baseline of the benchmark and in the chapter; ``collapse`` is the inference form.
    """
    model = _unwrap(model)
    layers = expanded_layers(model)
    if "" in layers:
        return _sequential_of(layers[""])
    out = copy.deepcopy(model)
    for name, layer in expanded_layers(out).items():
        parent_name, _, child = name.rpartition(".")
        parent = out.get_submodule(parent_name)
        setattr(parent, child, _sequential_of(layer))
    return out


# --------------------------------------------------------------------------------------------
# Counting
# --------------------------------------------------------------------------------------------


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars (factors count, composite weights do not)."""
    return sum(p.numel() for p in _unwrap(model).parameters() if p.requires_grad)


@dataclass
class LayerCost:
    """Per-layer counts for one input (see book/linear_overparam.ipynb).

    ``params_*`` are parameter counts; ``macs_*`` multiply-accumulates per example:
    ``sequential`` runs the sub-layers one after another, ``collapsed`` runs one layer (also what
    the effective-weight forward costs), ``compose`` is the per-step cost of forming the
    composite kernel (independent of the batch size).
    """

    name: str
    params_expanded: int
    params_collapsed: int
    macs_sequential: int
    macs_collapsed: int
    macs_compose: int


def _conv_out(size, k, s, p, d):
    return (size + p[0] + p[1] - d * (k - 1) - 1) // s + 1


def layer_costs(model: nn.Module, example_input: torch.Tensor) -> list:
    """:class:`LayerCost` rows for every expanded layer, from one forward pass on ``example_input``
    (batch of one is enough; counts are per example)."""
    model = _unwrap(model)
    layers = expanded_layers(model)
    shapes = {}
    hooks = [
        m.register_forward_hook(lambda m, i, o, n=n: shapes.__setitem__(n, i[0].shape))
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
        ws, bs = factors(layer)
        p_exp = sum(w.numel() for w in ws) + sum(b.numel() for b in bs if b is not None)
        p_col = layer.weight.numel() + (0 if layer.bias is None else layer.bias.numel())
        shape = shapes[name]
        if isinstance(layer, nn.Linear):
            positions = math.prod(shape[1:-1]) if len(shape) > 2 else 1
            seq = sum(w.numel() for w in ws) * positions
            col = layer.weight.numel() * positions
        else:
            spatial = list(shape[2:])
            pads = _explicit_padding(layer)
            seq = 0
            for i, w in enumerate(
                ws
            ):  # valid convs after padding; stride only on the last
                stride = layer.stride if i == len(ws) - 1 else (1,) * len(spatial)
                spatial = [
                    _conv_out(n, k, s, (p if i == 0 else (0, 0)), dl)
                    for n, k, s, p, dl in zip(
                        spatial, w.shape[2:], stride, pads, layer.dilation
                    )
                ]
                seq += w.numel() * math.prod(spatial)
            col = layer.weight.numel() * math.prod(spatial)
        comp, acc = 0, ws[-1].shape  # the fold of compose_kernels: last factors first
        for w in reversed(ws[:-1]):
            comp += (
                acc[0]
                * acc[1]
                * w.shape[1]
                * math.prod(acc[2:])
                * math.prod(w.shape[2:])
            )
            acc = (
                acc[0],
                w.shape[1],
                *(a + b - 1 for a, b in zip(w.shape[2:], acc[2:])),
            )
        rows.append(LayerCost(name, p_exp, p_col, int(seq), int(col), int(comp)))
    return rows
