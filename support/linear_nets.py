"""Deep linear networks ``W_d ... W_1`` trained on under-determined problems: regression and completion.

The chapter *Depth and the solutions gradient descent finds* (``book/deep_linear_training.ipynb``)
explains and uses everything here. A deep linear network computes ``x -> W_e x`` with the
end-to-end (effective) map ``W_e = W_d ... W_1``; every depth represents exactly the same set of
functions, so whatever differs between depths after training is an implicit bias of the
parameterization (paper v1 Insight 2, rev2/v4 Observations 3 and 4).

Design
------
* **Two problems, one interface.** Both have fewer observations than the ``n^2`` unknowns of the
  end-to-end map, so infinitely many maps fit the data exactly and the parameterization decides
  which one is found.

  - :class:`RegressionProblem` (the chapter's main problem): ``N < n`` Gaussian inputs ``X`` and
    their images ``W* X``. Gradient descent never changes the component of the end-to-end map
    outside the span of the inputs at depth 1 (:meth:`RegressionProblem.depth_one_limit`); from a
    non-zero start that component carries the initialisation's excess rank, and depth removes it.
  - :class:`CompletionProblem`: a random subset of the entries of ``W*`` is observed. Depth 1
    leaves the unobserved entries where they started (:meth:`CompletionProblem.depth_one_limit`),
    and even from a zero start the minimum-norm completion is full-rank.

  ``W*`` is a rank-``r`` product of Gaussian matrices or a full-rank Gaussian matrix
  (:func:`make_target`). Both losses are *relative*: predicting zero costs exactly 1.
* **Batched over seeds.** Factors are stored as one tensor of shape ``(S, d, n, n)``: seed ``s``
  owns ``factors[s]``, its own target, data and initialisation. Gradient training minimises the
  SUM over seeds of per-seed losses, so each seed receives exactly its own gradient; SGD,
  Nesterov and Adam are elementwise optimizers, so the seeds train independently. L-BFGS
  couples parameters through its line search and CMA-ES through its covariance, so those run
  one seed at a time (CMA-ES evaluates each population as one batch instead).
* **Random streams** come from :mod:`support.seeding`, one named stream per purpose (target,
  inputs or mask, initialisation, search), so a seed gives the same target whatever the batch.
* **rho.** :func:`support.rank.spectral_entropy` of ``W_e`` (entropy of the normalised singular
  values, in nats), recorded over training.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from support import seeding
from support.checks import check_int, check_seeds
from support.rank import spectral_entropy

GRADIENT_OPTIMIZERS = ("sgd", "nesterov", "adam", "lbfgs")
GRADIENT_FREE_OPTIMIZERS = ("cma", "random_search")
OPTIMIZERS = GRADIENT_OPTIMIZERS + GRADIENT_FREE_OPTIMIZERS
INITS = ("normal", "lowrank")
LR_SCHEDULES = ("cosine", "constant")
DTYPE = torch.float64


# --------------------------------------------------------------------------------------------
# Targets and problems
# --------------------------------------------------------------------------------------------

def make_target(n: int, rank: int | None, seed: int, entry_rms: float = 1.0) -> torch.Tensor:
    """An ``n x n`` target: ``A B`` with Gaussian ``A`` (n x rank), ``B`` (rank x n), or a full-rank
    Gaussian matrix when ``rank`` is None; rescaled so that the root mean square of its entries is
    ``entry_rms`` (``||W*||_F = n * entry_rms``)."""
    n = check_int(n, "n")
    if not entry_rms > 0:
        raise ValueError(f"entry_rms must be positive, got {entry_rms}")
    gen = seeding.torch_generator(seed, "deep-linear-target")
    if rank is None:
        w = torch.randn(n, n, generator=gen, dtype=DTYPE)
    else:
        rank = check_int(rank, "target_rank")
        if rank > n:
            raise ValueError(f"target_rank must be <= n = {n}, got {rank}")
        a = torch.randn(n, rank, generator=gen, dtype=DTYPE)
        w = a @ torch.randn(rank, n, generator=gen, dtype=DTYPE)
    return w * (n * float(entry_rms)) / torch.linalg.matrix_norm(w)


def _target_range_complement(target: torch.Tensor, rank: int | None) -> torch.Tensor:
    """Projector ``Q`` onto the orthogonal complement of the column space of each target
    (zero for a full-rank target)."""
    n = target.shape[-1]
    if rank is None:
        return torch.zeros_like(target)
    u = torch.linalg.svd(target)[0][..., :rank]
    return torch.eye(n, dtype=target.dtype) - u @ u.transpose(-1, -2)


@dataclass(frozen=True)
class RegressionProblem:
    """A batch of ``S`` independent under-determined linear regressions ``y = W* x``.

    ``target``: ``(S, n, n)`` maps ``W*``; ``inputs``: ``(S, n, N)`` standard Gaussian inputs
    ``X`` with ``N < n`` (``n N`` observed outputs for ``n^2`` unknowns). ``target_rank`` is None
    for a full-rank target. Losses (per seed): train ``||(W - W*) X||_F^2 / ||W* X||_F^2``; test
    ``||W - W*||_F^2 / ||W*||_F^2``, the expected squared error on a fresh standard Gaussian input
    relative to that of predicting zero.
    """

    target: torch.Tensor
    inputs: torch.Tensor
    seeds: tuple
    target_rank: int | None

    @property
    def n(self) -> int:
        return self.target.shape[-1]

    @property
    def n_observed(self) -> int:
        """Number of training inputs ``N``."""
        return self.inputs.shape[-1]

    def select(self, index: int) -> RegressionProblem:
        """The single-seed problem at position ``index`` (used by per-seed optimizers)."""
        sl = slice(index, index + 1)
        return RegressionProblem(self.target[sl], self.inputs[sl], (self.seeds[index],), self.target_rank)

    def train_loss(self, w: torch.Tensor) -> torch.Tensor:
        """Per-seed relative training loss of maps ``w`` (``(..., S, n, n)``)."""
        outputs = self.target @ self.inputs
        err = ((w - self.target) @ self.inputs) ** 2
        return err.sum(dim=(-2, -1)) / (outputs ** 2).sum(dim=(-2, -1))

    def test_loss(self, w: torch.Tensor) -> torch.Tensor:
        """Per-seed relative test loss ``||w - W*||_F^2 / ||W*||_F^2``."""
        return ((w - self.target) ** 2).sum(dim=(-2, -1)) / (self.target ** 2).sum(dim=(-2, -1))

    def input_projector(self) -> torch.Tensor:
        """``P = X X^+`` (``(S, n, n)``), the orthogonal projector onto the span of the inputs."""
        return self.inputs @ torch.linalg.pinv(self.inputs)

    def unobserved_part(self, w: torch.Tensor) -> torch.Tensor:
        """``w (I - P)``: the component of maps ``w`` on input directions no training input has."""
        return w - w @ self.input_projector()

    def depth_one_limit(self, initial_map: torch.Tensor) -> torch.Tensor:
        """Where gradient flow on a single layer converges from ``initial_map``:
        ``W* P + W_0 (I - P)`` (the gradient ``(W - W*) X X^T`` vanishes on ``I - P``)."""
        p = self.input_projector()
        return self.target @ p + initial_map - initial_map @ p

    def map_curvature(self) -> torch.Tensor:
        """Per-seed largest eigenvalue of the train loss's Hessian with respect to the end-to-end
        map: ``2 lambda_max(X X^T) / ||W* X||_F^2``."""
        top = torch.linalg.eigvalsh(self.inputs @ self.inputs.transpose(-1, -2))[..., -1]
        return 2.0 * top / ((self.target @ self.inputs) ** 2).sum(dim=(-2, -1))


@dataclass(frozen=True)
class CompletionProblem:
    """A batch of ``S`` independent under-determined matrix-completion problems.

    ``target``: ``(S, n, n)`` maps ``W*`` (mean squared entry 1); ``mask``: ``(S, n, n)``
    booleans, True where the entry of ``W*`` is observed (exactly ``n_observed`` per seed).
    ``target_rank`` is None for a full-rank target. Losses (per seed): train, the mean squared
    error over the observed entries; test, over all ``n^2`` entries (the expected loss on a
    uniformly random entry). Predicting zero costs 1.
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
        """Number of observed entries per seed."""
        return int(self.mask[0].sum())

    def select(self, index: int) -> CompletionProblem:
        """The single-seed problem at position ``index`` (used by per-seed optimizers)."""
        sl = slice(index, index + 1)
        return CompletionProblem(self.target[sl], self.mask[sl], (self.seeds[index],), self.target_rank)

    def train_loss(self, w: torch.Tensor) -> torch.Tensor:
        """Per-seed mean squared error of maps ``w`` (``(..., S, n, n)``) over the observed entries."""
        err = (w - self.target) ** 2 * self.mask
        return err.sum(dim=(-2, -1)) / self.n_observed

    def test_loss(self, w: torch.Tensor) -> torch.Tensor:
        """Per-seed mean squared error over all ``n^2`` entries (``||w - W*||_F^2 / n^2``)."""
        return ((w - self.target) ** 2).mean(dim=(-2, -1))

    def unobserved_part(self, w: torch.Tensor) -> torch.Tensor:
        """The unobserved entries of maps ``w`` (observed ones set to zero)."""
        return w * ~self.mask

    def depth_one_limit(self, initial_map: torch.Tensor) -> torch.Tensor:
        """Where gradient flow on a single layer converges from ``initial_map``: the target on the
        observed entries, the initial map elsewhere (the gradient vanishes off the mask)."""
        return torch.where(self.mask, self.target, initial_map)

    def map_curvature(self) -> torch.Tensor:
        """Per-seed largest eigenvalue of the train loss's Hessian with respect to the end-to-end
        map: ``2 / n_observed``."""
        return torch.full((self.target.shape[0],), 2.0 / self.n_observed, dtype=DTYPE)


