"""Recipes of the chapter *The asymptotic rank-volume theorem*: its Monte Carlo runs (stored results).

Each recipe returns what :func:`support.results.cached` stores (``config``, ``arrays``, ``seeds``);
the chapter loads them with ``results.cached(NAME, RECIPES[NAME], recompute=RECOMPUTE)``.

* ``rank_volume_width_sweep`` (:func:`width_sweep`): ``rho - log n`` at widths 64 to 512 and depths
  1 to 64, against the large-width limit ``g(d)``.
* ``rank_volume_small_width_ordering`` (:func:`small_width_ordering`): empirical distribution
  functions of ``rho`` at widths 2 and 3, depths 1 to 8, 400,000 products each: the stochastic
  ordering in depth (proved at width 2, observed at width 3).
* ``rank_volume_supermartingale`` (:func:`supermartingale_search`): the one-step drift
  ``E rho(W Sigma) - rho(Sigma)`` over families of spectra at widths 3, 4, 6 and 8 (estimates not
  resolved at five standard errors re-measured with ten times the draws), its first-order
  behaviour near rank one, and an adversarial search for the largest normalised drift at widths
  3 and 6.
* ``rank_volume_proportional`` (:func:`proportional_regime`): ``rho`` at depth ``d = beta n``,
  ``beta`` in {1/2, 1, 2}, widths 8 to 128.

Command line (stores every result named, or all; about 15 minutes on two CPU cores)::

    python -m support.experiments.rank_volume_theorem store [NAME ...] \\
        [--device auto] [--allow-dirty]
"""

from __future__ import annotations

import functools
import math
import sys
import time

import numpy as np
from scipy import optimize

from support import rmt, simulate
from support.experiments import command_line as cli
from support.rank import entropy_of_spectrum
from support.seeding import generator

WIDTH_SWEEP = {64: 512, 128: 256, 256: 128, 512: 64}
WIDTH_SWEEP_DEPTHS = (1, 2, 4, 8, 16, 32, 64)

ORDERING_WIDTHS = (2, 3)
ORDERING_DEPTHS = tuple(range(1, 9))
ORDERING_SAMPLES = 400_000
ORDERING_GRID_POINTS = 2001

DRIFT_WIDTHS = (3, 4, 6, 8)
DRIFT_SAMPLES = 20_000
DRIFT_SEARCH_WIDTHS = (3, 6)
DRIFT_SEARCH_STARTS = 4
DRIFT_SEARCH_EVALUATIONS = 150
DRIFT_RECHECK_SAMPLES = 200_000
DRIFT_RESOLVED_Z = 5.0
DRIFT_FIRST_ORDER_EPS = (1e-3, 1e-4)

PROPORTIONAL_BETAS = (0.5, 1.0, 2.0)
PROPORTIONAL_SAMPLES = {8: 8192, 16: 8192, 32: 4096, 64: 2048, 128: 1024}


def width_sweep(*, seed: int = 0, device=None) -> dict:
    """``rho - log n`` (mean and standard error over products) for the widths and sample counts of
    ``WIDTH_SWEEP`` at the depths ``WIDTH_SWEEP_DEPTHS``, Gaussian factors; the depths are
    checkpoints along the same chains (``support.simulate.sample_product_entropy_depths``)."""
    arrays = {}
    for n, samples in WIDTH_SWEEP.items():
        gap = simulate.sample_product_entropy_depths(
            n, list(WIDTH_SWEEP_DEPTHS), samples, seed=seed, device=device
        ) - math.log(n)
        arrays[f"gap_mean_n{n}"] = gap.mean(1)
        arrays[f"gap_se_n{n}"] = gap.std(1, ddof=1) / math.sqrt(samples)
    config = {
        "widths": list(WIDTH_SWEEP),
        "samples": list(WIDTH_SWEEP.values()),
        "depths": list(WIDTH_SWEEP_DEPTHS),
        "factors": "i.i.d. N(0, 1/n)",
        "sampler": "support.simulate.sample_product_entropy_depths",
    }
    return {"config": config, "arrays": arrays, "seeds": [seed]}


