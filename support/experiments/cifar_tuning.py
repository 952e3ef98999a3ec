"""Recipes of the chapter *Expanded CNNs on CIFAR* that give every network its own hyper-parameters.

The CPU study (:mod:`support.experiments.cifar_expanded`) trains the plain network and its
expanded versions with one recipe. Two objections to that comparison are answered here:

* **Each network gets the learning rate that is best for it.** :func:`run_tuning` trains every
  expansion depth on a log grid of learning rates, crossed with the three ways of applying weight
  decay (:data:`DECAY_MODES`), and scores every cell on a *validation split*: training images
  that the training subset does not contain (:meth:`support.data.ImageArrays.with_validation`).
  The test set is never read. Where a network's best learning rate sits on the edge of the grid,
  the grid is extended by a factor of two beyond it until the best value is inside (or a larger
  rate diverges), at most ``max_extensions`` times. To fit the CPU budget the grid uses a
  shortened copy of the study's schedule (``tuning_epochs`` epochs, the same drops at 1/3 and
  2/3); for the plain network the grid's learning rates are also trained on the full schedule,
  which shows whether the short schedule ranks them the same way.
* **Weight decay on the factors is an explicit regulariser of its own.** Mode ``"factors"`` is
  the paper's recipe; ``"collapsed"`` puts the plain network's penalty on the effective weight
  instead (:func:`support.train.collapsed_weight_penalty`); ``"none"`` trains without decay.

:func:`run_tuned_study` then trains every network at its own best setting (5 paired seeds, the
full schedule, the full test set), and the decay-on-collapsed networks at their best learning
rate, so the chapter can say how much of a difference is the explicit regulariser.

Runs are independent processes (``jobs`` of them, one torch thread each: on a shared machine
that is faster than one process with several threads) and checkpoint every epoch, so rerunning
the same command resumes: a finished run is read back from its checkpoint in seconds. Results
are stored after every finished run; provenance records the commit the command started from.

Command line::

    python -m support.experiments.cifar_tuning tune plain5k --jobs 2     # the tuning grid
    python -m support.experiments.cifar_tuning study plain5k --jobs 2    # the tuned comparison
"""

from __future__ import annotations

import concurrent.futures as futures
import dataclasses
import math
import multiprocessing
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from support import data as data_mod
from support import paths, results
from support.experiments import cifar_expanded as ce
from support.experiments import command_line as cli
from support.train import NonFiniteLossError

DECAY_MODES = {
    "factors": {"weight_decay": 5e-4, "weight_decay_on": "factors"},
    "collapsed": {"weight_decay": 5e-4, "weight_decay_on": "collapsed"},
    "none": {"weight_decay": 0.0, "weight_decay_on": "factors"},
}
"""The three weight-decay modes: the paper's (SGD's decay on every factor), the plain network's
penalty on the collapsed weight, and none. At depth 1 "factors" and "collapsed" are one recipe."""


@dataclass(frozen=True)
class Tuning:
    """The tuning grid of one study: its learning rates, decay modes, schedule and split."""

    name: str
    study: ce.Study
    lrs: tuple = (0.0125, 0.025, 0.05, 0.1)
    modes: tuple = ("factors", "collapsed", "none")
    tuning_epochs: int = 60
    n_val: int = 5000
    split_seed: int = 0
    seed: int = 1000
    max_extensions: int = 3
    seeds: tuple = (0, 1, 2, 3, 4)
    synthetic: tuple | None = None  # (n_train, n_test) of a synthetic stand-in (tests)

    @property
    def spec(self) -> ce.Study:
        return self.study

    def load(self) -> data_mod.ImageArrays:
        """All of CIFAR-10 (or the synthetic stand-in); splits are taken from it."""
        if self.synthetic is not None:
            return data_mod.synthetic(*self.synthetic, seed=0)
        return data_mod.load_cifar("cifar10")

    def split(self, name: str) -> data_mod.ImageArrays:
        """The training subset with the validation split ("validation") or the test set ("test")."""
        full, spec = self.load(), self.spec
        if name == "validation":
            return full.with_validation(spec.n_train, self.n_val, self.split_seed)[0]
        return full.subset(spec.n_train, None, seed=0)

    @property
    def result_name(self) -> str:
        return f"cifar_tuning_{self.name}"

    @property
    def study_result_name(self) -> str:
        return f"cifar_study_{self.name}_tuned"

    def arms(self) -> list:
        """``(depth, mode)`` pairs tuned: every depth with every mode, except "collapsed" at
        depth 1 (the same recipe as "factors" there)."""
        return [
            (depth, mode)
            for depth in self.spec.depths
            for mode in self.modes
            if not (depth == 1 and mode == "collapsed")
        ]

    def config(self, *, lr: float, mode: str, epochs: int, seed: int):
        """The study's recipe with learning rate ``lr``, decay mode ``mode`` and ``epochs`` epochs
        (the drops stay at 1/3 and 2/3 of training)."""
        return dataclasses.replace(
            self.spec.config(), lr=lr, epochs=epochs, seed=seed, **DECAY_MODES[mode]
        )


