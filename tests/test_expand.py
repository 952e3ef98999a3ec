"""Tests of support.expand against an independent sequential reference.

The reference runs the sub-layers one after another with ``F.pad`` + ``F.conv{1,2,3}d`` /
``F.linear`` (padding on the input, valid convolutions, stride on the last), which is the
definition of the expanded layer; the library never calls it.
"""

import copy
import io
import math
import os
import tempfile

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.nn.utils import parametrize

from support.costs import layer_costs
from support.expand import (
    as_sequential,
    collapse,
    compose_kernels,
    count_parameters,
    expand,
    expanded_layers,
    factors,
)

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


pytestmark = pytest.mark.usefixtures("one_thread")


def reference_forward(
    x, ws, bs, *, nd, stride=1, pads=None, mode="zeros", dilation=1, groups=1
):
    """Sub-layers one after another: pad once, valid convs, stride on the last (or F.linear)."""
    if nd == 0:
        for w, b in zip(ws, bs):
            x = F.linear(x, w, b)
        return x
    flat = [v for a, b in reversed(pads) for v in (a, b)]
    x = F.pad(x, flat, mode="constant" if mode == "zeros" else mode)
    for i, (w, b) in enumerate(zip(ws, bs)):
        x = CONV[nd](
            x,
            w,
            b,
            stride=stride if i == len(ws) - 1 else 1,
            dilation=dilation,
            groups=groups,
        )
    return x


@st.composite
def layer_configs(draw):
    nd = draw(st.sampled_from([0, 1, 2, 2, 3]))
    groups = draw(st.sampled_from([1, 1, 2])) if nd else 1
    cin = groups * draw(st.integers(1, 3))
    cout = groups * draw(st.integers(1, 3))
    depth = draw(st.integers(2, 4))  # depth 1 is a plain layer (test_depth_one_...)
    width = draw(st.sampled_from([0.5, 1.0, 1.5, 2.0]))
    hidden = int(cout * width)
    if depth > 1 and (hidden < 1 or hidden % groups):
        width = 1.0
    cfg = dict(
        nd=nd,
        groups=groups,
        cin=cin,
        cout=cout,
        depth=depth,
        width=width,
        bias=draw(st.booleans()),
        bias_mode=draw(st.sampled_from(["all", "last"])),
        init=draw(st.sampled_from(["paper", "keep"])),
        seed=draw(st.integers(0, 2**16)),
    )
    if width < 1:  # an exact factorisation needs hidden >= out
        cfg["init"] = "paper"
    if nd == 0:
        cfg["batch_shape"] = draw(st.sampled_from([(3,), (2, 3)]))
        return cfg
    custom = draw(st.booleans())
    if (
        custom
    ):  # kernel list: effective kernel sum(k) - depth + 1 becomes the layer's kernel
        per = [tuple(draw(st.integers(1, 3)) for _ in range(nd)) for _ in range(depth)]
        k = tuple(sum(p[j] for p in per) - depth + 1 for j in range(nd))
        cfg["kernel_sizes"] = per
        cfg["init"] = "paper"
    else:
        k = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    dilation = draw(st.integers(1, 2))
    stride = draw(st.integers(1, 3))
    pad_kind = draw(st.sampled_from(["int", "tuple", "valid", "same"]))
    if pad_kind == "same" and stride != 1:
        pad_kind = "int"
    if pad_kind == "int":
        padding = draw(st.integers(0, 2))
        pads = [(padding, padding)] * nd
    elif pad_kind == "tuple":
        padding = tuple(draw(st.integers(0, 2)) for _ in range(nd))
        pads = [(p, p) for p in padding]
    elif pad_kind == "valid":
        padding, pads = "valid", [(0, 0)] * nd
    else:  # PyTorch's 'same': the odd extra element goes to the right
        padding = "same"
        pads = [
            (dilation * (kk - 1) // 2, dilation * (kk - 1) - dilation * (kk - 1) // 2)
            for kk in k
        ]
    mode = draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))
    extent = [dilation * (kk - 1) + 1 for kk in k]
    size = [
        max(e - sum(p), max(p) + 1) + draw(st.integers(0, 3))
        for e, p in zip(extent, pads)
    ]
    cfg.update(
        k=k,
        dilation=dilation,
        stride=stride,
        padding=padding,
        pads=pads,
        mode=mode,
        size=size,
    )
    return cfg


