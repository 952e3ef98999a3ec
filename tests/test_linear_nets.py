"""Tests of support.linear_nets: both problems, initialisations, batched training, every optimizer."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from support import linear_nets as ln
from support import linear_training as lt
from support.rank import numerical_rank, spectral_entropy

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- the problem


def test_problem_shapes_mask_count_and_scale():
    p = ln.make_completion_problem(16, 3, 0.5, seeds=(0, 1, 2))
    assert p.target.shape == (3, 16, 16) and p.mask.shape == (3, 16, 16)
    assert p.mask.dtype == torch.bool
    assert [int(m.sum()) for m in p.mask] == [128, 128, 128] and p.n_observed == 128
    # mean squared entry 1: predicting zero costs exactly 1 on all entries
    assert torch.allclose(
        (p.target**2).mean(dim=(-2, -1)), torch.ones(3, dtype=torch.float64)
    )
    assert list(numerical_rank(p.target)) == [3, 3, 3]
    full = ln.make_completion_problem(16, None, 0.5, seeds=(0,))
    assert int(numerical_rank(full.target)[0]) == 16


def test_rank8_target_entropy_matches_reference_value():
    # paper.md App. A: rank-8 Gaussian products on 32 x 32 have rho = 2.00 on average
    p = ln.make_completion_problem(32, 8, 0.8, seeds=range(20))
    assert abs(float(spectral_entropy(p.target).mean()) - 2.00) < 0.05


def test_seeds_reproduce_and_do_not_depend_on_the_batch():
    a = ln.make_completion_problem(8, 2, 0.5, seeds=(3, 5))
    b = ln.make_completion_problem(8, 2, 0.5, seeds=(5,))
    assert torch.equal(a.target[1], b.target[0]) and torch.equal(a.mask[1], b.mask[0])
    assert not torch.equal(a.target[0], a.target[1])
    sel = a.select(1)
    assert sel.seeds == (5,) and torch.equal(sel.target, b.target)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(n=0), ValueError, "n must be >= 1"),
        (dict(n=4.5), TypeError, "n must be an integer"),
        (
            dict(observed_fraction=0.0),
            ValueError,
            "observed_fraction must lie in",
        ),
        (
            dict(observed_fraction=1.5),
            ValueError,
            "observed_fraction must lie in",
        ),
        (dict(target_rank=40), ValueError, "target_rank must be <= n = 32"),
        (dict(seeds=()), ValueError, "seeds must name at least one seed"),
        (dict(seeds=(1, 1)), ValueError, "seeds must be distinct"),
        (
            dict(observed_fraction=1e-06),
            ValueError,
            "observed_fraction=1e\\-06 observes no entry of ",
        ),
    ],
)
def test_problem_rejects_bad_arguments(kwargs, error, message):
    args = dict(n=32, target_rank=8, observed_fraction=0.8, seeds=(0,))
    args.update(kwargs)
    with pytest.raises(error, match=message):
        ln.make_completion_problem(**args)


def test_losses_against_direct_computation():
    p = ln.make_completion_problem(6, 2, 0.5, seeds=(0, 1))
    w = torch.randn(
        2, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    for s in range(2):
        diff = (w[s] - p.target[s]).numpy()
        mask = p.mask[s].numpy()
        assert math.isclose(
            float(p.train_loss(w)[s]), (diff[mask] ** 2).mean(), rel_tol=1e-12
        )
        assert math.isclose(float(p.test_loss(w)[s]), (diff**2).mean(), rel_tol=1e-12)
    zero = torch.zeros(2, 6, 6, dtype=torch.float64)
    assert torch.allclose(p.test_loss(zero), torch.ones(2, dtype=torch.float64))


def test_regression_problem_shapes_scale_and_losses():
    p = ln.make_regression_problem(8, 2, 5, target_scale=2.0, seeds=(0, 1, 2))
    assert (
        p.target.shape == (3, 8, 8)
        and p.inputs.shape == (3, 8, 5)
        and p.n_observed == 5
    )
    # ||W*||_F^2 = n target_scale^2: root mean square output 2 on a standard Gaussian input
    assert torch.allclose(
        (p.target**2).sum(dim=(-2, -1)), torch.full((3,), 8 * 4.0, dtype=torch.float64)
    )
    assert list(numerical_rank(p.target)) == [2, 2, 2]
    w = torch.randn(
        3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
    for s in range(3):
        x, t = p.inputs[s].numpy(), p.target[s].numpy()
        diff = w[s].numpy() - t
        expected = ((diff @ x) ** 2).sum() / ((t @ x) ** 2).sum()
        assert math.isclose(float(p.train_loss(w)[s]), expected, rel_tol=1e-12)
        assert math.isclose(
            float(p.test_loss(w)[s]), (diff**2).sum() / (t**2).sum(), rel_tol=1e-12
        )
    zero = torch.zeros(3, 8, 8, dtype=torch.float64)
    assert torch.allclose(p.train_loss(zero), torch.ones(3, dtype=torch.float64))
    assert torch.allclose(p.test_loss(zero), torch.ones(3, dtype=torch.float64))


def test_regression_seeds_do_not_depend_on_the_batch():
    a = ln.make_regression_problem(8, 2, 5, seeds=(3, 5))
    b = ln.make_regression_problem(8, 2, 5, seeds=(5,))
    assert torch.equal(a.target[1], b.target[0]) and torch.equal(
        a.inputs[1], b.inputs[0]
    )
    sel = a.select(1)
    assert sel.seeds == (5,) and torch.equal(sel.inputs, b.inputs)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            dict(n_samples=32),
            ValueError,
            "n_samples must be < n = 32 for an under\\-deter",
        ),
        (dict(n_samples=0), ValueError, "n_samples must be >= 1"),
        (dict(target_scale=0.0), ValueError, "target_scale must be positive"),
        (dict(target_rank=40), ValueError, "target_rank must be <= n = 32"),
        (dict(seeds=()), ValueError, "seeds must name at least one seed"),
        (dict(n_samples=2.5), TypeError, "n_samples must be an integer"),
    ],
)
def test_regression_problem_rejects_bad_arguments(kwargs, error, message):
    args = dict(n=32, target_rank=8, n_samples=24, seeds=(0,))
    args.update(kwargs)
    with pytest.raises(error, match=message):
        ln.make_regression_problem(**args)


def test_unobserved_parts_split_the_component_outside_the_input_span():
    p = ln.make_regression_problem(8, 2, 5, seeds=(0, 1))
    w = torch.randn(
        2, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2)
    )
    inside, outside = ln.unobserved_parts(p, w)
    b = p.unobserved_part(w)
    assert torch.allclose(
        b @ p.inputs, torch.zeros(2, 8, 5, dtype=torch.float64), atol=1e-12
    )
    total = (b**2).sum(dim=(-2, -1)) / (p.target**2).sum(dim=(-2, -1))
    assert (
        torch.allclose(inside + outside, total)
        and (outside > 0).all()
        and (inside > 0).all()
    )
    # a map with columns in the target's column space has nothing outside it
    _, none_outside = ln.unobserved_parts(p, p.target @ w)
    assert torch.allclose(none_outside, torch.zeros(2, dtype=torch.float64), atol=1e-20)
    full = ln.make_regression_problem(8, None, 5, seeds=(0,))
    assert float(ln.unobserved_parts(full, w[:1])[1]) == 0.0


def test_unobserved_image_share_is_one_at_depth_one_and_falls_with_rank():
    p = ln.make_regression_problem(8, 2, 5, seeds=(0, 1))
    eye = torch.eye(8, dtype=torch.float64).expand(2, 8, 8)
    assert torch.allclose(
        ln.unobserved_image_share(eye, p.inputs), torch.ones(2, dtype=torch.float64)
    )
    gen = torch.Generator().manual_seed(3)
    q = torch.linalg.qr(torch.randn(2, 8, 8, dtype=torch.float64, generator=gen))[0]
    assert torch.allclose(
        ln.unobserved_image_share(q, p.inputs), torch.ones(2, dtype=torch.float64)
    )
    # a rank-one lower product maps data and unobserved directions onto the same line
    u = torch.randn(
        2, 8, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(4)
    )
    rank_one = u @ u.transpose(-1, -2)
    assert (ln.unobserved_image_share(rank_one, p.inputs) < 1e-20).all()
    gaussian = ln.end_to_end(ln.init_factors(3, 8, seeds=(0, 1)))
    share = ln.unobserved_image_share(gaussian, p.inputs)
    assert ((share > 0) & (share < 1)).all()
    with pytest.raises(ValueError, match="lower must be"):
        ln.unobserved_image_share(eye, p.inputs.transpose(-1, -2))


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
    assert torch.allclose(
        ln.end_to_end(g), 0.1 * ln.end_to_end(f), rtol=1e-10, atol=1e-14
    )


def test_lowrank_init_has_low_rank_and_comparable_norm():
    f = ln.init_factors(4, 32, seeds=range(3), init="lowrank", init_rank=4)
    assert (numerical_rank(f[:, 0]) == 4).all() and (
        numerical_rank(f[:, 1:].reshape(-1, 32, 32)) == 32
    ).all()
    assert (numerical_rank(ln.end_to_end(f)) == 4).all()
    normal = ln.init_factors(4, 32, seeds=range(3))
    ratio = float(f[:, 0].pow(2).mean() / normal[:, 0].pow(2).mean())
    assert 0.6 < ratio < 1.5


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(depth=0), ValueError, "depth must be >= 1"),
        (dict(init="orthogonal"), ValueError, "init must be one of"),
        (
            dict(init="lowrank", init_rank=40),
            ValueError,
            "init_rank must be <= n = 8",
        ),
        (dict(init_scale=0.0), ValueError, "init_scale must be positive"),
    ],
)
def test_init_rejects_bad_arguments(kwargs, error, message):
    args = dict(depth=2, n=8, seeds=(0,))
    args.update(kwargs)
    with pytest.raises(error, match=message):
        ln.init_factors(**args)


def test_end_to_end_rejects_bad_shape():
    with pytest.raises(ValueError, match="factors must have shape"):
        ln.end_to_end(torch.zeros(2, 3, 4))


# ----------------------------------------------------------------------------- training


def test_depth_one_gradient_descent_fits_observed_and_keeps_unobserved_entries():
    # Closed form: the gradient of the observed-entry loss is zero on unobserved entries, so
    # plain GD at depth 1 changes only observed entries, and converges to the target there.
    p = ln.make_completion_problem(8, 2, 0.6, seeds=(0, 1))
    r = lt.train_linear_network(p, 1, "sgd", steps=300, record_every=100)
    mask = p.mask
    assert torch.allclose(r.final_map[~mask], r.initial_map[~mask], atol=0)
    assert torch.allclose(r.final_map[mask], p.target[mask], atol=1e-8)
    assert r.train_loss[-1].max() < 1e-15


def test_depth_one_gradient_descent_reaches_the_regression_closed_form():
    p = ln.make_regression_problem(8, 2, 5, seeds=(0, 1))
    r = lt.train_linear_network(
        p, 1, "sgd", eta=1.0, lr_schedule="constant", steps=600, record_every=300
    )
    assert torch.allclose(
        p.unobserved_part(r.final_map), p.unobserved_part(r.initial_map), atol=1e-12
    )
    assert torch.allclose(r.final_map, p.depth_one_limit(r.initial_map), atol=1e-8)
    assert torch.allclose(r.final_map @ p.inputs, p.target @ p.inputs, atol=1e-8)


def test_gradient_flow_keeps_the_first_factor_and_shrinks_the_last_outside_the_target():
    # the chapter's proposition: W_1 (I - P) never changes; Q W_d never grows (Q: outside range(W*))
    p = ln.make_regression_problem(6, 2, 4, seeds=(0,))
    f = ln.init_factors(3, 6, seeds=(0,)).requires_grad_(True)
    first_unobserved = p.unobserved_part(f[:, 0]).detach().clone()
    u = torch.linalg.svd(p.target[0])[0][:, :2]
    q = torch.eye(6, dtype=torch.float64) - u @ u.T
    lr = 0.5 / float(ln.gauss_newton_top(p, f)[0][0])
    norms = []
    for _ in range(300):
        norms.append(float(torch.linalg.matrix_norm(q @ f[0, -1].detach(), ord=2)))
        (grad,) = torch.autograd.grad(p.train_loss(ln.end_to_end(f)).sum(), f)
        with torch.no_grad():
            f -= lr * grad
    assert torch.allclose(
        p.unobserved_part(f[:, 0]).detach(), first_unobserved, atol=1e-12
    )
    assert (
        all(b <= a + 1e-12 for a, b in zip(norms, norms[1:])) and norms[-1] < norms[0]
    )


def test_seeds_train_independently_in_a_batch():
    def run(seeds):
        problem = ln.make_completion_problem(8, 2, 0.6, seeds=seeds)
        return lt.train_linear_network(problem, 3, "adam", steps=200, record_every=100)

    both, alone, again = run((0, 1)), run((1,)), run((0, 1))
    assert torch.allclose(both.final_map[1], alone.final_map[0], atol=1e-10)
    assert torch.equal(both.final_map, again.final_map)


@pytest.mark.parametrize("method", ["sgd", "nesterov"])
def test_per_seed_step_sizes_make_gradient_descent_independent_of_the_batch(method):
    # the curvature, hence the step, differs per seed; a seed must train the same alone or in a batch
    both_p = ln.make_regression_problem(8, 2, 5, seeds=(0, 1))
    alone_p = ln.make_regression_problem(8, 2, 5, seeds=(1,))
    top, _ = ln.gauss_newton_top(both_p, ln.init_factors(3, 8, both_p.seeds))
    assert top[0] != top[1]
    both = lt.train_linear_network(
        both_p, 3, method, steps=200, record_every=100, probe_every=50
    )
    alone = lt.train_linear_network(
        alone_p, 3, method, steps=200, record_every=100, probe_every=50
    )
    assert torch.allclose(both.final_map[1], alone.final_map[0], atol=1e-12)
    fixed = lt.train_linear_network(
        both_p, 3, method, steps=50, record_every=50, lr=[0.01, 0.02]
    )
    fixed_alone = lt.train_linear_network(
        alone_p, 3, method, steps=50, record_every=50, lr=0.02
    )
    assert torch.allclose(fixed.final_map[1], fixed_alone.final_map[0], atol=1e-12)


@pytest.mark.parametrize("method", lt.OPTIMIZERS)
def test_every_optimizer_runs_and_lowers_the_training_loss(method):
    p = ln.make_completion_problem(8, 2, 0.6, seeds=(0, 1))
    steps = 400 if method in lt.GRADIENT_FREE_OPTIMIZERS else 100
    r = lt.train_linear_network(
        p, 2, method, steps=steps, record_every=steps // 4, popsize=8
    )
    assert r.method == method and r.depth == 2
    assert r.train_loss.shape == r.test_loss.shape == r.rho.shape == (len(r.steps), 2)
    assert r.steps[0] == 0 and r.steps[-1] == steps
    assert r.final_map.shape == (2, 8, 8)
    assert (r.train_loss[-1] < 0.8 * r.train_loss[0]).all()
    # rho in the history is the rho of the recorded maps
    assert np.allclose(r.rho[0], spectral_entropy(r.initial_map).numpy())
    assert np.allclose(r.rho[-1], spectral_entropy(r.final_map).numpy())


def test_random_search_only_accepts_improvements():
    p = ln.make_completion_problem(8, 2, 0.6, seeds=(0, 1, 2))
    r = lt.train_linear_network(p, 2, "random_search", steps=300, record_every=10)
    assert (np.diff(r.train_loss, axis=0) <= 0).all()


@pytest.mark.parametrize(
    "make",
    [
        lambda: ln.make_regression_problem(4, 2, 3, seeds=(0, 1)),
        lambda: ln.make_completion_problem(4, 2, 0.6, seeds=(0, 1)),
    ],
)
def test_gauss_newton_top_is_the_largest_eigenvalue_of_j_transpose_h_j(make):
    p = make()
    f = ln.init_factors(2, 4, seeds=(0, 1))
    top, _ = ln.gauss_newton_top(p, f, iterations=300)
    for s in range(2):
        sub = p.select(s)
        jac = torch.autograd.functional.jacobian(
            lambda v: ln.end_to_end(v.reshape(1, 2, 4, 4)).reshape(-1), f[s].reshape(-1)
        )
        hess = torch.autograd.functional.hessian(
            lambda m, sub=sub: sub.train_loss(m.reshape(1, 4, 4)).sum(),
            torch.zeros(16, dtype=torch.float64),
        )
        expected = float(torch.linalg.eigvalsh(jac.T @ hess @ jac)[-1])
        assert math.isclose(float(top[s]), expected, rel_tol=1e-6)


def test_curvature_steps_keep_gradient_descent_stable_from_a_sharp_start():
    # a deep random start is far more curved than the solution; a step set by the curvature at
    # the solution alone diverges on such seeds, the re-measured one does not
    p = ln.make_regression_problem(16, None, 12, seeds=(0, 1, 2))
    r = lt.train_linear_network(
        p, 8, "sgd", eta=1.0, lr_schedule="constant", steps=300, record_every=50
    )
    assert (
        np.isfinite(r.train_loss).all()
        and (r.train_loss[-1] < 0.5 * r.train_loss[0]).all()
    )
    assert r.hyper["eta"] == 1.0 and r.hyper["probe_every"] == 100


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(method="rmsprop"), ValueError, "method must be one of"),
        (dict(depth=0), ValueError, "depth must be >= 1"),
        (dict(steps=0), ValueError, "steps must be >= 1"),
        (
            dict(lr=-1.0),
            ValueError,
            "lr must be positive: one value, or one per se",
        ),
        (dict(method="cma", sigma0=0.0), ValueError, "sigma0 must be > 0"),
        (dict(record_every=0), ValueError, "record_every must be >= 1"),
        (dict(steps=2.5), TypeError, "steps must be an integer"),
        (dict(lr_schedule="step"), ValueError, "lr_schedule must be one of"),
        (
            dict(lr=[0.1, 0.2]),
            ValueError,
            "lr must be positive: one value, or one per se",
        ),
        (
            dict(method="lbfgs", lr=[0.1]),
            ValueError,
            "lbfgs takes a single learning rate, not one p",
        ),
        (dict(method="sgd", eta=0.0), ValueError, "eta must be > 0"),
        (dict(probe_every=0), ValueError, "probe_every must be >= 1"),
    ],
)
def test_train_rejects_bad_arguments(kwargs, error, message):
    args = dict(depth=2, method="adam", steps=10)
    args.update(kwargs)
    p = ln.make_completion_problem(4, 2, 0.5, seeds=(0,))
    with pytest.raises(error, match=message):
        lt.train_linear_network(p, **args)


def test_adam_refuses_different_step_sizes_per_seed():
    p = ln.make_completion_problem(4, 2, 0.5, seeds=(0, 1))
    with pytest.raises(ValueError, match="single learning rate"):
        lt.train_linear_network(p, 2, "adam", steps=10, lr=[0.1, 0.2])