TUNINGS = {t.name: t for t in (Tuning("plain5k", ce.STUDIES["plain5k"]),)}


# ------------------------------------------------------------------------ one run, in a worker
@dataclass(frozen=True)
class Run:
    """One training run: which network, setting and seed, on which split, with which checkpoint."""

    key: str
    depth: int
    lr: float
    mode: str
    epochs: int
    seed: int
    split: str  # "validation" (tuning) or "test" (the final comparison)
    checkpoint: str


_WORKER_DATA: dict = {}


def _execute(run: Run, tuning: Tuning, threads: int) -> dict:
    """Train ``run`` in this process (one torch thread); return its numbers, or ``diverged``."""
    torch.set_num_threads(threads)
    study = tuning.spec
    if (tuning.name, run.split) not in _WORKER_DATA:
        _WORKER_DATA[tuning.name, run.split] = tuning.split(run.split)
    data = _WORKER_DATA[tuning.name, run.split]
    config = tuning.config(lr=run.lr, mode=run.mode, epochs=run.epochs, seed=run.seed)
    final = run.split == "test"
    if not final:
        config = dataclasses.replace(config, train_eval=False, record_layer=None)
    examples = min(study.rho_examples, len(data.test_labels))
    try:
        out = ce.measure_run(
            data,
            "plain",
            depth=run.depth,
            config=config,
            model_kwargs=study.model_kwargs,
            device="cpu",
            checkpoint=run.checkpoint,
            rho_loader=ce.embedding_loader(data, examples, "cpu") if final else None,
            rho_examples=examples,
        )
    except NonFiniteLossError as exc:
        return {"key": run.key, "diverged": True, "message": str(exc)}
    return {"key": run.key, "diverged": False, **out}


def _run_all(runs, tuning: Tuning, *, jobs: int, on_done, log=None, more=None) -> None:
    """Execute ``runs`` (a list, run first to last) in ``jobs`` worker processes.

    ``on_done(run, outcome)`` is called in this process as each run finishes. ``more()``, if
    given, is called after each finished run and returns runs to put at the front of the queue
    (the grid's extensions).
    """
    queue = list(runs)
    context = multiprocessing.get_context("spawn")
    with futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
        active = {}
        while queue or active:
            while queue and len(active) < jobs:
                run = queue.pop(0)
                active[pool.submit(_execute, run, tuning, 1)] = run
            done, _ = futures.wait(active, return_when=futures.FIRST_COMPLETED)
            for future in done:
                run = active.pop(future)
                outcome = future.result()
                on_done(run, outcome)
                if log is not None:
                    log(_describe(run, outcome))
            if more is not None:
                queue[:0] = more()


def _describe(run: Run, outcome: dict) -> str:
    head = f"{run.key}: "
    if outcome["diverged"]:
        return head + "diverged"
    return (
        head
        + f"{run.split} acc {outcome['test_acc']:.4f}, train acc {outcome['train_acc']:.4f}, "
        f"{outcome['training_time_s']:.0f} s training"
    )


