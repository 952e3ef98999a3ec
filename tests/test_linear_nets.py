"""Tests of support.linear_nets: problems, initialisations, batched training, every optimizer."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from support import linear_nets as ln
from support.rank import numerical_rank, spectral_entropy


pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- the problem

def test_problem_shapes_mask_count_and_scale():
    p = ln.make_problem(16, 3, 0.5, seeds=(0, 1, 2))
    assert p.target.shape == (3, 16, 16) and p.mask.shape == (3, 16, 16)
    assert p.mask.dtype == torch.bool
    assert [int(m.sum()) for m in p.mask] == [128, 128, 128] and p.n_observed == 128
    # mean squared entry 1: predicting zero costs exactly 1 on all entries
    assert torch.allclose((p.target ** 2).mean(dim=(-2, -1)), torch.ones(3, dtype=torch.float64))
    assert list(numerical_rank(p.target)) == [3, 3, 3]
    full = ln.make_problem(16, None, 0.5, seeds=(0,))
    assert int(numerical_rank(full.target)[0]) == 16


def test_rank8_target_entropy_matches_reference_value():
    # paper.md App. A: rank-8 Gaussian products on 32 x 32 have rho = 2.00 on average
    p = ln.make_problem(32, 8, 0.8, seeds=range(20))
    assert abs(float(spectral_entropy(p.target).mean()) - 2.00) < 0.05


def test_seeds_reproduce_and_do_not_depend_on_the_batch():
    a = ln.make_problem(8, 2, 0.5, seeds=(3, 5))
    b = ln.make_problem(8, 2, 0.5, seeds=(5,))
    assert torch.equal(a.target[1], b.target[0]) and torch.equal(a.mask[1], b.mask[0])
    assert not torch.equal(a.target[0], a.target[1])
    sel = a.select(1)
    assert sel.seeds == (5,) and torch.equal(sel.target, b.target)


@pytest.mark.parametrize("kwargs, error", [
    (dict(n=0), ValueError), (dict(n=4.5), TypeError), (dict(observed_fraction=0.0), ValueError),
    (dict(observed_fraction=1.5), ValueError), (dict(target_rank=40), ValueError),
    (dict(seeds=()), ValueError), (dict(seeds=(1, 1)), ValueError),
    (dict(observed_fraction=1e-6), ValueError),
])
def test_problem_rejects_bad_arguments(kwargs, error):
    args = dict(n=32, target_rank=8, observed_fraction=0.8, seeds=(0,))
    args.update(kwargs)
    with pytest.raises(error):
        ln.make_problem(**args)


def test_losses_against_direct_computation():
    p = ln.make_problem(6, 2, 0.5, seeds=(0, 1))
    w = torch.randn(2, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for s in range(2):
        diff = (w[s] - p.target[s]).numpy()
        mask = p.mask[s].numpy()
        assert math.isclose(float(ln.train_loss_of_map(w, p)[s]), (diff[mask] ** 2).mean(), rel_tol=1e-12)
        assert math.isclose(float(ln.test_loss_of_map(w, p)[s]), (diff ** 2).mean(), rel_tol=1e-12)
    zero = torch.zeros(2, 6, 6, dtype=torch.float64)
    assert torch.allclose(ln.test_loss_of_map(zero, p), torch.ones(2, dtype=torch.float64))


# ----------------------------------------------------------------------------- networks

@settings(max_examples=15, deadline=None)
@given(depth=st.integers(1, 5), n=st.integers(1, 6))
def test_end_to_end_is_the_product_in_order(depth, n):
    f = ln.init_factors(depth, n, seeds=(0, 1))
    assert f.shape == (2, depth, n, n)
    for s in range(2):
        expected = torch.eye(n, dtype=torch.float64)
        for i in range(depth):
            expected = f[s, i] @ expected
        assert torch.allclose(ln.end_to_end(f)[s], expected, atol=1e-12)


def test_normal_init_variance_and_scale():
    f = ln.init_factors(3, 64, seeds=range(4))
    assert abs(float(f.var()) * 64 - 1.0) < 0.05
    g = ln.init_factors(3, 64, seeds=range(4), init_scale=0.1)
    # every factor scaled by 0.1 ** (1/3): the end-to-end map exactly by 0.1
    assert torch.allclose(ln.end_to_end(g), 0.1 * ln.end_to_end(f), rtol=1e-10, atol=1e-14)


def test_lowrank_init_has_low_rank_and_comparable_norm():
    f = ln.init_factors(4, 32, seeds=range(3), init="lowrank", init_rank=4)
    assert (numerical_rank(f[:, 0]) == 4).all() and (numerical_rank(f[:, 1:].reshape(-1, 32, 32)) == 32).all()
    assert (numerical_rank(ln.end_to_end(f)) == 4).all()
    normal = ln.init_factors(4, 32, seeds=range(3))
    ratio = float(f[:, 0].pow(2).mean() / normal[:, 0].pow(2).mean())
    assert 0.6 < ratio < 1.5


@pytest.mark.parametrize("kwargs, error", [
    (dict(depth=0), ValueError), (dict(init="orthogonal"), ValueError),
    (dict(init="lowrank", init_rank=40), ValueError), (dict(init_scale=0.0), ValueError),
])
def test_init_rejects_bad_arguments(kwargs, error):
    args = dict(depth=2, n=8, seeds=(0,))
    args.update(kwargs)
    with pytest.raises(error):
        ln.init_factors(**args)


def test_end_to_end_rejects_bad_shape():
    with pytest.raises(ValueError):
        ln.end_to_end(torch.zeros(2, 3, 4))


# ----------------------------------------------------------------------------- training

def test_depth_one_gradient_descent_fits_observed_and_keeps_unobserved_entries():
    # Closed form: the gradient of the observed-entry loss is zero on unobserved entries, so
    # plain GD at depth 1 changes only observed entries, and converges to the target there.
    p = ln.make_problem(8, 2, 0.6, seeds=(0, 1))
    r = ln.train(p, 1, "sgd", steps=300, record_every=100)
    mask = p.mask
    assert torch.allclose(r.final_map[~mask], r.initial_map[~mask], atol=0)
    assert torch.allclose(r.final_map[mask], p.target[mask], atol=1e-8)
    assert r.train_loss[-1].max() < 1e-15


def test_seeds_train_independently_in_a_batch():
    both = ln.train(ln.make_problem(8, 2, 0.6, seeds=(0, 1)), 3, "adam", steps=200, record_every=100)
    alone = ln.train(ln.make_problem(8, 2, 0.6, seeds=(1,)), 3, "adam", steps=200, record_every=100)
    assert torch.allclose(both.final_map[1], alone.final_map[0], atol=1e-10)
    again = ln.train(ln.make_problem(8, 2, 0.6, seeds=(0, 1)), 3, "adam", steps=200, record_every=100)
    assert torch.equal(both.final_map, again.final_map)


@pytest.mark.parametrize("method", ln.OPTIMIZERS)
def test_every_optimizer_runs_and_lowers_the_training_loss(method):
    p = ln.make_problem(8, 2, 0.6, seeds=(0, 1))
    steps = 400 if method in ln.GRADIENT_FREE_OPTIMIZERS else 100
    r = ln.train(p, 2, method, steps=steps, record_every=steps // 4, popsize=8)
    assert r.method == method and r.depth == 2
    assert r.train_loss.shape == r.test_loss.shape == r.rho.shape == (len(r.steps), 2)
    assert r.steps[0] == 0 and r.steps[-1] == steps
    assert r.final_map.shape == (2, 8, 8)
    assert (r.train_loss[-1] < 0.8 * r.train_loss[0]).all()
    # rho in the history is the rho of the recorded maps
    assert np.allclose(r.rho[0], spectral_entropy(r.initial_map).numpy())
    assert np.allclose(r.rho[-1], spectral_entropy(r.final_map).numpy())


def test_random_search_only_accepts_improvements():
    p = ln.make_problem(8, 2, 0.6, seeds=(0, 1, 2))
    r = ln.train(p, 2, "random_search", steps=300, record_every=10)
    assert (np.diff(r.train_loss, axis=0) <= 0).all()


def test_curvature_lr_decreases_with_depth_and_keeps_gd_stable():
    p = ln.make_problem(16, 4, 0.8, seeds=(0, 1))
    lrs = [ln.curvature_lr(p, d) for d in (1, 2, 4, 8)]
    assert all(a > b > 0 for a, b in zip(lrs, lrs[1:]))
    assert math.isclose(lrs[0], 0.5 * p.n_observed / 2.0)
    r = ln.train(p, 3, "sgd", steps=300, record_every=100)
    assert np.isfinite(r.train_loss).all() and r.train_loss[-1].max() < 1e-2


@pytest.mark.parametrize("kwargs, error", [
    (dict(method="rmsprop"), ValueError), (dict(depth=0), ValueError), (dict(steps=0), ValueError),
    (dict(lr=-1.0), ValueError), (dict(method="cma", sigma0=0.0), ValueError),
    (dict(record_every=0), ValueError), (dict(steps=2.5), TypeError),
])
def test_train_rejects_bad_arguments(kwargs, error):
    args = dict(depth=2, method="adam", steps=10)
    args.update(kwargs)
    p = ln.make_problem(4, 2, 0.5, seeds=(0,))
    with pytest.raises(error):
        ln.train(p, **args)


def test_sweep_settings_and_tiny_sweeps():
    with pytest.raises(ValueError):
        ln.sweep_settings("huge")
    s = {**ln.sweep_settings("quick"), "n": 8, "target_rank": 2, "depths": (1, 2), "seeds": (0, 1),
         "optimizer_depths": (1,), "gradient_steps": 30, "lbfgs_iterations": 10,
         "gradient_free_evaluations": 60, "cma_popsize": 6}
    out = ln.depth_sweep(s, "normal", "fullrank")
    assert out["rho_final"].shape == (2, 2) and out["history_rho"].shape[::2] == (2, 2)
    assert np.allclose(out["target_rho"], spectral_entropy(ln.make_problem(8, None, 0.8, (0, 1)).target).numpy())
    with pytest.raises(ValueError):
        ln.depth_sweep(s, "normal", "midrank")
    opt = ln.optimizer_sweep(s)
    assert set(opt) == set(ln.OPTIMIZERS)
    assert all(v["rho_final"].shape == (1, 2) for v in opt.values())