Problem = RegressionProblem | CompletionProblem


def make_regression_problem(n: int = 32, target_rank: int | None = 8, n_samples: int = 27,
                            target_scale: float = 1.0, seeds=(0,)) -> RegressionProblem:
    """One regression problem per seed: a target and ``n_samples`` standard Gaussian inputs.

    ``target_scale`` is the root mean square output of the target on a standard Gaussian input
    (``||W*||_F^2 = n target_scale^2``); a network initialised by :func:`init_factors` has root
    mean square output 1 at every depth, so ``target_scale = 1`` puts target and initial network
    on the same scale. ``n_samples < n`` makes the problem under-determined.
    """
    n = check_int(n, "n")
    n_samples = check_int(n_samples, "n_samples")
    if n_samples >= n:
        raise ValueError(f"n_samples must be < n = {n} for an under-determined problem, got {n_samples}")
    if not target_scale > 0:
        raise ValueError(f"target_scale must be positive, got {target_scale}")
    seeds = check_seeds(seeds)
    targets = [make_target(n, target_rank, s, entry_rms=target_scale / math.sqrt(n)) for s in seeds]
    inputs = [torch.randn(n, n_samples, generator=seeding.torch_generator(s, "regression-inputs"),
                          dtype=DTYPE) for s in seeds]
    return RegressionProblem(torch.stack(targets), torch.stack(inputs), tuple(seeds), target_rank)