def _checkpoint(base: Path, key: str) -> str:
    return str(base / f"{key}.pt")


# ----------------------------------------------------------------------------- the tuning grid
def _cell_key(depth: int, mode: str, lr: float, epochs: int, seed: int) -> str:
    return f"d{depth}-{mode}-lr{lr:g}-e{epochs}-s{seed}"


class TuningGrid:
    """The state of a tuning grid: finished cells, the schedule check, and where it extends."""

    def __init__(self, tuning: Tuning, checkpoint_dir: Path):
        self.tuning, self.base = tuning, checkpoint_dir
        self.cells: dict = {}  # (depth, mode, lr) -> outcome
        self.check: dict = {}  # lr -> outcome (plain network, full schedule)
        self.extensions: dict = {arm: 0 for arm in tuning.arms()}
        self.outstanding: dict = {}  # key -> Run issued and not yet recorded

    def run(self, depth, mode, lr, epochs) -> Run:
        t = self.tuning
        key = _cell_key(depth, mode, lr, epochs, t.seed)
        self.outstanding[key] = run = Run(
            key,
            depth,
            lr,
            mode,
            epochs,
            t.seed,
            "validation",
            _checkpoint(self.base, key),
        )
        return run

    def initial_runs(self) -> list:
        t = self.tuning
        grid = [
            self.run(depth, mode, lr, t.tuning_epochs)
            for depth, mode in t.arms()
            for lr in t.lrs
        ]
        check = [self.run(1, "factors", lr, t.spec.epochs) for lr in t.lrs]
        return grid + check

    def record(self, run: Run, outcome: dict) -> None:
        self.outstanding.pop(run.key, None)
        if run.epochs == self.tuning.tuning_epochs:
            self.cells[run.depth, run.mode, run.lr] = outcome
        else:
            self.check[run.lr] = outcome

    def tried(self, arm) -> list:
        return sorted(lr for (d, m, lr) in self.cells if (d, m) == arm)

    def best(self, arm):
        """``(lr, validation accuracy)`` of the arm's best finished cell, diverged cells last."""
        scores = {lr: _score(self.cells[(*arm, lr)]) for lr in self.tried(arm)}
        lr = max(scores, key=lambda k: (scores[k], -k))
        return lr, scores[lr]

    def bracketed(self, arm) -> bool:
        """Whether the arm's best learning rate has a tried neighbour on both sides."""
        lrs = self.tried(arm)
        lr, _ = self.best(arm)
        return lrs[0] < lr < lrs[-1]

    def extend(self) -> list:
        """Runs that extend each finished arm whose best learning rate is on the grid's edge."""
        new = []
        for arm in self.tuning.arms():
            lrs = self.tried(arm)
            waiting = any(
                (r.depth, r.mode) == arm and r.epochs == self.tuning.tuning_epochs
                for r in self.outstanding.values()
            )
            if waiting or len(lrs) < len(self.tuning.lrs) or self.bracketed(arm):
                continue
            if self.extensions[arm] >= self.tuning.max_extensions:
                continue
            lr, _ = self.best(arm)
            if lr == lrs[-1] and self.cells[(*arm, lr)]["diverged"]:
                continue
            beyond = lr * 2 if lr == lrs[-1] else lr / 2
            self.extensions[arm] += 1
            new.append(self.run(*arm, beyond, self.tuning.tuning_epochs))
        return new

    def complete(self) -> bool:
        return not self.outstanding and all(
            self.bracketed(arm) or self.extensions[arm] >= self.tuning.max_extensions
            for arm in self.tuning.arms()
        )


def _score(outcome: dict) -> float:
    return -math.inf if outcome["diverged"] else float(outcome["test_acc"])