def build(cfg):
    torch.manual_seed(cfg["seed"])
    if cfg["nd"] == 0:
        return nn.Linear(cfg["cin"], cfg["cout"], bias=cfg["bias"], dtype=torch.float64)
    cls = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[cfg["nd"]]
    return cls(
        cfg["cin"],
        cfg["cout"],
        cfg["k"],
        stride=cfg["stride"],
        padding=cfg["padding"],
        dilation=cfg["dilation"],
        groups=cfg["groups"],
        bias=cfg["bias"],
        padding_mode=cfg["mode"],
        dtype=torch.float64,
    )


def make_input(cfg, batch=2):
    g = torch.Generator().manual_seed(cfg["seed"] + 1)
    if cfg["nd"] == 0:
        shape = (*cfg["batch_shape"], cfg["cin"])
    else:
        shape = (batch, cfg["cin"], *cfg["size"])
    return torch.randn(shape, generator=g, dtype=torch.float64)


def expand_cfg(layer, cfg):
    return expand(
        layer,
        depth=cfg["depth"],
        width=cfg["width"],
        kernel_sizes=cfg.get("kernel_sizes"),
        init=cfg["init"],
        bias=cfg["bias_mode"],
        allow_kernel_change=True,
    )


def close(a, b, tol=1e-10):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@settings(max_examples=240, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layer_configs())
def test_expanded_matches_sequential_reference_outputs_and_gradients(cfg):
    layer = build(cfg)
    x = make_input(cfg)
    before = layer(x).detach() if cfg["init"] == "keep" else None
    expand_cfg(layer, cfg)
    ws, bs = factors(layer)
    assert len(ws) == cfg["depth"]
    x = x.requires_grad_()
    y = layer(x)
    ref_ws = [w.detach().clone().requires_grad_() for w in ws]
    ref_bs = [None if b is None else b.detach().clone().requires_grad_() for b in bs]
    if cfg["nd"]:
        x_ref = x.detach().clone().requires_grad_()
        y_ref = reference_forward(
            x_ref,
            ref_ws,
            ref_bs,
            nd=cfg["nd"],
            stride=cfg["stride"],
            pads=cfg["pads"],
            mode=cfg["mode"],
            dilation=cfg["dilation"],
            groups=cfg["groups"],
        )
    else:
        x_ref = x.detach().clone().requires_grad_()
        y_ref = reference_forward(x_ref, ref_ws, ref_bs, nd=0)
    assert y.shape == y_ref.shape
    close(y, y_ref)
    if before is not None:  # init="keep" factorises the weight exactly: same function
        close(y.detach(), before)
    # gradients w.r.t. the input and every factor
    g = torch.randn(
        y.shape,
        generator=torch.Generator().manual_seed(cfg["seed"] + 2),
        dtype=torch.float64,
    )
    params = [x] + list(ws) + [b for b in bs if b is not None]
    params_ref = [x_ref] + ref_ws + [b for b in ref_bs if b is not None]
    grads = torch.autograd.grad((y * g).sum(), params)
    grads_ref = torch.autograd.grad((y_ref * g).sum(), params_ref)
    for a, b in zip(grads, grads_ref):
        close(a, b)
    # the sequential module form and the collapsed layer compute the same function
    with torch.no_grad():
        close(as_sequential(layer)(x), y_ref)
        collapsed = collapse(layer)
        assert type(collapsed) is parametrize.type_before_parametrizations(layer)
        close(collapsed(x), y_ref)


