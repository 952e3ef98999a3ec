"""Deep linear networks ``W_d ... W_1`` and the under-determined problems they are trained on:
regression and completion (training itself, by six optimizers, is :mod:`support.linear_training`).

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
    non-zero start that component carries the initialisation's excess rank, and depth removes its
    part outside the target's column space (:func:`unobserved_parts`, :func:`unobserved_image_share`).
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
* **Step sizes.** Gradient descent (plain or Nesterov) takes one step per seed, a fraction of the
  inverse of the loss's largest curvature (:func:`gauss_newton_top`), re-measured during training:
  a random deep start is far more curved than the solution, so no step fixed in advance both
  converges on every seed and trains the deepest networks in a fixed budget.
* **Random streams** come from :mod:`support.seeding`, one named stream per purpose (target,
  inputs or mask, initialisation, search), so a seed gives the same target whatever the batch.
* **rho.** :func:`support.rank.spectral_entropy` of ``W_e`` (entropy of the normalised singular
  values, in nats), recorded over training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from support import seeding
from support.checks import check_int, check_seeds

INITS = ("normal", "lowrank")
DTYPE = torch.float64


# --------------------------------------------------------------------------------------------
# Targets and problems
# --------------------------------------------------------------------------------------------


def make_target(
    n: int, rank: int | None, seed: int, entry_rms: float = 1.0
) -> torch.Tensor:
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
        return RegressionProblem(
            self.target[sl], self.inputs[sl], (self.seeds[index],), self.target_rank
        )

    def train_loss(self, w: torch.Tensor) -> torch.Tensor:
        """Per-seed relative training loss of maps ``w`` (``(..., S, n, n)``)."""
        outputs = self.target @ self.inputs
        err = ((w - self.target) @ self.inputs) ** 2
        return err.sum(dim=(-2, -1)) / (outputs**2).sum(dim=(-2, -1))

    def test_loss(self, w: torch.Tensor) -> torch.Tensor:
        """Per-seed relative test loss ``||w - W*||_F^2 / ||W*||_F^2``."""
        return ((w - self.target) ** 2).sum(dim=(-2, -1)) / (self.target**2).sum(
            dim=(-2, -1)
        )

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
        return CompletionProblem(
            self.target[sl], self.mask[sl], (self.seeds[index],), self.target_rank
        )

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


Problem = RegressionProblem | CompletionProblem


def make_regression_problem(
    n: int = 32,
    target_rank: int | None = 8,
    n_samples: int = 27,
    target_scale: float = 1.0,
    seeds=(0,),
) -> RegressionProblem:
    """One regression problem per seed: a target and ``n_samples`` standard Gaussian inputs.

    ``target_scale`` is the root mean square output of the target on a standard Gaussian input
    (``||W*||_F^2 = n target_scale^2``); a network initialised by :func:`init_factors` has root
    mean square output 1 at every depth, so ``target_scale = 1`` puts target and initial network
    on the same scale. ``n_samples < n`` makes the problem under-determined.
    """
    n = check_int(n, "n")
    n_samples = check_int(n_samples, "n_samples")
    if n_samples >= n:
        raise ValueError(
            f"n_samples must be < n = {n} for an under-determined problem, got {n_samples}"
        )
    if not target_scale > 0:
        raise ValueError(f"target_scale must be positive, got {target_scale}")
    seeds = check_seeds(seeds)
    targets = [
        make_target(n, target_rank, s, entry_rms=target_scale / math.sqrt(n))
        for s in seeds
    ]
    inputs = [
        torch.randn(
            n,
            n_samples,
            generator=seeding.torch_generator(s, "regression-inputs"),
            dtype=DTYPE,
        )
        for s in seeds
    ]
    return RegressionProblem(
        torch.stack(targets), torch.stack(inputs), tuple(seeds), target_rank
    )


def make_completion_problem(
    n: int = 32, target_rank: int | None = 8, observed_fraction: float = 0.8, seeds=(0,)
) -> CompletionProblem:
    """One completion problem per seed: a target (mean squared entry 1) and a uniformly random set
    of ``round(observed_fraction * n^2)`` observed entries.

    With ``observed_fraction < 1`` there are fewer observations than the ``n^2`` unknowns of the
    end-to-end map: infinitely many maps fit the observed entries exactly.
    """
    n = check_int(n, "n")
    if not 0 < observed_fraction <= 1:
        raise ValueError(
            f"observed_fraction must lie in (0, 1], got {observed_fraction}"
        )
    m = round(observed_fraction * n * n)
    if m < 1:
        raise ValueError(
            f"observed_fraction={observed_fraction} observes no entry of a {n}x{n} map"
        )
    seeds = check_seeds(seeds)
    targets, masks = [], []
    for s in seeds:
        targets.append(make_target(n, target_rank, s))
        order = torch.randperm(
            n * n, generator=seeding.torch_generator(s, "completion-mask")
        )
        mask = torch.zeros(n * n, dtype=torch.bool)
        mask[order[:m]] = True
        masks.append(mask.reshape(n, n))
    return CompletionProblem(
        torch.stack(targets), torch.stack(masks), tuple(seeds), target_rank
    )


def unobserved_parts(
    problem: Problem, w: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split the unobserved part ``B`` of maps ``w`` (:meth:`~RegressionProblem.unobserved_part`)
    by the target's column space: returns ``(||(I - Q) B||_F^2, ||Q B||_F^2)`` per seed, relative
    to ``||W*||_F^2``, where ``Q`` projects onto the orthogonal complement of the column space of
    ``W*`` (for a full-rank target ``Q = 0``). In the stored runs of *Depth and the solutions
    gradient descent finds* training from depth 4 on leaves little of the second part; that is
    observed there, not proved."""
    b = problem.unobserved_part(w)
    outside = _target_range_complement(problem.target, problem.target_rank) @ b
    scale = (problem.target**2).sum(dim=(-2, -1))
    return ((b - outside) ** 2).sum(dim=(-2, -1)) / scale, (outside**2).sum(
        dim=(-2, -1)
    ) / scale