def tuning_summary(grid: TuningGrid) -> dict:
    """Per arm the best learning rate and its validation accuracy, whether it is bracketed, and
    the schedule check: Spearman's rank correlation of the plain network's validation accuracy
    over the shared learning rates, short against full schedule, and whether both pick the
    same best rate."""
    t = grid.tuning
    arms = {}
    for depth, mode in t.arms():
        if not grid.tried((depth, mode)):
            continue
        lr, score = grid.best((depth, mode))
        arms[f"depth_{depth}_{mode}"] = {
            "depth": depth,
            "mode": mode,
            "best_lr": lr,
            "best_val_acc": score,
            "bracketed": grid.bracketed((depth, mode)),
            "lrs_tried": grid.tried((depth, mode)),
        }
    best = {}
    for depth in t.spec.depths:
        options = [a for a in arms.values() if a["depth"] == depth]
        if options:
            choice = max(options, key=lambda a: a["best_val_acc"])
            best[f"depth_{depth}"] = {k: choice[k] for k in ("mode", "best_lr")}
    shared = [lr for lr in sorted(grid.check) if (1, "factors", lr) in grid.cells]
    check = {"lrs": shared}
    if len(shared) >= 3:
        short = [_score(grid.cells[1, "factors", lr]) for lr in shared]
        full = [_score(grid.check[lr]) for lr in shared]
        check.update(
            short_val_acc=short,
            full_val_acc=full,
            spearman=float(stats.spearmanr(short, full).statistic),
            same_best=bool(np.argmax(short) == np.argmax(full)),
        )
    return {"arms": arms, "best": best, "schedule_check": check}


def _tuning_arrays(grid: TuningGrid) -> dict:
    t = grid.tuning
    keys = sorted(grid.cells)
    epochs = t.tuning_epochs

    def history(outcome, field, n):
        if outcome["diverged"]:
            return np.full(n, np.nan)
        return np.asarray(outcome["history"][field], dtype=float)

    check_lrs = sorted(grid.check)
    return {
        "cell_depth": np.array([k[0] for k in keys], dtype=np.int64),
        "cell_mode": np.array([t.modes.index(k[1]) for k in keys], dtype=np.int64),
        "cell_lr": np.array([k[2] for k in keys], dtype=float),
        "cell_val_acc": np.array([_score(grid.cells[k]) for k in keys], dtype=float),
        "cell_train_acc": np.array(
            [
                np.nan if grid.cells[k]["diverged"] else grid.cells[k]["train_acc"]
                for k in keys
            ]
        ),
        "cell_history_val_acc": np.array(
            [history(grid.cells[k], "test_acc", epochs) for k in keys]
        ).reshape(len(keys), epochs),
        "cell_history_train_loss": np.array(
            [history(grid.cells[k], "train_loss", epochs) for k in keys]
        ).reshape(len(keys), epochs),
        "cell_training_time_s": np.array(
            [grid.cells[k].get("training_time_s", np.nan) for k in keys], dtype=float
        ),
        "check_lr": np.array(check_lrs, dtype=float),
        "check_val_acc": np.array([_score(grid.check[lr]) for lr in check_lrs]),
        "check_history_val_acc": np.array(
            [history(grid.check[lr], "test_acc", t.spec.epochs) for lr in check_lrs]
        ).reshape(len(check_lrs), t.spec.epochs),
        "check_training_time_s": np.array(
            [grid.check[lr].get("training_time_s", np.nan) for lr in check_lrs]
        ),
    }