def small_width_ordering(*, seed: int = 0, device=None) -> dict:
    """Empirical distribution functions of ``rho`` at widths ``ORDERING_WIDTHS`` and depths
    ``ORDERING_DEPTHS`` from ``ORDERING_SAMPLES`` products each (the depths are checkpoints
    along the same chains), on ``ORDERING_GRID_POINTS`` thresholds spread over ``[0, log n]``.
    Arrays ``thresholds_n{n}`` and ``cdf_n{n}`` (shape ``(depths, thresholds)``: the fraction of
    products with ``rho < threshold``), plus ``mean_n{n}`` and ``std_n{n}`` per depth."""
    arrays = {}
    for n in ORDERING_WIDTHS:
        rho = simulate.sample_product_entropy_depths(
            n, list(ORDERING_DEPTHS), ORDERING_SAMPLES, seed=seed, device=device
        )
        thresholds = np.linspace(0.0, math.log(n), ORDERING_GRID_POINTS)
        rho_sorted = np.sort(rho, axis=1)
        arrays[f"thresholds_n{n}"] = thresholds
        arrays[f"cdf_n{n}"] = np.stack(
            [
                np.searchsorted(r, thresholds, side="left") / ORDERING_SAMPLES
                for r in rho_sorted
            ]
        )
        arrays[f"mean_n{n}"] = rho.mean(1)
        arrays[f"std_n{n}"] = rho.std(1, ddof=1)
    config = {
        "widths": list(ORDERING_WIDTHS),
        "depths": list(ORDERING_DEPTHS),
        "samples": ORDERING_SAMPLES,
        "factors": "i.i.d. N(0, 1)",
        "sampler": "support.simulate.sample_product_entropy_depths",
        "cdf": "fraction of samples with rho < threshold",
    }
    return {"config": config, "arrays": arrays, "seeds": [seed]}


