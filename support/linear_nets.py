"""Deep linear networks ``W_d ... W_1`` trained on an under-determined low-rank completion problem.

The chapter *Depth and the solutions gradient descent finds* (``book/deep_linear_training.ipynb``)
explains and uses everything here. A deep linear network computes ``x -> W_e x`` with the
end-to-end (effective) map ``W_e = W_d ... W_1``; every depth represents exactly the same set of
functions, so whatever differs between depths after training is an implicit bias of the
parameterization (paper v1 Insight 2, rev2/v4 Observations 3 and 4).

Design
------
* **The problem.** Regression on the entries of an ``n x n`` map: a random subset of the entries
  of a target ``W*`` is observed (matrix completion, ``observed_fraction * n^2`` observations for
  ``n^2`` unknowns), and the network is trained to reproduce them. ``W*`` is a rank-``r``
  product of Gaussian matrices or a full-rank Gaussian matrix, rescaled to mean squared entry 1
  so that predicting zero costs a loss of 1. Infinitely many maps fit the observed entries
  exactly; the parameterization decides which one is found. (Regression on Gaussian inputs,
  ``y = W* x``, would not do: its minimum-norm solution ``W* P`` already has the target's rank,
  so a low-rank bias could not help there.)
* **Losses.** Train loss: mean squared error over the observed entries. Test loss: mean squared
  error over all ``n^2`` entries (the expected loss on a uniformly random entry).
* **Batched over seeds.** Factors are stored as one tensor of shape ``(S, d, n, n)``: seed ``s``
  owns ``factors[s]``, its own target, mask and initialisation. Gradient training minimises the
  SUM over seeds of per-seed losses, so each seed receives exactly its own gradient; SGD,
  Nesterov and Adam are elementwise optimizers, so the seeds train independently. L-BFGS
  couples parameters through its line search and CMA-ES through its covariance, so those run
  one seed at a time (CMA-ES evaluates each population as one batch instead).
* **rho.** :func:`support.rank.spectral_entropy` of ``W_e`` (entropy of the normalised singular
  values, in nats), recorded over training.
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from support.checks import check_int, check_seeds
from support.rank import spectral_entropy

GRADIENT_OPTIMIZERS = ("sgd", "nesterov", "adam", "lbfgs")
GRADIENT_FREE_OPTIMIZERS = ("cma", "random_search")
OPTIMIZERS = GRADIENT_OPTIMIZERS + GRADIENT_FREE_OPTIMIZERS
INITS = ("normal", "lowrank")
DTYPE = torch.float64




def _generator(seed: int, stream: int) -> torch.Generator:
    """Independent, reproducible random stream per (seed, purpose): targets, data, init, search."""
    return torch.Generator().manual_seed(1_000_003 * int(seed) + 7919 * stream + 17)


# --------------------------------------------------------------------------------------------
# The completion problem
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CompletionProblem:
    """A batch of ``S`` independent under-determined matrix-completion problems.

    ``target``: ``(S, n, n)`` maps ``W*``; ``mask``: ``(S, n, n)`` booleans, True where the entry
    of ``W*`` is observed (exactly ``n_observed`` per seed). ``target_rank`` is None for a
    full-rank target.
    """

    target: torch.Tensor
    mask: torch.Tensor
    seeds: tuple
    target_rank: int | None

    @property
    def n(self) -> int:
        return self.target.shape[-1]

    @property
    def n_observed(self) -> int:
        return int(self.mask[0].sum())

    def select(self, index: int) -> "CompletionProblem":
        """The single-seed problem at position ``index`` (used by per-seed optimizers)."""
        sl = slice(index, index + 1)
        return CompletionProblem(self.target[sl], self.mask[sl], (self.seeds[index],), self.target_rank)


def make_target(n: int, rank: int | None, seed: int) -> torch.Tensor:
    """An ``n x n`` target: ``A B`` with Gaussian ``A`` (n x rank), ``B`` (rank x n), or a full-rank
    Gaussian matrix when ``rank`` is None; rescaled to mean squared entry 1 (``||W*||_F^2 = n^2``),
    so that predicting zero costs a loss of 1."""
    n = check_int(n, "n")
    gen = _generator(seed, 0)
    if rank is None:
        w = torch.randn(n, n, generator=gen, dtype=DTYPE)
    else:
        rank = check_int(rank, "target_rank")
        if rank > n:
            raise ValueError(f"target_rank must be <= n = {n}, got {rank}")
        w = torch.randn(n, rank, generator=gen, dtype=DTYPE) @ torch.randn(rank, n, generator=gen, dtype=DTYPE)
    return w * n / torch.linalg.matrix_norm(w)


def make_problem(n: int = 32, target_rank: int | None = 8, observed_fraction: float = 0.8,
                 seeds=(0,)) -> CompletionProblem:
    """Build one completion problem per seed: a target and a uniformly random set of
    ``round(observed_fraction * n^2)`` observed entries.

    With ``observed_fraction < 1`` there are fewer observations than the ``n^2`` unknowns of the
    end-to-end map: infinitely many maps fit the observed entries exactly.
    """
    n = check_int(n, "n")
    if not 0 < observed_fraction <= 1:
        raise ValueError(f"observed_fraction must lie in (0, 1], got {observed_fraction}")
    m = round(observed_fraction * n * n)
    if m < 1:
        raise ValueError(f"observed_fraction={observed_fraction} observes no entry of a {n}x{n} map")
    seeds = check_seeds(seeds)
    targets, masks = [], []
    for s in seeds:
        targets.append(make_target(n, target_rank, s))
        order = torch.randperm(n * n, generator=_generator(s, 1))
        mask = torch.zeros(n * n, dtype=torch.bool)
        mask[order[:m]] = True
        masks.append(mask.reshape(n, n))
    return CompletionProblem(torch.stack(targets), torch.stack(masks), tuple(seeds), target_rank)


# --------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------

def init_factors(depth: int, n: int, seeds, init: str = "normal", init_rank: int = 4,
                 init_scale: float = 1.0) -> torch.Tensor:
    """Initial factors ``(S, depth, n, n)`` for each seed.

    ``"normal"``: i.i.d. ``N(0, 1/n)`` entries (Kaiming fan-in, gain 1: the expected output norm
    equals the input norm at every depth). ``"lowrank"``: the first factor (the one that acts first)
    is a Gaussian rank-``init_rank`` product ``A B`` scaled to the same expected Frobenius norm, the
    others are normal, so ``W_e`` starts with rank at most ``init_rank`` while every later factor
    is full-rank (making *every* factor low-rank collapses deep products to rank one, from which
    gradient methods cannot recover). ``init_scale`` multiplies every factor by ``init_scale ** (1 / depth)``, so
    the expected norm of ``W_e`` at initialisation is ``init_scale`` times the Kaiming value at
    every depth (the distribution of rho is unchanged: rho is scale invariant).
    """
    depth = check_int(depth, "depth")
    n = check_int(n, "n")
    seeds = check_seeds(seeds)
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if not init_scale > 0:
        raise ValueError(f"init_scale must be positive, got {init_scale}")
    out = []
    for s in seeds:
        gen = _generator(s, 2)
        w = torch.randn(depth, n, n, generator=gen, dtype=DTYPE) / math.sqrt(n)
        if init == "lowrank":
            init_rank = check_int(init_rank, "init_rank")
            if init_rank > n:
                raise ValueError(f"init_rank must be <= n = {n}, got {init_rank}")
            a = torch.randn(n, init_rank, generator=gen, dtype=DTYPE)
            b = torch.randn(init_rank, n, generator=gen, dtype=DTYPE)
            # E||A B||_F^2 = n^2 r: scale to E||W||_F^2 = n like the normal init.
            w[0] = a @ b / math.sqrt(n * init_rank)
        out.append(w)
    return torch.stack(out) * float(init_scale) ** (1.0 / depth)


def end_to_end(factors: torch.Tensor) -> torch.Tensor:
    """``W_e = W_d ... W_1`` for factors of shape ``(S, d, n, n)`` (``factors[:, 0]`` acts first)."""
    if factors.ndim != 4 or factors.shape[-1] != factors.shape[-2]:
        raise ValueError(f"factors must have shape (S, d, n, n), got {tuple(factors.shape)}")
    w = factors[:, 0]
    for i in range(1, factors.shape[1]):
        w = factors[:, i] @ w
    return w


def train_loss_of_map(w: torch.Tensor, problem: CompletionProblem) -> torch.Tensor:
    """Per-seed mean squared error of maps ``w`` (``(..., S, n, n)``) over the observed entries."""
    err = (w - problem.target) ** 2 * problem.mask
    return err.sum(dim=(-2, -1)) / problem.n_observed


def test_loss_of_map(w: torch.Tensor, problem: CompletionProblem) -> torch.Tensor:
    """Per-seed mean squared error over all ``n^2`` entries: the expected loss on a uniformly
    random entry, observed or not (``||w - W*||_F^2 / n^2``)."""
    return ((w - problem.target) ** 2).mean(dim=(-2, -1))


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------

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


def _snapshot(w: torch.Tensor, problem: CompletionProblem):
    w = w.detach()
    return (train_loss_of_map(w, problem).numpy(), test_loss_of_map(w, problem).numpy(),
            np.asarray(spectral_entropy(w)))


def _finish(method, depth, records, w0, w1, hyper) -> TrainResult:
    steps = np.array([r[0] for r in records])
    return TrainResult(method, depth, steps, np.stack([r[1] for r in records]),
                       np.stack([r[2] for r in records]), np.stack([r[3] for r in records]),
                       w0.detach().clone(), w1.detach().clone(), hyper)


DEFAULT_LR = {"adam": 3e-3, "lbfgs": 1.0}


def curvature_lr(problem: CompletionProblem, depth: int, eta: float = 0.5) -> float:
    """Step size for (momentum) gradient descent: ``eta`` over the largest curvature at a balanced
    solution.

    Near a balanced factorisation of ``W*`` (every factor with singular values
    ``sigma_i(W*)^(1/d)``) the loss Hessian has top eigenvalue about
    ``(2 / n_observed) * d * sigma_max(W*)^(2 (d-1) / d)``, so stability needs ``lr`` below
    ``2 / that``. Using the largest ``sigma_max`` over seeds keeps every seed stable.
    """
    depth = check_int(depth, "depth")
    top = float(torch.linalg.matrix_norm(problem.target, ord=2).max())
    curvature = 2.0 / problem.n_observed * depth * top ** (2.0 * (depth - 1) / depth)
    return float(eta) / curvature


def _train_first_order(problem, factors, method, lr, steps, record_every):
    """Full-batch SGD / Nesterov / Adam with a cosine learning-rate decay to zero over ``steps``
    (the decay lets every depth settle instead of oscillating at the end of the budget)."""
    w = factors.clone().requires_grad_(True)
    if method == "sgd":
        opt = torch.optim.SGD([w], lr=lr)
    elif method == "nesterov":
        opt = torch.optim.SGD([w], lr=lr, momentum=0.9, nesterov=True)
    else:
        opt = torch.optim.Adam([w], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    records = []
    for t in range(steps + 1):
        if t % record_every == 0 or t == steps:
            records.append((t, *_snapshot(end_to_end(w), problem)))
        if t == steps:
            break
        opt.zero_grad(set_to_none=True)
        # SUM over seeds: each seed's factors get exactly their own gradient.
        train_loss_of_map(end_to_end(w), problem).sum().backward()
        opt.step()
        sched.step()
    return w, records


def _train_lbfgs(problem, factors, lr, steps, record_every):
    """L-BFGS one seed at a time (its line search would otherwise couple the seeds)."""
    finals, per_seed = [], []
    for i in range(factors.shape[0]):
        sub = problem.select(i)
        w = factors[i:i + 1].clone().requires_grad_(True)
        opt = torch.optim.LBFGS([w], lr=lr, max_iter=record_every, history_size=20,
                                tolerance_grad=1e-12, tolerance_change=1e-14,
                                line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad(set_to_none=True)
            loss = train_loss_of_map(end_to_end(w), sub).sum()
            loss.backward()
            return loss

        records = [(0, *_snapshot(end_to_end(w), sub))]
        for t in range(record_every, steps + record_every, record_every):
            opt.step(closure)
            records.append((min(t, steps), *_snapshot(end_to_end(w), sub)))
        finals.append(w.detach())
        per_seed.append(records)
    merged = [(per_seed[0][k][0],) + tuple(np.concatenate([r[k][j] for r in per_seed]) for j in (1, 2, 3))
              for k in range(len(per_seed[0]))]
    return torch.cat(finals), merged


def _batched_losses(flat: torch.Tensor, depth: int, n: int, sub: CompletionProblem) -> torch.Tensor:
    """Train losses of a population of flattened factor vectors ``(P, d n n)`` for one seed."""
    w = end_to_end(flat.reshape(-1, depth, n, n))
    return train_loss_of_map(w, sub)


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
        es = cma.CMAEvolutionStrategy(x0, sigma0, {
            "CMA_diagonal": True, "popsize": popsize, "seed": int(problem.seeds[i]) + 1,
            "verbose": -9, "maxfevals": evaluations, "tolfun": 0, "tolfunhist": 0, "tolx": 0,
            "tolstagnation": 10 ** 9, "tolflatfitness": 10 ** 9})
        w = factors[i:i + 1]
        records = [(0, *_snapshot(end_to_end(w), sub))]
        next_record = record_every
        while es.countevals < evaluations:
            pop = es.ask()
            losses = _batched_losses(torch.as_tensor(np.array(pop)), depth, n, sub)
            es.tell(pop, losses.tolist())
            if es.countevals >= next_record or es.countevals >= evaluations:
                w = torch.as_tensor(es.result.xbest).reshape(1, depth, n, n)
                records.append((min(es.countevals, evaluations), *_snapshot(end_to_end(w), sub)))
                next_record += record_every
        finals.append(w)
        per_seed.append(records)
    length = min(len(r) for r in per_seed)
    merged = [(per_seed[0][k][0],) + tuple(np.concatenate([r[k][j] for r in per_seed]) for j in (1, 2, 3))
              for k in range(length)]
    return torch.cat(finals), merged


def _train_random_search(problem, factors, evaluations, record_every, sigma0):
    """(1+1) random search: perturb all parameters by isotropic Gaussian noise of per-entry scale
    ``sigma``, keep the candidate only if the training loss decreases; ``sigma`` grows by 2^(1/4)
    on success and shrinks by 2^(-1/16) on failure (equilibrium success rate 1/5, Rechenberg's
    rule). Independent per seed, batched over seeds."""
    S, depth, n, _ = factors.shape
    gens = [_generator(s, 3) for s in problem.seeds]
    w = factors.clone()
    loss = train_loss_of_map(end_to_end(w), problem)
    sigma = torch.full((S,), float(sigma0), dtype=DTYPE)
    up, down = 2.0 ** 0.25, 2.0 ** (-1 / 16)
    records = [(0, *_snapshot(end_to_end(w), problem))]
    for t in range(1, evaluations + 1):
        noise = torch.stack([torch.randn(depth, n, n, generator=g, dtype=DTYPE) for g in gens])
        cand = w + sigma[:, None, None, None] * noise
        cand_loss = train_loss_of_map(end_to_end(cand), problem)
        better = cand_loss < loss
        w = torch.where(better[:, None, None, None], cand, w)
        loss = torch.where(better, cand_loss, loss)
        sigma = torch.where(better, sigma * up, sigma * down)
        if t % record_every == 0 or t == evaluations:
            records.append((t, *_snapshot(end_to_end(w), problem)))
    return w, records


def train(problem: CompletionProblem, depth: int, method: str = "adam", *, init: str = "normal",
          init_rank: int = 4, init_scale: float = 1.0, steps: int = 2000, lr: float | None = None, record_every: int = 100,
          sigma0: float | None = None, popsize: int = 32) -> TrainResult:
    """Train depth-``depth`` linear networks (one per seed of ``problem``) with ``method``.

    ``method`` is one of ``OPTIMIZERS``. For ``sgd``, ``nesterov`` (momentum 0.9), ``adam``
    ``steps`` counts full-batch gradient steps; for ``lbfgs`` it counts inner L-BFGS iterations
    (one ``step`` call per ``record_every``); for ``cma`` and ``random_search`` it counts loss
    evaluations per seed. ``sigma0`` (gradient-free only) is the initial per-entry search scale,
    by default a tenth of the initial per-entry standard deviation ``1/sqrt(n)``.
    """
    depth = check_int(depth, "depth")
    steps = check_int(steps, "steps")
    record_every = check_int(record_every, "record_every")
    if method not in OPTIMIZERS:
        raise ValueError(f"method must be one of {OPTIMIZERS}, got {method!r}")
    factors = init_factors(depth, problem.n, problem.seeds, init, init_rank, init_scale)
    w0 = end_to_end(factors)
    hyper = {"init": init, "init_scale": float(init_scale), "steps": steps}
    if method in GRADIENT_OPTIMIZERS:
        if lr is None:
            lr = DEFAULT_LR[method] if method in DEFAULT_LR else curvature_lr(problem, depth)
        lr = float(lr)
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}")
        hyper["lr"] = lr
        if method == "lbfgs":
            w, records = _train_lbfgs(problem, factors, lr, steps, record_every)
        else:
            w, records = _train_first_order(problem, factors, method, lr, steps, record_every)
    else:
        sigma0 = 0.1 / math.sqrt(problem.n) if sigma0 is None else float(sigma0)
        if not sigma0 > 0:
            raise ValueError(f"sigma0 must be positive, got {sigma0}")
        hyper["sigma0"] = sigma0
        if method == "cma":
            popsize = check_int(popsize, "popsize")
            hyper["popsize"] = popsize
            w, records = _train_cma(problem, factors, steps, record_every, sigma0, popsize)
        else:
            w, records = _train_random_search(problem, factors, steps, record_every, sigma0)
    return _finish(method, depth, records, w0, end_to_end(w.detach()), hyper)


# --------------------------------------------------------------------------------------------
# Sweeps (what the chapter shows; ``python -m support.linear_nets`` stores the paper-scale runs)
# --------------------------------------------------------------------------------------------

PAPER_DEPTHS = (1, 4, 8, 12, 16, 20, 24, 28, 32)
OPTIMIZER_DEPTHS = (1, 2, 4, 8)
TARGETS = {"lowrank": 8, "fullrank": None}

#: Setup of every sweep. The paper gives only n = 32 (inferred) and the depths; the rest is ours
#: (see the chapter for the reasons behind each choice).
SWEEP_CONFIG = {
    "n": 32,
    "target_rank": 8,
    "observed_fraction": 0.8,
    "init_rank": 4,
    "depth_method": "adam",
    "depth_lr": 3e-3,
    "gradient_steps": 3000,
    "lbfgs_iterations": 500,
    "gradient_free_evaluations": 20000,
    "cma_popsize": 32,
    "record_points": 6,
}

SCALES = {
    "quick": {"seeds": (0, 1), "depths": (1, 4, 8), "optimizer_depths": (1, 4),
              "gradient_steps": 1500, "lbfgs_iterations": 200, "gradient_free_evaluations": 4000},
    "paper": {"seeds": (0, 1, 2, 3, 4), "depths": PAPER_DEPTHS, "optimizer_depths": OPTIMIZER_DEPTHS},
}


def sweep_settings(scale: str) -> dict:
    """Full settings of a sweep at ``scale`` ("quick" or "paper"): ``SWEEP_CONFIG`` overridden
    by ``SCALES``."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {tuple(SCALES)}, got {scale!r}")
    return {**SWEEP_CONFIG, **SCALES[scale]}