def make_completion_problem(n: int = 32, target_rank: int | None = 8, observed_fraction: float = 0.8,
                            seeds=(0,)) -> CompletionProblem:
    """One completion problem per seed: a target (mean squared entry 1) and a uniformly random set
    of ``round(observed_fraction * n^2)`` observed entries.

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
        order = torch.randperm(n * n, generator=seeding.torch_generator(s, "completion-mask"))
        mask = torch.zeros(n * n, dtype=torch.bool)
        mask[order[:m]] = True
        masks.append(mask.reshape(n, n))
    return CompletionProblem(torch.stack(targets), torch.stack(masks), tuple(seeds), target_rank)


def unobserved_parts(problem: Problem, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split the unobserved part ``B`` of maps ``w`` (:meth:`~RegressionProblem.unobserved_part`)
    by the target's column space: returns ``(||(I - Q) B||_F^2, ||Q B||_F^2)`` per seed, relative
    to ``||W*||_F^2``, where ``Q`` projects onto the orthogonal complement of the column space of
    ``W*`` (for a full-rank target ``Q = 0``). Depth drives the second part to zero."""
    b = problem.unobserved_part(w)
    outside = _target_range_complement(problem.target, problem.target_rank) @ b
    scale = (problem.target ** 2).sum(dim=(-2, -1))
    return ((b - outside) ** 2).sum(dim=(-2, -1)) / scale, (outside ** 2).sum(dim=(-2, -1)) / scale


