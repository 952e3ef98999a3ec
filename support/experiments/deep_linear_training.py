"""Recipes of the chapter *Depth and the solutions gradient descent finds*: setups, sweeps, stored results.

The chapter (``book/deep_linear_training.ipynb``) explains every choice made here; the concepts
(problems, networks, training by six optimizers) live in :mod:`support.linear_nets`.

* :data:`PROBLEMS`: the main problem (under-determined regression) and the second one (matrix
  completion), each with the optimizer and budget of its depth sweep.
* :data:`OPTIMIZER_BUDGETS`: how each of the six optimizers is run in the optimizer sweep
  (the paper's Observation 3).
* :data:`SCALES`: seeds and depths of the chapter's live slice ("quick") and of the stored runs
  ("paper"). The depth sweeps use the same budget at both scales, so the live slice recomputes
  part of the stored run exactly; only the optimizer sweep's budgets shrink at "quick".
* :func:`depth_sweep` and :func:`optimizer_sweep` run one sweep; :func:`stored` loads a stored
  result (:data:`RESULTS`), computing and storing it first when it is missing.

Command line (each result takes minutes to tens of minutes on one CPU core)::

    python -m support.experiments.deep_linear_training store regression --scale paper
    python -m support.experiments.deep_linear_training store regression-optimizers completion
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from support import linear_nets as ln
from support import linear_training as lt
from support import results
from support.experiments import command_line as cli
from support.rank import spectral_entropy

TARGETS = {"lowrank": 8, "fullrank": None}

#: What is trained. Regression: ``n_samples`` Gaussian inputs of a 32 x 32 map, a target with the
#: output scale of the Kaiming-initialised network, full-batch gradient descent with Nesterov
#: momentum at a step of ``eta`` over the current curvature, for a budget that takes depth 1 to its
#: closed-form limit. Completion: 80% of the entries observed, Adam with a cosine decay.
PROBLEMS = {
    "regression": {
        "n": 32,
        "target_rank": 8,
        "n_samples": 27,
        "target_scale": 1.0,
        "init_rank": 4,
        "method": "nesterov",
        "eta": 0.5,
        "lr_schedule": "constant",
        "steps": 4000,
    },
    "completion": {
        "n": 32,
        "target_rank": 8,
        "observed_fraction": 0.8,
        "init_rank": 4,
        "method": "adam",
        "lr": 3e-3,
        "lr_schedule": "cosine",
        "steps": 3000,
    },
}

#: The optimizer sweep: gradient steps (SGD and Nesterov at ``eta`` over the current curvature,
#: Adam at a fixed step), L-BFGS iterations, or loss evaluations per seed (CMA-ES, random search).
OPTIMIZER_BUDGETS = {
    "sgd": {"eta": 1.0, "lr_schedule": "constant", "steps": 4000},
    "nesterov": {"eta": 0.5, "lr_schedule": "constant", "steps": 4000},
    "adam": {"lr": 1e-3, "lr_schedule": "cosine", "steps": 4000},
    "lbfgs": {"steps": 500},
    "cma": {"steps": 10000, "popsize": 32},
    "random_search": {"steps": 10000},
}

SCALES = {
    "quick": {
        "seeds": (0, 1),
        "depths": (1, 4, 8),
        "optimizer_depths": (1, 4),
        "optimizer_budget": 0.25,
    },
    "paper": {
        "seeds": (0, 1, 2, 3, 4),
        "depths": (1, 2, 4, 8, 16, 24, 32),
        "optimizer_depths": (1, 2, 4, 8),
        "optimizer_budget": 1.0,
    },
}

#: Stored results (``book/results/<name>_<scale>``) and the problem each one trains on.
RESULTS = {
    "regression": ("deep_linear_regression", "regression"),
    "regression-optimizers": ("deep_linear_optimizers_regression", "regression"),
    "completion": ("deep_linear_completion", "completion"),
}
RECORD_POINTS = 8


def settings(scale: str) -> dict:
    """Seeds, depths and optimizer budget factor of ``scale`` ("quick" or "paper")."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {tuple(SCALES)}, got {scale!r}")
    return dict(SCALES[scale])