def unobserved_image_share(lower: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """How much of the hidden image of the unobserved input directions escapes the data's image.

    ``lower`` is the product ``W_{d-1} ... W_1`` of the factors below the last (``(..., n, n)``;
    the identity for depth 1) and ``inputs`` the training inputs ``X`` (``(..., n, N)``). Returns
    ``||Pi M (I - P)||_F^2 / ||M (I - P)||_F^2`` with ``M = lower``, ``P`` the projector onto the
    span of ``X`` and ``Pi`` the projector onto the orthogonal complement of the span of ``M X``.
    It is exactly 1 at depth 1 and, at initialisation with Gaussian factors, falls with depth
    (measured, not proved). Evaluated at a zero-loss limit of gradient flow (``M = M_inf``),
    it enters the bound on what remains of the initial map's component outside the target's
    column space (*Depth and the solutions gradient descent finds*, proposition "Depth d").
    Evaluated at initialisation it is no bound on what training keeps, because the lower
    factors move during training.
    """
    if lower.shape[-1] != lower.shape[-2] or inputs.shape[-2] != lower.shape[-1]:
        raise ValueError(
            f"lower must be (..., n, n) and inputs (..., n, N), got {tuple(lower.shape)} "
            f"and {tuple(inputs.shape)}"
        )
    n = lower.shape[-1]
    eye = torch.eye(n, dtype=lower.dtype)
    m = lower @ (eye - inputs @ torch.linalg.pinv(inputs))
    hidden = lower @ inputs
    escaped = m - hidden @ torch.linalg.pinv(hidden) @ m
    return (escaped**2).sum(dim=(-2, -1)) / (m**2).sum(dim=(-2, -1))


# --------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------


def init_factors(
    depth: int,
    n: int,
    seeds,
    init: str = "normal",
    init_rank: int = 4,
    init_scale: float = 1.0,
) -> torch.Tensor:
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
        w = torch.randn(
            depth,
            n,
            n,
            generator=seeding.torch_generator(s, "deep-linear-init"),
            dtype=DTYPE,
        ) / math.sqrt(n)
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
        raise ValueError(
            f"factors must have shape (S, d, n, n), got {tuple(factors.shape)}"
        )
    w = factors[:, 0]
    for i in range(1, factors.shape[1]):
        w = factors[:, i] @ w
    return w


# --------------------------------------------------------------------------------------------
# Curvature
# --------------------------------------------------------------------------------------------


def _map_hessian_product(problem: Problem, u: torch.Tensor) -> torch.Tensor:
    """Hessian of the (quadratic) train loss in the end-to-end map applied to ``u``: the gradient
    at ``W* + u``, since the gradient vanishes at ``W*`` and is linear in the map."""
    w = (problem.target + u).detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(problem.train_loss(w).sum(), w)
    return grad


def gauss_newton_top(
    problem: Problem,
    factors: torch.Tensor,
    iterations: int = 50,
    start: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-seed largest eigenvalue of the Gauss-Newton matrix ``J^T H J`` of the train loss in the
    factors ``(S, d, n, n)`` (``J``: Jacobian of the end-to-end map; ``H``: the loss's Hessian in
    the map), by power iteration; returns the eigenvalues ``(S,)`` and the last iterate, which
    warm-starts the next call (``start``). Near a minimum this is the curvature that limits the
    step of gradient descent. The seeds' blocks are independent, so the iteration runs batched,
    normalising per seed; without ``start`` it begins from the stream ``"curvature-probe"``."""
    iterations = check_int(iterations, "iterations")
    factors = factors.detach().requires_grad_(True)
    if start is None:
        start = torch.stack(
            [
                torch.randn(
                    factors.shape[1:],
                    dtype=factors.dtype,
                    generator=seeding.torch_generator(s, "curvature-probe"),
                )
                for s in problem.seeds
            ]
        )
    v = start
    mapped = end_to_end(factors)
    for _ in range(iterations):
        v = v / torch.linalg.vector_norm(v, dim=(1, 2, 3), keepdim=True)
        # J v by propagating the tangent through the product (W_i + t V_i), first factor first
        w, pushed = factors[:, 0].detach(), v[:, 0]
        for i in range(1, factors.shape[1]):
            pushed = factors[:, i].detach() @ pushed + v[:, i] @ w
            w = factors[:, i].detach() @ w
        hessian_pushed = _map_hessian_product(problem, pushed)
        (v_next,) = torch.autograd.grad(
            mapped, factors, hessian_pushed, retain_graph=True
        )
        top = (v_next * v).sum(dim=(1, 2, 3))
        v = v_next
    return top.detach(), v.detach()