def test_compose_kernels_matches_impulse_response():
    """The composite kernel is the response of the chain to a unit impulse (2-d, groups)."""
    torch.manual_seed(0)
    ws = [
        torch.randn(4, 1, 3, 2, dtype=torch.float64),
        torch.randn(4, 2, 2, 3, dtype=torch.float64),
        torch.randn(2, 2, 1, 1, dtype=torch.float64),
    ]
    k = compose_kernels(ws, groups=2)
    assert k.shape == (2, 1, 4, 4)
    for c in range(2):
        delta = torch.zeros(1, 2, 7, 7, dtype=torch.float64)
        delta[0, c, 3, 3] = 1.0
        y = delta
        for w in ws:
            y = F.conv2d(y, w, groups=2)
        # cross-correlation: output at p sees input p + t, so the impulse at 3 gives K[..., 3 - p]
        resp = y[0].flip(-1, -2)
        for o in range(2):
            if (
                o // 1 == c
            ):  # output channel o belongs to group o (one output per group)
                close(resp[o], k[o, 0])
            else:
                assert resp[o].abs().max() == 0
    with pytest.raises(ValueError, match="cannot follow"):
        compose_kernels([torch.zeros(4, 3, 3, 3), torch.zeros(2, 3, 1, 1)])
    with pytest.raises(ValueError, match="empty"):
        compose_kernels([])


def tiny_cnn(dtype=torch.float64):
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1, bias=False),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Conv2d(6, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    ).to(dtype)


def test_collapse_returns_original_architecture_and_leaves_input_untouched():
    torch.manual_seed(0)
    plain = tiny_cnn()
    keys = list(plain.state_dict())
    model = expand(copy.deepcopy(plain), depth=3, width=1.5)
    assert set(expanded_layers(model)) == {"0", "3", "7"}
    snapshot = copy.deepcopy(model)  # a deep copy must survive collapsing the original
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    model.eval()
    y = model(x)
    out = collapse(model)
    assert [type(m) for m in out.modules()] == [type(m) for m in plain.modules()]
    assert list(out.state_dict()) == keys
    plain.load_state_dict(out.state_dict())
    plain.eval()
    close(plain(x), y)
    assert expanded_layers(model)  # input still expanded, still working
    close(model(x), y)
    inplace = collapse(model, inplace=True)
    assert inplace is model and not expanded_layers(model)
    assert all(
        isinstance(p, nn.Parameter) and p.requires_grad for p in model.parameters()
    )
    close(model(x), y)
    close(snapshot.eval()(x), y)
    # nothing expanded: a no-op (a copy by default)
    again = collapse(model)
    assert again is not model and list(again.state_dict()) == keys
    close(again(x), y)


def test_collapse_float32_tf32_off(tf32_off):
    torch.manual_seed(0)
    model = expand(tiny_cnn(torch.float32), depth=4).eval()
    x = torch.randn(4, 3, 8, 8)
    ref = as_sequential(model)(x)
    out = collapse(model)(x)
    assert ((out - ref).abs().max() / ref.abs().max()).item() <= 1e-5


@pytest.mark.parametrize("depth", [1, 2, 4, 8])
def test_paper_init_collapsed_variance_is_base_kaiming(depth):
    """E[w^2] of the collapsed weight = Kaiming of the base layer (fan_out conv, fan_in linear).

    One draw of a deep product fluctuates (its norm is random, more so with depth), so the
    expectation is estimated over 8 draws.
    """
    torch.manual_seed(depth)
    ratios = {"conv": [], "linear": [], "grouped": []}
    for _ in range(8):
        conv = expand(nn.Conv2d(48, 64, 3, padding=1), depth=depth)
        lin = expand(nn.Linear(256, 96), depth=depth)
        grouped = expand(nn.Conv2d(32, 64, 3, groups=4), depth=depth)
        with torch.no_grad():
            ratios["conv"].append(conv.weight.pow(2).mean().item() / (2 / (64 * 9)))
            ratios["linear"].append(lin.weight.pow(2).mean().item() / (2 / 256))
            ratios["grouped"].append(
                grouped.weight.pow(2).mean().item() / (2 / (64 * 9))
            )
    for kind, r in ratios.items():
        assert abs(sum(r) / len(r) - 1) < 0.12, (kind, r)
    assert parametrize.is_parametrized(conv) == (depth > 1)