def _stack_results(results) -> dict:
    """Arrays ``(n_depths, S)`` of final train/test loss and rho at init / end, and histories
    ``(n_depths, T, S)`` with their steps ``(n_depths, T)``."""
    return {
        "train_loss": np.stack([r.train_loss[-1] for r in results]),
        "test_loss": np.stack([r.test_loss[-1] for r in results]),
        "rho_init": np.stack([r.rho_init for r in results]),
        "rho_final": np.stack([r.rho_final for r in results]),
        "history_steps": np.stack([r.steps for r in results]),
        "history_train": np.stack([r.train_loss for r in results]),
        "history_test": np.stack([r.test_loss for r in results]),
        "history_rho": np.stack([r.rho for r in results]),
    }


def depth_sweep(settings: dict, init: str, target: str) -> dict:
    """Train every depth of ``settings["depths"]`` from ``init`` on the ``target`` problem
    ("lowrank" or "fullrank") with the main optimizer; returns ``_stack_results`` arrays
    plus ``target_rho`` (per seed)."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {tuple(TARGETS)}, got {target!r}")
    rank = settings["target_rank"] if target == "lowrank" else None
    problem = make_problem(settings["n"], rank, settings["observed_fraction"], settings["seeds"])
    steps = settings["gradient_steps"]
    results = [train(problem, d, settings["depth_method"], init=init, init_rank=settings["init_rank"],
                     steps=steps, lr=settings["depth_lr"],
                     record_every=max(1, steps // settings["record_points"]))
               for d in settings["depths"]]
    out = _stack_results(results)
    out["target_rho"] = np.asarray(spectral_entropy(problem.target))
    return out


def optimizer_run(settings: dict, method: str, depth: int) -> TrainResult:
    """One optimizer at one depth on the low-rank problem from the normal init, with the
    budget of ``settings``: gradient steps (SGD, Nesterov at :func:`curvature_lr`; Adam),
    L-BFGS iterations, or loss evaluations per seed (CMA-ES, random search)."""
    problem = make_problem(settings["n"], settings["target_rank"], settings["observed_fraction"],
                           settings["seeds"])
    points = settings["record_points"]
    if method in ("sgd", "nesterov", "adam"):
        steps = settings["gradient_steps"]
        lr = settings["depth_lr"] if method == "adam" else curvature_lr(problem, depth)
        return train(problem, depth, method, steps=steps, lr=lr, record_every=max(1, steps // points))
    if method == "lbfgs":
        steps = settings["lbfgs_iterations"]
        return train(problem, depth, method, steps=steps, record_every=max(1, steps // points))
    steps = settings["gradient_free_evaluations"]
    return train(problem, depth, method, steps=steps, popsize=settings["cma_popsize"],
                 record_every=max(1, steps // points))


def optimizer_sweep(settings: dict, methods=OPTIMIZERS) -> dict:
    """:func:`optimizer_run` for every method and depth of ``settings["optimizer_depths"]``;
    returns ``{method: arrays}`` as in ``_stack_results``."""
    return {m: _stack_results([optimizer_run(settings, m, d) for d in settings["optimizer_depths"]])
            for m in methods}


def store_depth_sweep(init: str, scale: str) -> None:
    """Run :func:`depth_sweep` for both targets from ``init`` and store it as
    ``book/results/deep_linear_depth_<init>_<scale>`` (arrays prefixed by the target name)."""
    from support import results as store

    settings = sweep_settings(scale)
    start = time.time()
    arrays = {}
    for target in TARGETS:
        for key, value in depth_sweep(settings, init, target).items():
            arrays[f"{target}_{key}"] = value
        print(f"  {init} init, {target} target done after {time.time() - start:.0f} s", flush=True)
    store.save(f"deep_linear_depth_{init}_{scale}", config={**settings, "init": init},
               arrays=arrays, provenance_record=store.provenance(
                   device="cpu", seeds=settings["seeds"], wall_time_s=time.time() - start))


def store_optimizer_sweep(scale: str) -> None:
    """Run :func:`optimizer_sweep` and store it as ``book/results/deep_linear_optimizers_<scale>``
    (arrays prefixed by the method name)."""
    from support import results as store

    settings = sweep_settings(scale)
    start = time.time()
    arrays = {}
    for method in OPTIMIZERS:
        for key, value in optimizer_sweep(settings, (method,))[method].items():
            arrays[f"{method}_{key}"] = value
        print(f"  {method} done after {time.time() - start:.0f} s", flush=True)
    store.save(f"deep_linear_optimizers_{scale}", config=settings, arrays=arrays,
               provenance_record=store.provenance(device="cpu", seeds=settings["seeds"],
                                                  wall_time_s=time.time() - start))


def main(argv=None) -> None:
    """``python -m support.linear_nets --sweep depth --init normal --scale paper`` (or
    ``--sweep optimizers``): run a sweep on the CPU and store it in ``book/results/``."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--sweep", choices=("depth", "optimizers"), required=True)
    parser.add_argument("--init", choices=INITS, default="normal")
    parser.add_argument("--scale", choices=tuple(SCALES), default="paper")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.sweep == "depth":
        store_depth_sweep(args.init, args.scale)
    else:
        store_optimizer_sweep(args.scale)


if __name__ == "__main__":
    main()
