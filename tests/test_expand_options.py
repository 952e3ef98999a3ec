"""Tests of support.expand's options -- batch-norm between factors, linear residual blocks and
ExpandNets' expansion rate -- against an independent sequential reference, and of the fault
cases of expand/collapse (aliases, hooks, rollback, refusals).

The reference runs the sub-layers one after another with ``F.pad`` + ``F.conv{1,2}d`` /
``F.linear`` and ``F.batch_norm``, adding the (centre-cropped) block input after every
``residual`` factors; the library never calls it.
"""

import copy
import io
import os
import tempfile

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.nn.utils import parametrize

from support.costs import forward_macs, layer_costs
from support.expand import (
    SequentialExpansion,
    as_sequential,
    collapse,
    expand,
    expanded_layers,
    factors,
    unwrap,
)

pytestmark = pytest.mark.usefixtures("one_thread")
CONV = {1: F.conv1d, 2: F.conv2d}


def close(a, b, tol=1e-10):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def reference(x, ws, bs, *, nd, pad=0, mode="zeros", residual=None, norms=None):
    """Sub-layers one after another (eval-mode batch-norm from ``norms``: (mean, var, g, b))."""
    if nd:
        x = F.pad(x, [pad] * (2 * nd), mode="constant" if mode == "zeros" else mode)
    start = x
    for i, (w, b) in enumerate(zip(ws, bs)):
        x = CONV[nd](x, w, b) if nd else F.linear(x, w, b)
        if norms is not None:
            mean, var, g, beta = norms[i]
            x = F.batch_norm(x, mean, var, g, beta, training=False, eps=1e-5)
        if residual and (i + 1) % residual == 0:
            if nd:
                crop = (start.shape[-1] - x.shape[-1]) // 2
                idx = (Ellipsis,) + (slice(crop, start.shape[-1] - crop),) * nd
                start = start[(slice(None), slice(None)) + idx[1:]]
            x = x + start
            start = x
    return x


@st.composite
def option_configs(draw):
    nd = draw(st.sampled_from([0, 1, 2]))
    depth = draw(st.sampled_from([2, 3, 4]))
    residual = draw(st.sampled_from([None, 1, depth] + ([2] if depth == 4 else [])))
    c = draw(st.integers(1, 3))
    rate = None if residual else draw(st.sampled_from([None, 1.5, 2.0, 3.0]))
    k = draw(st.sampled_from([1, 3])) if nd else None
    return dict(
        nd=nd,
        depth=depth,
        residual=residual,
        rate=rate,
        cin=c,
        cout=c if residual else draw(st.integers(1, 3)),
        k=k,
        pad=draw(st.integers(0, 1)) if nd else 0,
        mode=draw(st.sampled_from(["zeros", "reflect", "circular"])) if nd else "zeros",
        batch_norm=draw(st.booleans()),
        seed=draw(st.integers(0, 2**16)),
    )