def test_kernel_lists_preserve_summed_variance_and_change_kernel_only_on_request():
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="effective kernel"):
        expand(nn.Conv2d(4, 4, 3, padding=1), kernel_sizes=[5, 3, 1])
    conv = expand(
        nn.Conv2d(64, 64, 3, padding=1),
        kernel_sizes=[5, 3, 1],
        allow_kernel_change=True,
    )
    assert (
        conv.kernel_size == (7, 7)
        and conv.padding == (3, 3)
        and conv.weight.shape[-1] == 7
    )
    x = torch.randn(1, 64, 9, 9)
    assert conv(x).shape == x.shape
    with (
        torch.no_grad()
    ):  # per-(out, in) energy summed over taps = 2 / out, as for the base init
        energy = conv.weight.pow(2).sum((-1, -2)).mean().item()
    assert abs(energy / (2 / 64) - 1) < 0.1
    valid = expand(
        nn.Conv1d(2, 2, 3, padding="valid"),
        kernel_sizes=[3, 3],
        allow_kernel_change=True,
    )
    assert valid.padding == (1,) and valid(torch.randn(1, 2, 9)).shape == (1, 2, 7)
    with pytest.raises(ValueError, match="odd amount"):
        expand(
            nn.Conv2d(4, 4, 3, padding=1), kernel_sizes=[2, 1], allow_kernel_change=True
        )


def test_depth_one_reinitialises_plain_layer():
    torch.manual_seed(0)
    conv = nn.Conv2d(64, 64, 3)
    w0 = conv.weight.detach().clone()
    expand(conv, depth=1)
    assert not parametrize.is_parametrized(conv)
    assert not torch.equal(conv.weight, w0)
    assert abs(conv.weight.var().item() / (2 / 576) - 1) < 0.1


def test_layer_selection():
    model = tiny_cnn()
    expand(model, layers=["3"])
    assert list(expanded_layers(model)) == ["3"]
    model = expand(tiny_cnn(), layers=lambda name, m: isinstance(m, nn.Linear))
    assert list(expanded_layers(model)) == ["7"]
    with pytest.raises(ValueError, match=r"\['nope'\]"):
        expand(tiny_cnn(), layers=["nope"])
    with pytest.raises(ValueError, match="'1' \\(BatchNorm2d\\)"):
        expand(tiny_cnn(), layers=["1"])
    with pytest.raises(TypeError, match="layers"):
        expand(tiny_cnn(), layers="0")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(depth=0), "depth must be"),
        (dict(depth=2.0), "depth must be"),
        (dict(width=0), "width must be"),
        (dict(width=-1.0), "width must be"),
        (dict(width=float("nan")), "width must be"),
        (dict(init="xavier"), "init must be"),
        (dict(bias="some"), "bias must be"),
        (dict(depth=3, kernel_sizes=[3, 1]), "2 entries but depth=3"),
        (dict(kernel_sizes=[0, 3]), "not a valid 2-d kernel"),
        (dict(width=0.5, init="keep"), "init='keep' needs width"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        expand(tiny_cnn(), **kwargs)


def test_unsupported_modules_raise_with_their_name():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ConvTranspose2d(4, 4, 3))
    with pytest.raises(ValueError, match="'1' \\(ConvTranspose2d\\).*transposed"):
        expand(model)
    assert not expanded_layers(model)  # nothing touched when anything is refused
    expand(model, layers=["0"])
    with pytest.raises(
        ValueError, match="'0' \\(.*Conv2d\\) already has parametrizations"
    ):
        expand(model, layers=["0"])
    with pytest.raises(ValueError, match="groups=4"):
        expand(nn.Conv2d(8, 8, 3, groups=4), width=1.25)
    with pytest.raises(ValueError, match="lazy"):
        expand(nn.Sequential(nn.LazyLinear(3)))


def test_state_dict_roundtrip_of_expanded_model():
    torch.manual_seed(0)
    a = expand(tiny_cnn(), depth=3, width=2.0).eval()
    torch.manual_seed(1)
    b = expand(tiny_cnn(), depth=3, width=2.0).eval()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    assert not torch.allclose(a(x), b(x))
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b.load_state_dict(torch.load(buf))
    assert torch.equal(a(x), b(x))
    assert "0.parametrizations.weight.original2" in a.state_dict()
    # factors appear once among the parameters although the bias reads them too
    assert count_parameters(a) == sum(p.numel() for p in a.state_dict().values()) - sum(
        t.numel()
        for n, t in a.state_dict().items()
        if "running" in n or "num_batches" in n
    )