def make_problem(problem: str, target: str, seeds):
    """The ``problem`` ("regression" or "completion") with the ``target`` ("lowrank" or
    "fullrank") of :data:`PROBLEMS`, one instance per seed."""
    if problem not in PROBLEMS:
        raise ValueError(f"problem must be one of {tuple(PROBLEMS)}, got {problem!r}")
    if target not in TARGETS:
        raise ValueError(f"target must be one of {tuple(TARGETS)}, got {target!r}")
    setup = PROBLEMS[problem]
    if problem == "regression":
        return ln.make_regression_problem(
            setup["n"],
            TARGETS[target],
            setup["n_samples"],
            setup["target_scale"],
            seeds,
        )
    return ln.make_completion_problem(
        setup["n"], TARGETS[target], setup["observed_fraction"], seeds
    )


def _training_kwargs(setup: dict) -> dict:
    keys = ("init_rank", "eta", "lr", "lr_schedule", "steps", "popsize")
    return {k: setup[k] for k in keys if k in setup}


def _stack(runs, problem) -> dict:
    """Arrays ``(n_depths, S)`` of final train/test loss, rho at init and at the end, and the
    unobserved part of the map split by the target's column space (:func:`ln.unobserved_parts`)
    at init and at the end; histories ``(n_depths, T, S)`` with their steps ``(n_depths, T)``."""
    out = {
        "train_loss": np.stack([r.train_loss[-1] for r in runs]),
        "test_loss": np.stack([r.test_loss[-1] for r in runs]),
        "rho_init": np.stack([r.rho_init for r in runs]),
        "rho_final": np.stack([r.rho_final for r in runs]),
        "history_steps": np.stack([r.steps for r in runs]),
        "history_train": np.stack([r.train_loss for r in runs]),
        "history_test": np.stack([r.test_loss for r in runs]),
        "history_rho": np.stack([r.rho for r in runs]),
    }
    for when, attr in (("init", "initial_map"), ("final", "final_map")):
        parts = [ln.unobserved_parts(problem, getattr(r, attr)) for r in runs]
        out[f"unobserved_inside_{when}"] = np.stack([p[0].numpy() for p in parts])
        out[f"unobserved_outside_{when}"] = np.stack([p[1].numpy() for p in parts])
    return out