def build(cfg):
    torch.manual_seed(cfg["seed"])
    if cfg["nd"] == 0:
        return nn.Linear(cfg["cin"], cfg["cout"], dtype=torch.float64)
    cls = {1: nn.Conv1d, 2: nn.Conv2d}[cfg["nd"]]
    return cls(
        cfg["cin"],
        cfg["cout"],
        cfg["k"],
        padding=cfg["pad"],
        padding_mode=cfg["mode"],
        dtype=torch.float64,
    )


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(option_configs())
def test_options_match_the_sequential_reference_and_collapse_exactly(cfg):
    layer = expand(
        build(cfg),
        depth=cfg["depth"],
        expansion_rate=cfg["rate"],
        residual=cfg["residual"],
        batch_norm=cfg["batch_norm"],
    )
    g = torch.Generator().manual_seed(cfg["seed"] + 1)
    shape = (4, cfg["cin"]) + (5,) * cfg["nd"]
    x = torch.randn(shape, generator=g, dtype=torch.float64).requires_grad_()
    ws, bs = factors(layer)
    if cfg["rate"] is not None:  # ExpandNets: in -> r in -> r out -> ... -> out
        assert [w.shape[0] for w in ws[:-1]] == [int(cfg["rate"] * cfg["cin"])] + [
            int(cfg["rate"] * cfg["cout"])
        ] * (cfg["depth"] - 2)
    ref_ws = [w.detach().clone().requires_grad_() for w in ws]
    ref_bs = [b.detach().clone().requires_grad_() for b in bs]
    norms = None
    if cfg[
        "batch_norm"
    ]:  # give the running statistics non-trivial values, then evaluate
        assert isinstance(layer, SequentialExpansion)
        with torch.no_grad():
            for n in layer.norms:
                n.running_mean.uniform_(-1, 1, generator=g)
                n.running_var.uniform_(0.5, 2, generator=g)
                n.weight.uniform_(0.5, 2, generator=g)
                n.bias.uniform_(-1, 1, generator=g)
        layer.eval()
        norms = [
            (n.running_mean, n.running_var, n.weight.detach(), n.bias.detach())
            for n in layer.norms
        ]
    y = layer(x)
    x_ref = x.detach().clone().requires_grad_()
    y_ref = reference(
        x_ref,
        ref_ws,
        ref_bs,
        nd=cfg["nd"],
        pad=cfg["pad"],
        mode=cfg["mode"],
        residual=cfg["residual"],
        norms=norms,
    )
    close(y, y_ref)
    gy = torch.randn(y.shape, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad((y * gy).sum(), [x, *ws, *bs])
    grads_ref = torch.autograd.grad((y_ref * gy).sum(), [x_ref, *ref_ws, *ref_bs])
    for a, b in zip(grads, grads_ref):
        close(a, b)
    with torch.no_grad():
        close(as_sequential(layer)(x), y_ref)
        flat = collapse(layer)
        assert type(flat) is type(build(cfg))
        close(flat(x), y_ref)


def test_residual_trains_through_one_composite_weight_and_matches_identity_plus_product():
    torch.manual_seed(0)
    layer = expand(nn.Linear(6, 6, bias=False), depth=4, residual=2)
    assert parametrize.is_parametrized(layer)  # one matmul per forward, no sequence
    w = [f.detach() for f in factors(layer)[0]]
    eye = torch.eye(6)
    torch.testing.assert_close(
        layer.weight.detach(), (eye + w[3] @ w[2]) @ (eye + w[1] @ w[0])
    )
    conv = expand(nn.Conv2d(3, 3, 3, padding=1, bias=False), depth=2, residual=2)
    x = torch.randn(2, 3, 6, 6)
    w0, w1 = factors(conv)[0]
    torch.testing.assert_close(
        conv(x), x + F.conv2d(F.conv2d(x, w0, padding=1), w1), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize(
    "make, kwargs, match",
    [
        (lambda: nn.Linear(4, 6), dict(residual=2), "maps 4 to 6 channels"),
        (lambda: nn.Linear(4, 4), dict(depth=2, width=2.0, residual=1), "maps 4 to 8"),
        (lambda: nn.Linear(4, 4), dict(depth=3, residual=2), "must divide depth=3"),
        (lambda: nn.Conv2d(4, 4, 3, stride=2), dict(residual=2), "stride"),
        (lambda: nn.Conv2d(4, 4, 2), dict(residual=2), "even kernel"),
        (lambda: nn.Linear(4, 4), dict(depth=1, residual=1), "depth >= 2"),
        (lambda: nn.Linear(4, 4), dict(residual=2, init="keep"), "init='keep'"),
        (lambda: nn.Linear(4, 4), dict(batch_norm=True, init="keep"), "init='keep'"),
        (lambda: nn.Linear(4, 4), dict(width=2.0, expansion_rate=2), "not both"),
        (lambda: nn.Linear(4, 4), dict(expansion_rate=0.1), "expansion_rate 0.1"),
        (lambda: nn.Linear(4, 4), dict(residual=0), "residual must be >= 1"),
        (lambda: nn.Linear(4, 4), dict(width=1e9), "GiB"),
    ],
)
def test_impossible_collapses_and_bad_options_are_refused(make, kwargs, match):
    layer = make()
    before = copy.deepcopy(layer.state_dict())
    with pytest.raises(ValueError, match=match):
        expand(layer, **kwargs)
    assert not parametrize.is_parametrized(layer)
    for k, v in layer.state_dict().items():
        assert torch.equal(v, before[k])


def test_batch_norm_in_training_mode_is_refused_at_collapse_and_folds_in_eval():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 5), nn.ReLU(), nn.Linear(5, 3))
    expand(model, depth=3, batch_norm=True, residual=3, layers=["0"])
    model(torch.randn(16, 5))  # training step: running statistics move
    with pytest.raises(ValueError, match="batch-norm in training mode.*model.eval"):
        collapse(model)
    model.eval()
    x = torch.randn(7, 5)
    flat = collapse(model)
    assert type(flat[0]) is nn.Linear
    torch.testing.assert_close(flat(x), model(x), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match=r"\(batch, features\)"):
        model[0](torch.randn(2, 3, 5))
    # a layer without bias collapses to one with a bias: the batch-norms' shifts need it
    conv = expand(nn.Conv2d(2, 2, 3, bias=False), depth=2, batch_norm=True)
    conv(torch.randn(4, 2, 5, 5))
    conv.eval()
    flat = collapse(conv)
    assert flat.bias is not None and flat.kernel_size == (3, 3)
    x = torch.randn(1, 2, 5, 5)
    torch.testing.assert_close(flat(x), conv(x), rtol=1e-6, atol=1e-6)