def test_keep_init_assignment_factorises_exactly():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=1, groups=2)
    w = conv.weight.detach().clone()
    expand(conv, depth=3, init="keep")
    close(conv.weight.detach(), w.to(conv.weight.dtype), tol=0)
    w2 = torch.randn_like(w)
    conv.weight = w2  # assignment goes through the exact factorisation
    torch.testing.assert_close(conv.weight.detach(), w2, rtol=0, atol=0)


def test_bf16_autocast_composes_in_float32_and_matches_collapsed():
    torch.manual_seed(0)
    model = expand(tiny_cnn(torch.float32), depth=4).eval()
    flat = collapse(model)
    x = torch.randn(2, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (
            model[3].weight.dtype == torch.float32
        )  # composite formed in the factors' dtype
        y = model(x)
        y_flat = flat(x)
    assert y.dtype == torch.bfloat16
    assert torch.equal(y, y_flat)  # same fp32 weights, cast once: bit-identical
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model.train()(x).float().sum().backward()
    ws, _ = factors(model[3])
    assert all(w.grad is not None and w.grad.dtype == torch.float32 for w in ws)


def test_channels_last():
    torch.manual_seed(0)
    model = expand(tiny_cnn(), depth=3).eval()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    y = model(x)
    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x_cl = x.to(memory_format=torch.channels_last)
    close(model_cl(x_cl), y)
    ws, _ = factors(model_cl[0])
    assert ws[0].is_contiguous(memory_format=torch.channels_last)
    model_cl.train()(x_cl).sum().backward()
    model_cl.eval()
    close(collapse(model_cl)(x_cl), model_cl(x_cl))


def test_torch_compile_aot_eager_matches_eager():
    """Dynamo traces through the parametrizations (aot_eager backend: no C++ compilation).

    The model is compiled in place (``nn.Module.compile``), so it stays the module that
    ``expanded_layers`` and ``collapse`` look into."""
    torch.manual_seed(0)
    model = expand(tiny_cnn(torch.float32), depth=3)
    x = torch.randn(2, 3, 8, 8)
    y = model(x)
    g = torch.autograd.grad(y.sum(), factors(model[3])[0])
    model.compile(backend="aot_eager")
    y_c = model(x)
    torch.testing.assert_close(y_c, y, rtol=1e-5, atol=1e-6)
    g_c = torch.autograd.grad(y_c.sum(), factors(model[3])[0])
    for a, b in zip(g, g_c):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert list(expanded_layers(model)) == ["0", "3", "7"]


@pytest.mark.slow  # inductor compiles C++ for about a minute on 2 CPU cores
def test_torch_compile_inductor_matches_eager():
    torch.manual_seed(0)
    model = expand(tiny_cnn(torch.float32), depth=3)
    compiled = torch.compile(model)
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-5)
    compiled(x).sum().backward()


def _ddp_worker(rank, world, path, init_file):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world
    )
    torch.manual_seed(0)
    model = expand(
        nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16, 3)
        ),
        depth=3,
    )
    ddp = DDP(model)
    x = torch.randn(4, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    ddp(x[2 * rank : 2 * rank + 2]).square().mean().backward()
    if rank == 0:
        torch.save({n: p.grad for n, p in model.named_parameters()}, path)
    dist.destroy_process_group()


@pytest.mark.distributed
def test_ddp_gloo_two_processes_average_factor_gradients():
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "grads.pt")
        mp.spawn(
            _ddp_worker, args=(2, path, os.path.join(tmp, "init")), nprocs=2, join=True
        )
        grads = torch.load(path)
    torch.manual_seed(0)
    model = expand(
        nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16, 3)
        ),
        depth=3,
    )
    x = torch.randn(4, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    model(x).square().mean().backward()
    assert set(grads) == {n for n, _ in model.named_parameters()}
    for n, p in model.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, rtol=1e-5, atol=1e-6)