def drift_survey_spectra(n: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The spectra ``Sigma`` (rows, ``s_1 = 1`` and decreasing) at which the drift is surveyed, and a
    family label per row: 0 log-normal (``s = exp(sigma g)``, ``sigma`` in 1/4 .. 4); 1 near rank ``k``
    (``k`` ones then ``eps``); 2 near rank one through rank two (``1, eps, eps^2, ..., eps^2``); 3 spectra
    of Gaussian products of depth 1 to 32 (the states the chain visits). ``eps`` runs from 1e-4 to
    1/2: closer to rank one the drift (of order ``eps``) is below what Monte Carlo resolves, and the
    chapter treats that limit to first order instead (see :func:`supermartingale_search`)."""
    import torch

    rng = generator(seed, "drift_survey", n)
    spectra, family = [], []
    for sigma in (0.25, 0.5, 1.0, 2.0, 4.0):
        for _ in range(12):
            spectra.append(np.exp(sigma * rng.standard_normal(n)))
            family.append(0)
    for k in range(1, n):
        for eps in np.geomspace(1e-4, 0.5, 6):
            spectra.append(np.r_[np.ones(k), np.full(n - k, eps)])
            family.append(1)
    for eps in np.geomspace(1e-4, 0.5, 8):
        spectra.append(np.r_[1.0, eps, np.full(n - 2, eps * eps)])
        family.append(2)
    for depth in (1, 2, 4, 8, 16, 32):
        product = rmt.gaussian_products(n, depth, batch=6, seed=seed)[depth][0]
        spectra.extend(torch.linalg.svdvals(product).cpu().numpy())
        family.extend([3] * 6)
    spectra = np.sort(np.abs(np.array(spectra)), axis=1)[:, ::-1]
    return spectra / spectra[:, :1], np.array(family)


def _normalised_drift(spectra, drift):
    """Drift divided by ``1 - p_1`` (the mass off the top singular value), which stays of order one
    near rank one where ``rho`` and the drift both vanish."""
    # 1 - p_1 without rounding near rank one
    off_top = spectra[:, 1:].sum(1) / spectra.sum(1)
    return drift / off_top


DRIFT_SEARCH_MIN_LOG = math.log(1e-8)


def _spectrum_from_parameters(v):
    """``(1, e^-a_1, e^-(a_1+a_2), ...)`` with ``a_i = softplus(v_i)``, floored at ``1e-8``: every
    sorted spectrum whose smallest ratio stays where the singular values are accurate."""
    steps = np.logaddexp(0.0, np.asarray(v, dtype=np.float64))
    return np.exp(
        np.maximum(-np.concatenate([[0.0], np.cumsum(steps)]), DRIFT_SEARCH_MIN_LOG)
    )


def _adversarial_search(
    n: int, survey_spectra, survey_score, *, seed: int, device
) -> np.ndarray:
    """Nelder-Mead on the normalised drift (common random numbers, fixed seed) from the
    ``DRIFT_SEARCH_STARTS`` survey spectra with the largest normalised drift (excluding exact
    zeros); returns the spectra it ends at."""
    order = np.argsort(survey_score)[::-1]
    starts = [survey_spectra[i] for i in order if survey_spectra[i][-1] >= 1e-8][
        :DRIFT_SEARCH_STARTS
    ]
    found = []
    for start in starts:
        logs = -np.log(start)
        steps = np.maximum(np.diff(logs), 1e-6)
        v0 = np.log(np.expm1(steps))  # inverse softplus

        def objective(v):
            s = _spectrum_from_parameters(v)[None, :]
            drift, _ = rmt.entropy_drift(s, DRIFT_SAMPLES, seed=seed, device=device)
            return -float(_normalised_drift(s, drift)[0])

        res = optimize.minimize(
            objective,
            v0,
            method="Nelder-Mead",
            options={"maxfev": DRIFT_SEARCH_EVALUATIONS, "xatol": 1e-3, "fatol": 1e-5},
        )
        found.append(_spectrum_from_parameters(res.x))
    return np.array(found)


def supermartingale_search(*, seed: int = 0, device=None) -> dict:
    """The one-step drift ``E rho(W Sigma) - rho(Sigma)`` (``rmt.entropy_drift``, ``DRIFT_SAMPLES``
    common draws of ``W`` per width) over :func:`drift_survey_spectra` at every width in
    ``DRIFT_WIDTHS``. Estimates within ``DRIFT_RESOLVED_Z`` standard errors of zero are
    re-measured with ``DRIFT_RECHECK_SAMPLES`` fresh draws (``recheck_*``). Near rank one,
    ``Sigma = (1, eps, eps^2, ..., eps^2)`` at the ``eps`` of ``DRIFT_FIRST_ORDER_EPS`` is measured with
    ``DRIFT_RECHECK_SAMPLES`` draws (``first_order_*``): the chapter's first-order computation
    predicts drift / (1 - p_1) -> -(lambda_1 - lambda_2) there. At the widths
    ``DRIFT_SEARCH_WIDTHS`` an adversarial Nelder-Mead search for the largest normalised drift
    (drift / (1 - p_1)) is run; its end points are re-measured with fresh draws (so the search's
    selection bias does not enter). Arrays per width ``n``: ``spectra_n``, ``family_n``, ``drift_n``,
    ``drift_se_n``, ``rho_n``; ``recheck_index_n``, ``recheck_drift_n``, ``recheck_drift_se_n``;
    ``first_order_eps_n``, ``first_order_drift_n``, ``first_order_drift_se_n``; at the search
    widths ``search_spectra_n``, ``search_drift_n``, ``search_drift_se_n``."""
    arrays = {}
    for n in DRIFT_WIDTHS:
        arrays.update(_drift_at_width(n, seed, device))
    config = {
        "widths": list(DRIFT_WIDTHS),
        "samples": DRIFT_SAMPLES,
        "search_widths": list(DRIFT_SEARCH_WIDTHS),
        "search_starts": DRIFT_SEARCH_STARTS,
        "search_evaluations": DRIFT_SEARCH_EVALUATIONS,
        "recheck_samples": DRIFT_RECHECK_SAMPLES,
        "search_recheck_seed": seed + 1,
        "resolved_z": DRIFT_RESOLVED_Z,
        "unresolved_recheck_seed": seed + 2,
        "first_order_eps": list(DRIFT_FIRST_ORDER_EPS),
        "first_order_seed": seed + 3,
        "families": {
            0: "log-normal",
            1: "near rank k",
            2: "near rank one through rank two",
            3: "Gaussian products, depths 1-32",
        },
        "objective": "drift / (1 - p_1), p_1 = s_1 / sum(s)",
        "factor": "i.i.d. N(0, 1)",
    }
    return {"config": config, "arrays": arrays, "seeds": [seed]}


def _drift_at_width(n: int, seed: int, device) -> dict:
    """The arrays of :func:`supermartingale_search` at width ``n``: the survey, its rechecks, the
    near-rank-one spectra and (at the search widths) the adversarial search, in that order of
    draws."""
    arrays = {}
    spectra, family = drift_survey_spectra(n, seed=seed)
    drift, se = rmt.entropy_drift(spectra, DRIFT_SAMPLES, seed=seed, device=device)
    arrays.update(
        {
            f"spectra_{n}": spectra,
            f"family_{n}": family,
            f"drift_{n}": drift,
            f"drift_se_{n}": se,
            f"rho_{n}": entropy_of_spectrum(spectra),
        }
    )
    unresolved = np.flatnonzero(drift / se > -DRIFT_RESOLVED_Z)
    recheck, recheck_se = np.zeros(0), np.zeros(0)
    if len(unresolved):
        recheck, recheck_se = rmt.entropy_drift(
            spectra[unresolved], DRIFT_RECHECK_SAMPLES, seed=seed + 2, device=device
        )
    near_one = np.array(
        [np.r_[1.0, eps, np.full(n - 2, eps * eps)] for eps in DRIFT_FIRST_ORDER_EPS]
    )
    first, first_se = rmt.entropy_drift(
        near_one, DRIFT_RECHECK_SAMPLES, seed=seed + 3, device=device
    )
    arrays.update(
        {
            f"recheck_index_{n}": unresolved,
            f"recheck_drift_{n}": recheck,
            f"recheck_drift_se_{n}": recheck_se,
            f"first_order_eps_{n}": np.array(DRIFT_FIRST_ORDER_EPS),
            f"first_order_drift_{n}": first,
            f"first_order_drift_se_{n}": first_se,
        }
    )
    if n in DRIFT_SEARCH_WIDTHS:
        score = _normalised_drift(spectra, drift)
        found = _adversarial_search(n, spectra, score, seed=seed, device=device)
        recheck, recheck_se = rmt.entropy_drift(
            found, DRIFT_RECHECK_SAMPLES, seed=seed + 1, device=device
        )
        arrays.update(
            {
                f"search_spectra_{n}": found,
                f"search_drift_{n}": recheck,
                f"search_drift_se_{n}": recheck_se,
            }
        )
    return arrays


def proportional_regime(*, seed: int = 0, device=None) -> dict:
    """``rho`` of products of depth ``d = beta n`` for ``beta`` in ``PROPORTIONAL_BETAS`` at the
    widths and sample counts of ``PROPORTIONAL_SAMPLES`` (the depths are checkpoints along the
    same chains). Arrays ``rho_n{n}`` of shape ``(len(betas), samples)``."""
    arrays = {}
    for n, samples in PROPORTIONAL_SAMPLES.items():
        depths = [round(beta * n) for beta in PROPORTIONAL_BETAS]
        arrays[f"rho_n{n}"] = simulate.sample_product_entropy_depths(
            n, depths, samples, seed=seed, device=device
        )
    config = {
        "betas": list(PROPORTIONAL_BETAS),
        "widths": list(PROPORTIONAL_SAMPLES),
        "samples": list(PROPORTIONAL_SAMPLES.values()),
        "depth": "round(beta * n)",
        "factors": "i.i.d. N(0, 1)",
        "sampler": "support.simulate.sample_product_entropy_depths",
    }
    return {"config": config, "arrays": arrays, "seeds": [seed]}


RECIPES = {
    "rank_volume_width_sweep": width_sweep,
    "rank_volume_small_width_ordering": small_width_ordering,
    "rank_volume_supermartingale": supermartingale_search,
    "rank_volume_proportional": proportional_regime,
}


def _store_command(args) -> int:
    for name in args.names or list(RECIPES):
        start = time.perf_counter()
        recipe = functools.partial(RECIPES[name], seed=args.seed, device=args.device)
        cli.say(f"{name}: ...")
        cli.store(name, recipe, args, device=args.device)
        cli.say(f"  {time.perf_counter() - start:.0f} s")
    return 0


def main(argv=None) -> int:
    """Compute and store the Monte Carlo results of the rank-volume theorem chapter."""
    top, sub = cli.parser("rank_volume_theorem", main.__doc__)
    store = cli.command(sub, "store", _store_command, "compute and store results")
    store.add_argument(
        "names",
        nargs="*",
        choices=sorted(RECIPES),
        help="results to make (default: all)",
    )
    store.add_argument("--device", type=cli.device, default="auto")
    store.add_argument("--seed", type=cli.non_negative_int, default=0)
    return cli.run(top, argv)


if __name__ == "__main__":
    sys.exit(main())