def test_options_state_dict_round_trip():
    def make(seed):
        torch.manual_seed(seed)
        model = nn.Sequential(
            nn.Conv2d(3, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 4, 1)
        )
        expand(model, depth=2, residual=2, layers=["0"])
        return expand(model, depth=3, expansion_rate=2, batch_norm=True, layers=["2"])

    a, b = make(0), make(1)
    a(torch.randn(8, 3, 5, 5))
    a.eval(), b.eval()
    x = torch.randn(2, 3, 5, 5)
    assert not torch.allclose(a(x), b(x))
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b.load_state_dict(torch.load(buf))
    assert torch.equal(a(x), b(x))
    assert "2.norms.1.running_var" in a.state_dict()


def test_residual_initialisation_keeps_the_base_second_moment_official_does_not():
    """E|W x|^2 / |x|^2 of the collapsed layer: base Kaiming 2 (ReLU gain); ours the same with
    residual blocks; the official scheme (plain factors plus identities) grows with the blocks."""
    torch.manual_seed(0)
    n, draws = 64, 20
    ours, official = [], []
    for _ in range(draws):
        w = expand(nn.Linear(n, n, bias=False), depth=4, residual=2).weight.detach()
        ours.append(w.pow(2).sum().item() / n)
        plain = expand(nn.Linear(n, n, bias=False), depth=4)
        f = [t.detach() for t in factors(plain)[0]]
        eye = torch.eye(n)
        w_off = (eye + f[3] @ f[2]) @ (eye + f[1] @ f[0])
        official.append(w_off.pow(2).sum().item() / n)
    assert abs(np.mean(ours) / 2 - 1) < 0.1
    assert np.mean(official) > 5  # (1 + 1) * (1 + 2) = 6


# ------------------------------------------------------------------------------------------
# Faults of expand / collapse
# ------------------------------------------------------------------------------------------


def test_duplicate_layer_names_are_refused_before_anything_changes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="'0' and '0' are the same module"):
        expand(model, layers=["0", "0"])
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    shared = nn.Linear(3, 3)
    model = nn.Sequential()
    model.add_module("c", shared)
    model.add_module("d", shared)
    with pytest.raises(ValueError, match="'c' and 'd' are the same module"):
        expand(model, layers=["c", "d"])


def aliased():
    shared = nn.Conv1d(2, 2, 3, padding=1)
    model = nn.Sequential()
    model.add_module("c", shared)
    model.add_module("d", shared)
    return model


@pytest.mark.parametrize(
    "transform",
    [
        lambda m: collapse(expand(m, depth=2), inplace=True),
        lambda m: as_sequential(expand(m, depth=2)),
        lambda m: expand(m, kernel_sizes=[3, 3], allow_kernel_change=True),
        lambda m: collapse(expand(m, depth=2, batch_norm=True).eval(), inplace=True),
    ],
)
def test_every_name_of_a_module_registered_twice_is_replaced_together(transform):
    torch.manual_seed(0)
    out = transform(aliased())
    assert out.c is out.d
    params = list(out.parameters())
    torch.optim.SGD(params, lr=0.1).zero_grad()
    out(torch.randn(1, 2, 5)).sum().backward()
    assert out.c is out.d


def test_rollback_keeps_parameter_objects_and_order(monkeypatch):
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    order = [id(p) for p in model.parameters()]
    real = parametrize.register_parametrization
    calls = []

    def failing(module, name, p, **kw):
        calls.append(name)
        if len(calls) == 3:
            raise RuntimeError("injected failure")
        return real(module, name, p, **kw)

    monkeypatch.setattr(parametrize, "register_parametrization", failing)
    with pytest.raises(RuntimeError, match="injected"):
        expand(model, depth=2)
    assert [id(p) for p in model.parameters()] == order
    assert [n for n, _ in model.named_parameters()] == [
        "0.weight",
        "0.bias",
        "1.weight",
        "1.bias",
    ]


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_hook_based_norms_and_scripted_models_are_refused():
    with pytest.raises(ValueError, match="spectral_norm"):
        expand(nn.utils.spectral_norm(nn.Linear(3, 3)))
    with pytest.raises(ValueError, match="weight_norm"):
        expand(nn.Sequential(nn.utils.weight_norm(nn.Linear(3, 3))))
    with pytest.raises(TypeError, match="scripted or traced"):
        expand(torch.jit.script(nn.Sequential(nn.Linear(3, 3))))
    traced = torch.jit.trace(nn.Sequential(nn.Linear(3, 3)), torch.zeros(1, 3))
    with pytest.raises(TypeError, match="scripted or traced"):
        expand(traced)
    with pytest.raises(TypeError, match="scripted or traced"):
        collapse(traced)