def depth_sweep(problem: str, scale_settings: dict, init: str, target: str) -> dict:
    """Train every depth of ``scale_settings["depths"]`` from ``init`` on ``problem``/``target``
    with the optimizer and budget of :data:`PROBLEMS`; returns the arrays of ``_stack`` plus
    ``target_rho`` and ``depth_one_limit_rho`` (per seed: rho of where gradient flow takes a
    single layer from the shared first factor, in closed form)."""
    if init not in ln.INITS:
        raise ValueError(f"init must be one of {ln.INITS}, got {init!r}")
    setup = PROBLEMS[problem]
    instance = make_problem(problem, target, scale_settings["seeds"])
    kwargs = _training_kwargs(setup)
    record_every = max(1, kwargs["steps"] // RECORD_POINTS)
    runs = [
        lt.train_linear_network(
            instance, d, setup["method"], init=init, record_every=record_every, **kwargs
        )
        for d in scale_settings["depths"]
    ]
    out = _stack(runs, instance)
    out["target_rho"] = np.asarray(spectral_entropy(instance.target))
    first = ln.end_to_end(
        ln.init_factors(1, setup["n"], instance.seeds, init, setup["init_rank"])
    )
    out["depth_one_limit_rho"] = np.asarray(
        spectral_entropy(instance.depth_one_limit(first))
    )
    return out


def optimizer_run(
    problem: str, scale_settings: dict, method: str, depth: int
) -> lt.TrainResult:
    """One optimizer at one depth on ``problem`` with the low-rank target from the normal init,
    with the budget of :data:`OPTIMIZER_BUDGETS` times ``scale_settings["optimizer_budget"]``."""
    if method not in OPTIMIZER_BUDGETS:
        raise ValueError(
            f"method must be one of {tuple(OPTIMIZER_BUDGETS)}, got {method!r}"
        )
    instance = make_problem(problem, "lowrank", scale_settings["seeds"])
    kwargs = _training_kwargs(OPTIMIZER_BUDGETS[method])
    kwargs["steps"] = max(
        1, round(kwargs["steps"] * scale_settings["optimizer_budget"])
    )
    return lt.train_linear_network(
        instance,
        depth,
        method,
        record_every=max(1, kwargs["steps"] // RECORD_POINTS),
        **kwargs,
    )


def optimizer_sweep(problem: str, scale_settings: dict, methods=lt.OPTIMIZERS) -> dict:
    """:func:`optimizer_run` for every method and depth of ``scale_settings["optimizer_depths"]``;
    returns ``{method: arrays}`` as :func:`depth_sweep` does (without the target's rho)."""
    instance = make_problem(problem, "lowrank", scale_settings["seeds"])
    depths = scale_settings["optimizer_depths"]
    return {
        m: _stack(
            [optimizer_run(problem, scale_settings, m, d) for d in depths], instance
        )
        for m in methods
    }


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def compute(name: str, scale: str) -> dict:
    """Run the sweep behind the stored result ``name`` (a key of :data:`RESULTS`) at ``scale``;
    returns what :func:`support.results.cached` stores: ``config``, ``arrays`` and ``seeds``.

    Depth sweeps store, for every initialisation and target, the arrays of :func:`depth_sweep`
    prefixed ``<init>_<target>_``, plus ``depths`` and, for the main case (normal init,
    low-rank target), ``rho_final`` and ``test_loss`` ``(D, seeds)``. The optimizer sweep stores
    the arrays of :func:`optimizer_sweep` prefixed by the method and ``depths``.
    """
    if name not in RESULTS:
        raise ValueError(f"name must be one of {tuple(RESULTS)}, got {name!r}")
    problem = RESULTS[name][1]
    scale_settings = settings(scale)
    start = time.perf_counter()
    arrays = {}
    if name.endswith("optimizers"):
        for method in lt.OPTIMIZERS:
            for key, value in optimizer_sweep(problem, scale_settings, (method,))[
                method
            ].items():
                arrays[f"{method}_{key}"] = value
            _log(f"  {method} done after {time.perf_counter() - start:.0f} s")
        arrays["depths"] = np.asarray(scale_settings["optimizer_depths"])
        config = {
            "problem": PROBLEMS[problem],
            "optimizers": OPTIMIZER_BUDGETS,
            **scale_settings,
        }
    else:
        for init in ln.INITS:
            for target in TARGETS:
                for key, value in depth_sweep(
                    problem, scale_settings, init, target
                ).items():
                    arrays[f"{init}_{target}_{key}"] = value
                _log(
                    f"  {init} init, {target} target done after {time.perf_counter() - start:.0f} s"
                )
        arrays["depths"] = np.asarray(scale_settings["depths"])
        arrays["rho_final"] = arrays["normal_lowrank_rho_final"]
        arrays["test_loss"] = arrays["normal_lowrank_test_loss"]
        config = {
            "problem": PROBLEMS[problem],
            "targets": TARGETS,
            "inits": ln.INITS,
            "main": "normal init, low-rank target",
            **scale_settings,
        }
    return {"config": config, "arrays": arrays, "seeds": scale_settings["seeds"]}


def result_name(name: str, scale: str) -> str:
    """File stem of the stored result ``name`` at ``scale``, e.g. ``deep_linear_regression_paper``."""
    if name not in RESULTS:
        raise ValueError(f"name must be one of {tuple(RESULTS)}, got {name!r}")
    settings(scale)
    return f"{RESULTS[name][0]}_{scale}"


def stored(
    name: str, scale: str = "paper", recompute: bool = False
) -> results.StoredResult:
    """The stored result ``name`` at ``scale``; computed and stored first (from a clean tree)
    when it is missing or ``recompute`` is set."""
    return results.cached(
        result_name(name, scale),
        lambda: compute(name, scale),
        recompute=recompute,
        device="cpu",
    )


def _store_command(args) -> int:
    torch.set_num_threads(args.threads)
    for name in args.names:
        start = time.perf_counter()
        _log(f"{result_name(name, args.scale)}:")
        result = stored(name, args.scale, recompute=True)
        _log(f"  {results.describe(result)} ({time.perf_counter() - start:.0f} s)")
    return 0


def main(argv=None) -> int:
    """Compute and store results of the chapter *Depth and the solutions gradient descent finds*."""
    top, sub = cli.parser("deep_linear_training", main.__doc__)
    store = cli.command(
        sub, "store", _store_command, "compute and store results", stores=False
    )
    store.add_argument(
        "names", nargs="+", choices=tuple(RESULTS), help="results to compute"
    )
    store.add_argument("--scale", choices=tuple(SCALES), default="paper")
    store.add_argument(
        "--threads",
        type=cli.positive_int,
        default=1,
        help="torch threads (32 x 32 matrices: one is fastest)",
    )
    return cli.run(top, argv)


if __name__ == "__main__":
    sys.exit(main())
