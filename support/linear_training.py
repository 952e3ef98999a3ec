"""Training deep linear networks (:mod:`support.linear_nets`) by six optimizers: plain and
Nesterov gradient descent, Adam, L-BFGS, CMA-ES and random search.

The chapter *Depth and the solutions gradient descent finds* (``book/deep_linear_training.ipynb``)
explains and uses it; :func:`train_linear_network` is the entry point and records the train and
test losses and rho of the end-to-end map over training (:class:`TrainResult`). Seeds train
as one batch where the optimizer acts elementwise and one seed at a time otherwise (see
:mod:`support.linear_nets`, *Batched over seeds*); gradient descent takes its step from the
curvature (:func:`support.linear_nets.gauss_newton_top`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from support import seeding
from support.checks import check_choice, check_int, check_real
from support.linear_nets import (
    DTYPE,
    Problem,
    end_to_end,
    gauss_newton_top,
    init_factors,
)
from support.rank import spectral_entropy

GRADIENT_OPTIMIZERS = ("sgd", "nesterov", "adam", "lbfgs")
GRADIENT_FREE_OPTIMIZERS = ("cma", "random_search")
OPTIMIZERS = GRADIENT_OPTIMIZERS + GRADIENT_FREE_OPTIMIZERS
LR_SCHEDULES = ("cosine", "constant")


@dataclass
class TrainResult:
    """What a training run leaves: histories ``(T, S)`` at ``steps`` (for gradient-free methods
    the step counts loss evaluations per seed), the initial and final end-to-end maps ``(S, n, n)``."""

    method: str
    depth: int
    steps: np.ndarray
    train_loss: np.ndarray
    test_loss: np.ndarray
    rho: np.ndarray
    initial_map: torch.Tensor
    final_map: torch.Tensor
    hyper: dict = field(default_factory=dict)

    @property
    def rho_init(self) -> np.ndarray:
        return self.rho[0]

    @property
    def rho_final(self) -> np.ndarray:
        return self.rho[-1]


def _snapshot(w: torch.Tensor, problem: Problem):
    w = w.detach()
    return (
        problem.train_loss(w).numpy(),
        problem.test_loss(w).numpy(),
        np.asarray(spectral_entropy(w)),
    )


def _merge_per_seed(per_seed) -> list:
    """Records of one-seed runs (lists of ``(step, train, test, rho)``) as batched records,
    truncated to the shortest run."""
    length = min(len(r) for r in per_seed)
    return [
        (per_seed[0][k][0],)
        + tuple(np.concatenate([r[k][j] for r in per_seed]) for j in (1, 2, 3))
        for k in range(length)
    ]


def _finish(method, depth, records, w0, w1, hyper) -> TrainResult:
    steps = np.array([r[0] for r in records])
    return TrainResult(
        method,
        depth,
        steps,
        np.stack([r[1] for r in records]),
        np.stack([r[2] for r in records]),
        np.stack([r[3] for r in records]),
        w0.detach().clone(),
        w1.detach().clone(),
        hyper,
    )


DEFAULT_LR = {"adam": 3e-3, "lbfgs": 1.0}


def _cosine(t: int, steps: int) -> float:
    """Cosine decay from 1 at step 0 to 0 at ``steps`` (as ``torch.optim.lr_scheduler.CosineAnnealingLR``)."""
    return 0.5 * (1.0 + math.cos(math.pi * t / steps))


def _train_gradient_descent(
    problem, factors, nesterov, lr, eta, steps, record_every, lr_schedule, probe_every
):
    """Full-batch gradient descent, plain or with Nesterov momentum 0.9 (PyTorch's formulation),
    with one step size per seed, so that a seed trains the same alone or in a batch.

    With ``lr`` None the step of each seed is ``eta`` over its largest Gauss-Newton curvature
    (:func:`gauss_newton_top`), re-measured every ``probe_every`` steps and whenever the seed's
    loss rises; a rise also restarts its momentum (function-value restart). A random start can be
    far more curved than the solution, and the curvature grows as the factors grow, so a step set
    once would either diverge or crawl. ``lr_schedule`` "cosine" decays the steps to zero over
    ``steps``.
    """
    S = factors.shape[0]
    w = factors.clone()
    velocity = torch.zeros_like(w)
    step, probe, previous = None, None, None
    if lr is not None:
        step = torch.as_tensor(
            np.broadcast_to(np.asarray(lr, dtype=np.float64), (S,)).copy()
        )
    records = []
    for t in range(steps + 1):
        if t % record_every == 0 or t == steps:
            records.append((t, *_snapshot(end_to_end(w), problem)))
        if t == steps:
            break
        w.requires_grad_(True)
        loss = problem.train_loss(end_to_end(w))
        (grad,) = torch.autograd.grad(loss.sum(), w)
        w, loss = w.detach(), loss.detach()
        if lr is None:
            rose = (
                torch.zeros(S, dtype=torch.bool)
                if previous is None
                else loss > previous
            )
            refresh = torch.ones(S, dtype=torch.bool) if t % probe_every == 0 else rose
            if refresh.any():
                top, vector = gauss_newton_top(
                    problem, w, iterations=50 if probe is None else 5, start=probe
                )
                step = (
                    torch.where(refresh, eta / top, step)
                    if step is not None
                    else eta / top
                )
                probe = (
                    vector
                    if probe is None
                    else torch.where(refresh[:, None, None, None], vector, probe)
                )
            velocity[rose] = 0.0
            previous = loss
        if nesterov:
            velocity = 0.9 * velocity + grad
            grad = grad + 0.9 * velocity
        scale = _cosine(t, steps) if lr_schedule == "cosine" else 1.0
        w = w - (scale * step)[:, None, None, None] * grad
    return w, records


def _train_adam(problem, factors, lr, steps, record_every, lr_schedule):
    """Full-batch Adam at a constant step or with a cosine decay to zero over ``steps`` (the decay
    lets Adam settle instead of oscillating at the end of the budget). Adam acts elementwise, so
    the seeds train independently."""
    w = factors.clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr)
    sched = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        if lr_schedule == "cosine"
        else None
    )
    records = []
    for t in range(steps + 1):
        if t % record_every == 0 or t == steps:
            records.append((t, *_snapshot(end_to_end(w), problem)))
        if t == steps:
            break
        opt.zero_grad(set_to_none=True)
        # SUM over seeds: each seed's factors get exactly their own gradient.
        problem.train_loss(end_to_end(w)).sum().backward()
        opt.step()
        if sched is not None:
            sched.step()
    return w, records


def _train_lbfgs(problem, factors, lr, steps, record_every):
    """L-BFGS one seed at a time (its line search would otherwise couple the seeds)."""
    finals, per_seed = [], []
    for i in range(factors.shape[0]):
        sub = problem.select(i)
        w = factors[i : i + 1].clone().requires_grad_(True)
        opt = torch.optim.LBFGS(
            [w],
            lr=lr,
            max_iter=record_every,
            history_size=20,
            tolerance_grad=1e-12,
            tolerance_change=1e-14,
            line_search_fn="strong_wolfe",
        )

        def closure(opt=opt, sub=sub, w=w):  # bound now: used within this iteration
            opt.zero_grad(set_to_none=True)
            loss = sub.train_loss(end_to_end(w)).sum()
            loss.backward()
            return loss

        records = [(0, *_snapshot(end_to_end(w), sub))]
        for t in range(record_every, steps + record_every, record_every):
            opt.step(closure)
            records.append((min(t, steps), *_snapshot(end_to_end(w), sub)))
        finals.append(w.detach())
        per_seed.append(records)
    return torch.cat(finals), _merge_per_seed(per_seed)


def _train_cma(problem, factors, evaluations, record_every, sigma0, popsize):
    """Separable CMA-ES (diagonal covariance, ``cma`` package) started from the initial factors.

    The diagonal variant keeps the cost linear in the ``d n^2`` parameters; each population is
    evaluated as one batch.
    """
    import cma

    S, depth, n, _ = factors.shape
    finals, per_seed = [], []
    for i in range(S):
        sub = problem.select(i)
        x0 = factors[i].reshape(-1).numpy()
        # cma seeds numpy's legacy generator: a nonzero 31-bit integer (0 would mean "from the clock").
        cma_seed = seeding.torch_seed(problem.seeds[i], "cma-es") % (2**31 - 1) + 1
        es = cma.CMAEvolutionStrategy(
            x0,
            sigma0,
            {
                "CMA_diagonal": True,
                "popsize": popsize,
                "seed": cma_seed,
                "verbose": -9,
                "maxfevals": evaluations,
                "tolfun": 0,
                "tolfunhist": 0,
                "tolx": 0,
                "tolstagnation": 10**9,
                "tolflatfitness": 10**9,
            },
        )
        w = factors[i : i + 1]
        records = [(0, *_snapshot(end_to_end(w), sub))]
        next_record = record_every
        while es.countevals < evaluations:
            pop = es.ask()
            losses = sub.train_loss(
                end_to_end(torch.as_tensor(np.array(pop)).reshape(-1, depth, n, n))
            )
            es.tell(pop, losses.tolist())
            if es.countevals >= next_record or es.countevals >= evaluations:
                w = torch.as_tensor(es.result.xbest).reshape(1, depth, n, n)
                records.append(
                    (min(es.countevals, evaluations), *_snapshot(end_to_end(w), sub))
                )
                next_record += record_every
        finals.append(w)
        per_seed.append(records)
    return torch.cat(finals), _merge_per_seed(per_seed)


def _train_random_search(problem, factors, evaluations, record_every, sigma0):
    """(1+1) random search: perturb all parameters by isotropic Gaussian noise of per-entry scale
    ``sigma``, keep the candidate only if the training loss decreases; ``sigma`` grows by 2^(1/4)
    on success and shrinks by 2^(-1/16) on failure (equilibrium success rate 1/5, Rechenberg's
    rule). Independent per seed, batched over seeds."""
    S, depth, n, _ = factors.shape
    gens = [seeding.torch_generator(s, "random-search") for s in problem.seeds]
    w = factors.clone()
    loss = problem.train_loss(end_to_end(w))
    sigma = torch.full((S,), float(sigma0), dtype=DTYPE)
    up, down = 2.0**0.25, 2.0 ** (-1 / 16)
    records = [(0, *_snapshot(end_to_end(w), problem))]
    for t in range(1, evaluations + 1):
        noise = torch.stack(
            [torch.randn(depth, n, n, generator=g, dtype=DTYPE) for g in gens]
        )
        cand = w + sigma[:, None, None, None] * noise
        cand_loss = problem.train_loss(end_to_end(cand))
        better = cand_loss < loss
        w = torch.where(better[:, None, None, None], cand, w)
        loss = torch.where(better, cand_loss, loss)
        sigma = torch.where(better, sigma * up, sigma * down)
        if t % record_every == 0 or t == evaluations:
            records.append((t, *_snapshot(end_to_end(w), problem)))
    return w, records


def train_linear_network(
    problem: Problem,
    depth: int,
    method: str = "adam",
    *,
    init: str = "normal",
    init_rank: int = 4,
    init_scale: float = 1.0,
    steps: int = 2000,
    lr=None,
    eta: float = 0.5,
    lr_schedule: str = "cosine",
    probe_every: int = 100,
    record_every: int = 100,
    sigma0: float | None = None,
    popsize: int = 32,
) -> TrainResult:
    """Train depth-``depth`` linear networks (one per seed of ``problem``) with ``method``.

    ``method`` is one of ``OPTIMIZERS``. For ``sgd`` (plain full-batch gradient descent),
    ``nesterov`` (momentum 0.9) and ``adam``, ``steps`` counts gradient steps with
    ``lr_schedule`` ("cosine" decay to zero or "constant"). SGD and Nesterov take ``lr`` (one
    value or one per seed) or, without it, ``eta`` over the current curvature, re-measured every
    ``probe_every`` steps and whenever the loss rises (:func:`_train_gradient_descent`); Adam
    takes ``lr`` (default ``DEFAULT_LR``). For ``lbfgs`` ``steps`` counts inner L-BFGS iterations
    (one ``step`` call per ``record_every``); for ``cma`` and ``random_search`` it counts loss
    evaluations per seed.
    ``sigma0`` (gradient-free only) is the initial per-entry search scale, by default a tenth of
    the initial per-entry standard deviation ``1/sqrt(n)``.
    """
    depth = check_int(depth, "depth")
    steps = check_int(steps, "steps")
    record_every = check_int(record_every, "record_every")
    probe_every = check_int(probe_every, "probe_every")
    check_choice(method, "method", OPTIMIZERS)
    check_choice(lr_schedule, "lr_schedule", LR_SCHEDULES)
    eta = check_real(eta, "eta", minimum=0.0, strict=True)
    factors = init_factors(depth, problem.n, problem.seeds, init, init_rank, init_scale)
    w0 = end_to_end(factors)
    hyper = {"init": init, "init_scale": float(init_scale), "steps": steps}
    if method in GRADIENT_OPTIMIZERS:
        lr = _learning_rates(method, lr, len(problem.seeds))
        w, records = _gradient_training(
            problem,
            factors,
            method,
            lr,
            eta,
            steps,
            record_every,
            lr_schedule,
            probe_every,
            hyper,
        )
    else:
        sigma0 = 0.1 / math.sqrt(problem.n) if sigma0 is None else sigma0
        hyper["sigma0"] = check_real(sigma0, "sigma0", minimum=0.0, strict=True)
        if method == "cma":
            hyper["popsize"] = check_int(popsize, "popsize")
            w, records = _train_cma(
                problem, factors, steps, record_every, hyper["sigma0"], hyper["popsize"]
            )
        else:
            w, records = _train_random_search(
                problem, factors, steps, record_every, hyper["sigma0"]
            )
    return _finish(method, depth, records, w0, end_to_end(w.detach()), hyper)


def _learning_rates(method: str, lr, seeds: int):
    """``lr`` checked (one positive value, or one per seed for SGD and Nesterov), with
    ``DEFAULT_LR`` where the method has one; None means "from the curvature"."""
    if lr is None and method in DEFAULT_LR:
        lr = DEFAULT_LR[method]
    if lr is None:
        return None
    lr = np.asarray(lr, dtype=np.float64)
    if not (lr.ndim == 0 or lr.shape == (seeds,)) or not np.all(lr > 0):
        raise ValueError(f"lr must be positive: one value, or one per seed, got {lr}")
    if method in ("adam", "lbfgs") and lr.ndim:
        raise ValueError(f"{method} takes a single learning rate, not one per seed")
    return lr


def _gradient_training(
    problem,
    factors,
    method,
    lr,
    eta,
    steps,
    record_every,
    lr_schedule,
    probe_every,
    hyper,
):
    """Run one of the gradient methods; record its step-size settings in ``hyper``."""
    if lr is not None:
        hyper["lr"] = lr.tolist()
    else:
        hyper.update(eta=float(eta), probe_every=probe_every)
    if method == "lbfgs":
        return _train_lbfgs(problem, factors, float(lr), steps, record_every)
    hyper["lr_schedule"] = lr_schedule
    if method == "adam":
        return _train_adam(
            problem, factors, float(lr), steps, record_every, lr_schedule
        )
    return _train_gradient_descent(
        problem,
        factors,
        method == "nesterov",
        lr,
        eta,
        steps,
        record_every,
        lr_schedule,
        probe_every,
    )