def run_tuning(
    name: str,
    *,
    jobs: int = 2,
    checkpoint_dir=None,
    results_dir=None,
    allow_dirty: bool = False,
    log=None,
) -> results.StoredResult:
    """Run (or resume) the tuning grid ``TUNINGS[name]``; store it as ``cifar_tuning_<name>``
    after every finished run (``scalars["complete"]`` says whether the grid is finished)."""
    if name not in TUNINGS:
        raise ValueError(f"tuning must be one of {sorted(TUNINGS)}, got {name!r}")
    tuning = TUNINGS[name]
    commit = _start(allow_dirty, f"tuning {name!r}")
    full = tuning.load()
    _, split = full.with_validation(
        tuning.spec.n_train, tuning.n_val, tuning.split_seed
    )
    base = Path(
        checkpoint_dir or paths.cache_dir() / "checkpoints" / tuning.result_name
    )
    grid = TuningGrid(tuning, base)

    def on_done(run, outcome):
        grid.record(run, outcome)
        scalars = {
            "complete": grid.complete(),
            "validation_split": split,
            **tuning_summary(grid),
        }
        config = {
            "tuning": dataclasses.asdict(tuning),
            "data_source": full.source,
            "decay_modes": DECAY_MODES,
            "selection": "final-epoch validation accuracy of one run (seed "
            f"{tuning.seed}) per cell",
            "train_config": tuning.config(
                lr=tuning.lrs[0],
                mode="factors",
                epochs=tuning.tuning_epochs,
                seed=tuning.seed,
            ).to_dict(),
            "torch_threads": 1,
            "jobs": jobs,
        }
        results.save(
            tuning.result_name,
            config=config,
            scalars=scalars,
            arrays=_tuning_arrays(grid),
            provenance_record=results.provenance(
                device="cpu",
                seeds=[tuning.seed],
                wall_time_s=_total_time(grid),
                commit=commit,
            ),
            directory=results_dir,
            allow_dirty=allow_dirty,
        )

    _run_all(
        grid.initial_runs(),
        tuning,
        jobs=jobs,
        on_done=on_done,
        log=log,
        more=grid.extend,
    )
    return results.load(tuning.result_name, results_dir)


def _total_time(grid: TuningGrid) -> float:
    outcomes = [*grid.cells.values(), *grid.check.values()]
    return float(sum(o.get("training_time_s", 0.0) for o in outcomes))


def _start(allow_dirty: bool, what: str) -> str:
    commit = results.git_commit()
    if not allow_dirty:
        results.require_clean(commit, what)
    return commit


# ------------------------------------------------------------------------ the tuned comparison
def tuned_arms(tuning_result: results.StoredResult) -> list:
    """The networks of the tuned comparison, from a complete tuning result: every depth at its
    best (mode, learning rate); then each expanded depth with decay on the collapsed weight at
    that mode's best learning rate, where that is not already its best setting. Each entry is
    ``(label, depth, mode, lr)``; the first is the baseline."""
    scalars = tuning_result.scalars
    if not scalars.get("complete"):
        raise ValueError(
            f"tuning result {tuning_result.name!r} is not complete: run "
            f"'python -m support.experiments.cifar_tuning tune' to finish it first"
        )
    arms, seen = [], set()
    for key, best in scalars["best"].items():
        depth = int(key.removeprefix("depth_"))
        arms.append((f"depth {depth}", depth, best["mode"], best["best_lr"]))
        seen.add((depth, best["mode"]))
    for arm in scalars["arms"].values():
        if arm["mode"] == "collapsed" and (arm["depth"], "collapsed") not in seen:
            label = f"depth {arm['depth']}, decay on collapsed"
            arms.append((label, arm["depth"], "collapsed", arm["best_lr"]))
    return arms