def test_collapse_keeps_hooks_buffers_attributes_flags_and_order():
    torch.manual_seed(0)
    layer = nn.Linear(3, 2)
    layer.register_buffer("scale", torch.tensor(2.0))
    layer.note = "kept"
    seen = []
    layer.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    model = nn.Sequential(layer)
    expand(model, depth=3, bias="last")
    for w in factors(layer)[0]:
        w.requires_grad_(False)
    out = collapse(model)
    plain = out[0]
    assert type(plain) is nn.Linear and plain.note == "kept"
    assert torch.equal(plain.scale, torch.tensor(2.0))
    assert [n for n, _ in plain.named_parameters()] == ["weight", "bias"]
    assert not plain.weight.requires_grad and plain.bias.requires_grad
    out(torch.zeros(1, 3))
    assert seen == [torch.Size([1, 2])]
    # the input model is untouched and still works
    assert parametrize.is_parametrized(layer)
    model(torch.zeros(1, 3))


def test_numpy_scalars_are_accepted_where_python_numbers_are():
    torch.manual_seed(0)
    a = expand(nn.Linear(4, 4), depth=np.int64(3), width=np.float32(1.5))
    torch.manual_seed(0)
    b = expand(nn.Linear(4, 4), depth=3, width=1.5)
    for u, v in zip(factors(a)[0], factors(b)[0]):
        assert torch.equal(u, v)
    expand(
        nn.Linear(4, 4),
        depth=np.int64(2),
        residual=np.int64(2),
        negative_slope=np.float64(0.1),
    )
    expand(nn.Linear(4, 4), depth=3, expansion_rate=np.float32(2))


def test_unwrap_recognises_data_parallel_by_class_only():
    inner = nn.Linear(2, 2)
    holder = nn.Module()
    holder.module = inner  # an attribute called "module" is not a wrapper
    assert unwrap(holder) is holder
    assert unwrap(nn.DataParallel(inner)) is inner


def test_layer_costs_against_an_independent_count():
    """MACs of each form counted by FlopCounterMode on the test's own functional reference."""
    torch.manual_seed(0)
    model = expand(
        nn.Sequential(
            nn.Conv2d(4, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 64, 5)
        ),
        depth=3,
    )
    x = torch.zeros(1, 4, 8, 8)
    conv, lin = layer_costs(model, x)
    ws, bs = factors(model[0])
    assert conv.macs_sequential == forward_macs(
        lambda: reference(x, ws, bs, nd=2, pad=1)
    )
    assert conv.macs_sequential == 64 * (8 * 4 * 9 + 8 * 8 + 8 * 8)
    weight = model[0].weight.detach()
    assert conv.macs_collapsed == forward_macs(lambda: F.conv2d(x, weight, padding=1))
    assert conv.macs_compose == 8 * 8 * 8 + 8 * 8 * 4 * 9
    lw, lb = factors(model[2])
    h = torch.zeros(1, 512)
    assert lin.macs_sequential == forward_macs(lambda: reference(h, lw, lb, nd=0))
    assert lin.macs_collapsed == 5 * 512
    # a batch-norm expansion trains sequentially: no per-step composite
    bn = expand(nn.Linear(4, 4), depth=2, batch_norm=True)
    (row,) = layer_costs(bn, torch.zeros(2, 4))
    assert row.macs_compose == 0 and row.macs_sequential == 2 * (16 + 16)


def _ddp_worker(rank, world, path, init_file):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world
    )
    model = _options_model()
    ddp = DDP(model)
    x = torch.randn(4, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    ddp(x[2 * rank : 2 * rank + 2]).square().mean().backward()
    if rank == 0:
        torch.save({n: p.grad for n, p in model.named_parameters()}, path)
    dist.destroy_process_group()


def _options_model():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 3, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(3, 4, 1),
        nn.Flatten(),
        nn.Linear(4 * 16, 3),
    )
    expand(model, depth=2, residual=1, layers=["0"])
    expand(model, depth=3, expansion_rate=2, layers=["2"])
    return expand(model, depth=2, batch_norm=True, layers=["4"]).eval()


@pytest.mark.distributed
def test_ddp_gloo_two_processes_average_option_gradients():
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "grads.pt")
        mp.spawn(
            _ddp_worker, args=(2, path, os.path.join(tmp, "init")), nprocs=2, join=True
        )
        grads = torch.load(path)
    model = _options_model()
    x = torch.randn(4, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    model(x).square().mean().backward()
    assert set(grads) == {n for n, _ in model.named_parameters()}
    for n, p in model.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, rtol=1e-5, atol=1e-6)


def test_torch_compile_aot_eager_matches_eager_with_options():
    model = _options_model().train()
    x = torch.randn(4, 3, 4, 4)
    y = model(x)
    model.compile(backend="aot_eager")
    torch.testing.assert_close(model(x), y, rtol=1e-5, atol=1e-6)
    assert list(expanded_layers(model)) == ["0", "2", "4"]