def unobserved_image_share(lower: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """How much of the hidden image of the unobserved input directions escapes the data's image.

    ``lower`` is the product ``W_{d-1} ... W_1`` of the factors below the last (``(..., n, n)``;
    the identity for depth 1) and ``inputs`` the training inputs ``X`` (``(..., n, N)``). Returns
    ``||Pi M (I - P)||_F^2 / ||M (I - P)||_F^2`` with ``M = lower``, ``P`` the projector onto the
    span of ``X`` and ``Pi`` the projector onto the orthogonal complement of the span of ``M X``.
    Gradient descent shrinks the last factor only along the data's hidden image, so this share
    bounds what survives training of the initial map's component outside the target's column
    space: it is exactly 1 at depth 1 (nothing is removed) and falls with depth.
    """
    if lower.shape[-1] != lower.shape[-2] or inputs.shape[-2] != lower.shape[-1]:
        raise ValueError(f"lower must be (..., n, n) and inputs (..., n, N), got {tuple(lower.shape)} "
                         f"and {tuple(inputs.shape)}")
    n = lower.shape[-1]
    eye = torch.eye(n, dtype=lower.dtype)
    m = lower @ (eye - inputs @ torch.linalg.pinv(inputs))
    hidden = lower @ inputs
    escaped = m - hidden @ torch.linalg.pinv(hidden) @ m
    return (escaped ** 2).sum(dim=(-2, -1)) / (m ** 2).sum(dim=(-2, -1))


# --------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------

def init_factors(depth: int, n: int, seeds, init: str = "normal", init_rank: int = 4,
                 init_scale: float = 1.0) -> torch.Tensor:
    """Initial factors ``(S, depth, n, n)`` for each seed.

    ``"normal"``: i.i.d. ``N(0, 1/n)`` entries (Kaiming fan-in, gain 1: the expected output norm
    equals the input norm at every depth). The factors of a seed are drawn in order, so a deeper
    network shares its first factors with a shallower one. ``"lowrank"``: the first factor (the
    one that acts first) is a Gaussian rank-``init_rank`` product ``A B`` scaled to the same
    expected Frobenius norm, the others are normal, so ``W_e`` starts with rank at most
    ``init_rank`` while every later factor is full-rank (making *every* factor low-rank collapses
    deep products to rank one, from which gradient methods cannot recover). ``init_scale``
    multiplies every factor by ``init_scale ** (1 / depth)``, so the expected norm of ``W_e`` at
    initialisation is ``init_scale`` times the Kaiming value at every depth (the distribution of
    rho is unchanged: rho is scale invariant).
    """
    depth = check_int(depth, "depth")
    n = check_int(n, "n")
    seeds = check_seeds(seeds)
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if not init_scale > 0:
        raise ValueError(f"init_scale must be positive, got {init_scale}")
    if init == "lowrank":
        init_rank = check_int(init_rank, "init_rank")
        if init_rank > n:
            raise ValueError(f"init_rank must be <= n = {n}, got {init_rank}")
    out = []
    for s in seeds:
        w = torch.randn(depth, n, n, generator=seeding.torch_generator(s, "deep-linear-init"),
                        dtype=DTYPE) / math.sqrt(n)
        if init == "lowrank":
            gen = seeding.torch_generator(s, "deep-linear-init-lowrank")
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


def _snapshot(w: torch.Tensor, problem: Problem):
    w = w.detach()
    return (problem.train_loss(w).numpy(), problem.test_loss(w).numpy(), np.asarray(spectral_entropy(w)))


def _merge_per_seed(per_seed) -> list:
    """Records of one-seed runs (lists of ``(step, train, test, rho)``) as batched records,
    truncated to the shortest run."""
    length = min(len(r) for r in per_seed)
    return [(per_seed[0][k][0],) + tuple(np.concatenate([r[k][j] for r in per_seed]) for j in (1, 2, 3))
            for k in range(length)]


def _finish(method, depth, records, w0, w1, hyper) -> TrainResult:
    steps = np.array([r[0] for r in records])
    return TrainResult(method, depth, steps, np.stack([r[1] for r in records]),
                       np.stack([r[2] for r in records]), np.stack([r[3] for r in records]),
                       w0.detach().clone(), w1.detach().clone(), hyper)


DEFAULT_LR = {"adam": 3e-3, "lbfgs": 1.0}


def curvature_lr(problem: Problem, depth: int, eta: float = 0.5) -> np.ndarray:
    """Per-seed step sizes for (momentum) gradient descent: ``eta`` over the largest curvature at a
    balanced solution.

    Near a balanced factorisation of ``W*`` (every factor with singular values
    ``sigma_i(W*)^(1/d)``) the loss Hessian has top eigenvalue about
    ``c * d * sigma_max(W*)^(2 (d-1) / d)``, where ``c`` is the top curvature of the loss in the
    end-to-end map (:meth:`RegressionProblem.map_curvature`); plain gradient descent is stable
    for ``eta < 2``. One value per seed, so that a seed trains the same alone or in a batch.
    """
    depth = check_int(depth, "depth")
    if not eta > 0:
        raise ValueError(f"eta must be positive, got {eta}")
    top = torch.linalg.matrix_norm(problem.target, ord=2)
    curvature = problem.map_curvature() * depth * top ** (2.0 * (depth - 1) / depth)
    return (float(eta) / curvature).numpy()


def _train_first_order(problem, factors, method, lr, steps, record_every, lr_schedule):
    """Full-batch SGD / Nesterov / Adam at a constant step or with a cosine decay to zero over
    ``steps`` (the decay lets Adam settle instead of oscillating at the end of the budget).

    ``lr`` is one step size, or for SGD and Nesterov one per seed: their updates are linear in
    the gradients, so weighting seed ``s``'s loss by ``lr[s] / max(lr)`` at step size ``max(lr)``
    is exactly gradient descent at ``lr[s]`` for that seed.
    """
    lr = np.broadcast_to(np.asarray(lr, dtype=np.float64), (factors.shape[0],))
    base = float(lr.max())
    if method == "adam" and not np.all(lr == base):
        raise ValueError("adam takes a single learning rate, not one per seed")
    weights = torch.as_tensor(lr / base, dtype=DTYPE)
    w = factors.clone().requires_grad_(True)
    if method == "sgd":
        opt = torch.optim.SGD([w], lr=base)
    elif method == "nesterov":
        opt = torch.optim.SGD([w], lr=base, momentum=0.9, nesterov=True)
    else:
        opt = torch.optim.Adam([w], lr=base)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps) if lr_schedule == "cosine" else None
    records = []
    for t in range(steps + 1):
        if t % record_every == 0 or t == steps:
            records.append((t, *_snapshot(end_to_end(w), problem)))
        if t == steps:
            break
        opt.zero_grad(set_to_none=True)
        # SUM over seeds: each seed's factors get exactly their own (weighted) gradient.
        (weights * problem.train_loss(end_to_end(w))).sum().backward()
        opt.step()
        if sched is not None:
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
        es = cma.CMAEvolutionStrategy(x0, sigma0, {
            "CMA_diagonal": True, "popsize": popsize, "seed": cma_seed,
            "verbose": -9, "maxfevals": evaluations, "tolfun": 0, "tolfunhist": 0, "tolx": 0,
            "tolstagnation": 10 ** 9, "tolflatfitness": 10 ** 9})
        w = factors[i:i + 1]
        records = [(0, *_snapshot(end_to_end(w), sub))]
        next_record = record_every
        while es.countevals < evaluations:
            pop = es.ask()
            losses = sub.train_loss(end_to_end(torch.as_tensor(np.array(pop)).reshape(-1, depth, n, n)))
            es.tell(pop, losses.tolist())
            if es.countevals >= next_record or es.countevals >= evaluations:
                w = torch.as_tensor(es.result.xbest).reshape(1, depth, n, n)
                records.append((min(es.countevals, evaluations), *_snapshot(end_to_end(w), sub)))
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
    up, down = 2.0 ** 0.25, 2.0 ** (-1 / 16)
    records = [(0, *_snapshot(end_to_end(w), problem))]
    for t in range(1, evaluations + 1):
        noise = torch.stack([torch.randn(depth, n, n, generator=g, dtype=DTYPE) for g in gens])
        cand = w + sigma[:, None, None, None] * noise
        cand_loss = problem.train_loss(end_to_end(cand))
        better = cand_loss < loss
        w = torch.where(better[:, None, None, None], cand, w)
        loss = torch.where(better, cand_loss, loss)
        sigma = torch.where(better, sigma * up, sigma * down)
        if t % record_every == 0 or t == evaluations:
            records.append((t, *_snapshot(end_to_end(w), problem)))
    return w, records