def run_tuned_study(
    name: str,
    *,
    jobs: int = 2,
    checkpoint_dir=None,
    results_dir=None,
    allow_dirty: bool = False,
    log=None,
) -> results.StoredResult:
    """Train every arm of :func:`tuned_arms` for the tuning's seeds on the full schedule and the
    full test set, seed by seed; store ``cifar_study_<name>_tuned`` after every finished run
    (``seeds_done``: the leading seeds whose every arm has finished)."""
    if name not in TUNINGS:
        raise ValueError(f"tuning must be one of {sorted(TUNINGS)}, got {name!r}")
    tuning = TUNINGS[name]
    stored = results.load(tuning.result_name, results_dir)
    if stored is None:
        raise FileNotFoundError(
            f"no stored {tuning.result_name}: run "
            f"'python -m support.experiments.cifar_tuning tune {name}' first"
        )
    arms = tuned_arms(stored)
    commit = _start(allow_dirty, f"tuned study {name!r}")
    study = tuning.spec
    base = Path(
        checkpoint_dir or paths.cache_dir() / "checkpoints" / tuning.study_result_name
    )
    runs, index = _study_runs(tuning, arms, base)
    out = ce.empty_table((len(arms), len(tuning.seeds)), study.epochs, len(arms))
    finished = np.zeros((len(arms), len(tuning.seeds)), dtype=bool)
    labels = [a[0] for a in arms]
    config = _study_config(tuning, stored, arms, jobs)

    def on_done(run, outcome):
        if outcome["diverged"]:
            raise NonFiniteLossError(
                f"tuned run {run.key} diverged: {outcome['message']}"
            )
        ce.fill_table(out, index[run.key], outcome)
        finished[index[run.key]] = True
        out["seeds_done"] = np.int64(np.argmin(np.append(finished.all(0), False)))
        results.save(
            tuning.study_result_name,
            config={**config, "precision": out["precision"]},
            scalars={"labels": labels, **ce.summarize_arms(out, labels)},
            arrays={**ce._arrays(out), "finished": finished},
            provenance_record=results.provenance(
                device="cpu",
                seeds=list(tuning.seeds[: int(out["seeds_done"])]),
                wall_time_s=float(np.nansum(out["training_time_s"])),
                commit=commit,
            ),
            directory=results_dir,
            allow_dirty=allow_dirty,
        )

    _run_all(runs, tuning, jobs=jobs, on_done=on_done, log=log)
    return results.load(tuning.study_result_name, results_dir)


def _study_runs(tuning: Tuning, arms, base: Path):
    """The runs of the tuned comparison, seed by seed, and each run's ``(arm, seed)`` index."""
    runs, index = [], {}
    epochs = tuning.spec.epochs
    for j, seed in enumerate(tuning.seeds):
        for i, (_, depth, mode, lr) in enumerate(arms):
            key = f"d{depth}-{mode}-lr{lr:g}-e{epochs}-s{seed}-test"
            checkpoint = _checkpoint(base, key)
            runs.append(Run(key, depth, lr, mode, epochs, seed, "test", checkpoint))
            index[key] = (i, j)
    return runs, index


def _study_config(
    tuning: Tuning, stored: results.StoredResult, arms, jobs: int
) -> dict:
    """What the tuned comparison stores as its config: the arms and where they came from."""
    study = tuning.spec
    data = tuning.split("test")
    return {
        "study": study.name,
        "tuning": tuning.result_name,
        "tuning_commit": stored.provenance["commit"],
        "arms": [
            {"label": a[0], "depth": a[1], "mode": a[2], "lr": a[3]} for a in arms
        ],
        "decay_modes": DECAY_MODES,
        "data_source": data.source,
        "n_train": int(len(data.train_labels)),
        "n_test": int(len(data.test_labels)),
        "model": "plain",
        "model_kwargs": study.model_kwargs,
        "seeds_planned": list(tuning.seeds),
        "train_config": tuning.config(
            lr=arms[0][3], mode=arms[0][2], epochs=study.epochs, seed=0
        ).to_dict(),
        "torch_threads": 1,
        "jobs": jobs,
    }


# ------------------------------------------------------------------------------------- the CLI
def main(argv=None) -> int:
    top, sub = cli.parser(
        "cifar_tuning",
        "Per-network hyper-parameters for the chapter 'Expanded CNNs on CIFAR'.",
    )
    for command, func, text in (
        ("tune", run_tuning, "run or resume the tuning grid on the validation split"),
        (
            "study",
            run_tuned_study,
            "run or resume the tuned comparison on the test set",
        ),
    ):
        p = cli.command(sub, command, _command(func), text)
        p.add_argument("name", choices=sorted(TUNINGS))
        p.add_argument(
            "--jobs", type=cli.positive_int, default=2, help="worker processes"
        )
    return cli.run(top, argv)


def _command(func):
    def run(args) -> int:
        start = time.perf_counter()
        stored = func(
            args.name, jobs=args.jobs, allow_dirty=args.allow_dirty, log=cli.say
        )
        cli.say(results.describe(stored))
        cli.say(f"{time.perf_counter() - start:.0f} s this call")
        return 0

    return run


if __name__ == "__main__":
    sys.exit(main())