def test_layer_costs_by_hand():
    model = expand(
        nn.Sequential(
            nn.Conv2d(4, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 64, 5)
        ),
        depth=3,
    )
    conv, lin = layer_costs(model, torch.zeros(1, 4, 8, 8))
    assert conv.params_expanded == 8 * 4 * 9 + 8 * 8 + 8 * 8 + 3 * 8
    assert conv.params_collapsed == 8 * 4 * 9 + 8
    assert conv.macs_sequential == 64 * (8 * 4 * 9 + 8 * 8 + 8 * 8)
    assert conv.macs_collapsed == 64 * 8 * 4 * 9
    assert conv.macs_compose == 8 * 8 * 8 + 8 * 8 * 4 * 9
    assert lin.macs_sequential == 5 * 512 + 25 + 25 and lin.macs_collapsed == 5 * 512
    assert lin.macs_compose == 5 * 5 * 5 + 5 * 5 * 512
    assert count_parameters(model) == conv.params_expanded + lin.params_expanded
    assert (
        count_parameters(collapse(model))
        == conv.params_collapsed + lin.params_collapsed
    )
    # strided layers: the sequential form runs its first sub-layers at full resolution
    (row,) = layer_costs(
        expand(nn.Conv2d(2, 2, 3, stride=2, padding=1)), torch.zeros(1, 2, 8, 8)
    )
    assert (
        row.macs_sequential == 64 * 2 * 2 * 9 + 16 * 4 and row.macs_collapsed == 16 * 36
    )


def test_factors_rejects_plain_layer():
    with pytest.raises(ValueError, match="not an expanded layer"):
        factors(nn.Linear(2, 2))
    assert math.isclose(count_parameters(nn.Linear(2, 3)), 9)


def test_tied_parameters_are_refused_naming_both_sides():
    encoder, decoder = nn.Linear(4, 4), nn.Linear(4, 4)
    decoder.weight = encoder.weight  # tied
    model = nn.Sequential(encoder, nn.ReLU(), decoder)
    with pytest.raises(
        ValueError, match=r"module '0' shares its weight with \['2.weight'\]"
    ):
        expand(model, depth=2)
    assert not expanded_layers(model) and model[2].weight is model[0].weight
    shared = nn.Linear(
        4, 4
    )  # one module used twice is not a tie between modules: allowed
    expand(nn.Sequential(shared, nn.ReLU(), shared), depth=2)
    assert parametrize.is_parametrized(shared)


def test_expand_is_all_or_nothing(monkeypatch):
    """A failure while expanding the second layer restores the first exactly."""
    torch.manual_seed(0)
    model = tiny_cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    weights = [model[0].weight, model[3].weight]
    real = parametrize.register_parametrization
    calls = []

    def failing(module, name, p, **kw):
        calls.append(name)
        if (
            len(calls) == 3
        ):  # layer '0' (no bias) and the weight of '3' are done; the bias of '3' fails
            raise RuntimeError("injected failure")
        return real(module, name, p, **kw)

    monkeypatch.setattr(parametrize, "register_parametrization", failing)
    with pytest.raises(RuntimeError, match="injected"):
        expand(model, depth=3)
    assert not expanded_layers(model)
    assert [type(m) for m in model.modules()] == [type(m) for m in tiny_cnn().modules()]
    assert model[0].weight is weights[0] and model[3].weight is weights[1]
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    monkeypatch.setattr(parametrize, "register_parametrization", real)
    expand(model, depth=3)  # and it can be expanded afterwards
    assert set(expanded_layers(model)) == {"0", "3", "7"}


def test_subclasses_are_refused_because_collapse_uses_the_constructors():
    class MyConv(nn.Conv2d):
        pass

    with pytest.raises(ValueError, match="subclasses are refused"):
        expand(nn.Sequential(MyConv(3, 4, 3)), depth=2)


def test_collapse_builds_layers_with_their_constructors_without_drawing_random_numbers():
    torch.manual_seed(0)
    model = expand(tiny_cnn(), depth=3)
    state = torch.get_rng_state()
    out = collapse(model)
    assert torch.equal(torch.get_rng_state(), state)
    for layer in (out[0], out[3], out[7]):
        assert type(layer) in (
            nn.Conv2d,
            nn.Linear,
        ) and not parametrize.is_parametrized(layer)
    single = expand(nn.Linear(3, 2), depth=2)
    plain = collapse(single, inplace=True)
    assert type(plain) is nn.Linear and torch.equal(
        plain.weight, single.weight.detach()
    )