def train(problem: Problem, depth: int, method: str = "adam", *, init: str = "normal",
          init_rank: int = 4, init_scale: float = 1.0, steps: int = 2000, lr=None,
          eta: float = 0.5, lr_schedule: str = "cosine", record_every: int = 100,
          sigma0: float | None = None, popsize: int = 32) -> TrainResult:
    """Train depth-``depth`` linear networks (one per seed of ``problem``) with ``method``.

    ``method`` is one of ``OPTIMIZERS``. For ``sgd``, ``nesterov`` (momentum 0.9), ``adam``
    ``steps`` counts full-batch gradient steps, taken at ``lr`` (for SGD and Nesterov one value or
    one per seed) with ``lr_schedule`` ("cosine" decay to zero or "constant"); without ``lr``, SGD
    and Nesterov use :func:`curvature_lr` with ``eta``, Adam ``DEFAULT_LR``. For ``lbfgs``
    ``steps`` counts inner L-BFGS iterations (one ``step`` call per ``record_every``); for ``cma``
    and ``random_search`` it counts loss evaluations per seed. ``sigma0`` (gradient-free only) is
    the initial per-entry search scale, by default a tenth of the initial per-entry standard
    deviation ``1/sqrt(n)``.
    """
    depth = check_int(depth, "depth")
    steps = check_int(steps, "steps")
    record_every = check_int(record_every, "record_every")
    if method not in OPTIMIZERS:
        raise ValueError(f"method must be one of {OPTIMIZERS}, got {method!r}")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {lr_schedule!r}")
    factors = init_factors(depth, problem.n, problem.seeds, init, init_rank, init_scale)
    w0 = end_to_end(factors)
    hyper = {"init": init, "init_scale": float(init_scale), "steps": steps}
    if method in GRADIENT_OPTIMIZERS:
        if lr is None:
            lr = DEFAULT_LR[method] if method in DEFAULT_LR else curvature_lr(problem, depth, eta)
        lr = np.asarray(lr, dtype=np.float64)
        if not (lr.ndim == 0 or lr.shape == (len(problem.seeds),)) or not np.all(lr > 0):
            raise ValueError(f"lr must be positive: one value, or one per seed, got {lr}")
        hyper["lr"] = lr.tolist()
        if method == "lbfgs":
            if lr.ndim:
                raise ValueError("lbfgs takes a single learning rate, not one per seed")
            lr = float(lr)
            w, records = _train_lbfgs(problem, factors, lr, steps, record_every)
        else:
            hyper["lr_schedule"] = lr_schedule
            w, records = _train_first_order(problem, factors, method, lr, steps, record_every, lr_schedule)
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
