"""Recipes of the chapter *Non-linear networks*: the trained-network sweep of the paper's Observation 2.

* ``SCALES`` and :func:`sweep_settings`: which activations, depths, seeds and steps; the
  "quick" scale is the chapter's live slice, the "paper" scale the stored sweep (seven
  activations, depths 2 to 16, five seeds).
* :func:`trained_sweep` trains every (activation, depth) on one dataset and measures rho(K)
  before and after training; :func:`trained_record` runs it on both datasets in the form
  :func:`support.results.cached` stores, under the name ``TRAINED_RESULT``.

Command line::

    # stores the sweep (CPU, about 20 minutes); then the live slice, printed
    python -m support.experiments.nonlinear_networks train --scale paper
    python -m support.experiments.nonlinear_networks train --scale quick
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from support import paper_values
from support.activations import ACTIVATIONS
from support.experiments import command_line as cli
from support.mlp_training import (
    class_sorted_subset,
    embed,
    evaluate,
    gram,
    init_mlp,
    load_digits_dataset,
    lowrank_regression_dataset,
    train_mlp,
)
from support.rank import gram_entropy

TRAINED_RESULT = "nonlinear_trained_paper"
"""Stored-result name of the paper-scale sweep."""

DATASETS = ("digits", "synthetic")
PAPER_DEPTHS = paper_values.load()["v4_obs2"].depths
"""The depths of the paper's Observation-2 figure (``book/paper_values.json``)."""
SWEEP_CONFIG = {
    "width": 64,
    "steps": 600,
    "lr": 1e-3,
    "lr_overrides": {"sine": 3e-4},
    "heatmap_per_class": 6,
    "synthetic": {
        "n_train": 512,
        "n_test": 512,
        "in_dim": 32,
        "out_dim": 32,
        "rank": 4,
    },
}
SCALES = {
    "quick": {
        "seeds": (0, 1),
        "depths": (2, 8),
        "activations": ("linear", "relu", "tanh"),
        "steps": 300,
    },
    "paper": {
        "seeds": (0, 1, 2, 3, 4),
        "depths": PAPER_DEPTHS,
        "activations": ACTIVATIONS,
    },
}


def sweep_settings(scale: str) -> dict:
    """Settings of the trained-network sweep at ``scale`` ("quick" or "paper")."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {tuple(SCALES)}, got {scale!r}")
    return {**SWEEP_CONFIG, **SCALES[scale]}


def trained_sweep(settings: dict, dataset: str = "digits", data_seed: int = 0) -> dict:
    """Train every (activation, depth) of ``settings`` on ``dataset`` ("digits" or "synthetic").

    Returns arrays ``rho_init``, ``rho_trained`` (and their ``_centred`` versions),
    ``train_loss``, ``test_loss`` (and ``test_accuracy`` for digits) of shape
    ``(n_activations, n_depths, S)``, and for digits ``heatmaps`` ``(n_activations, n_depths, M,
    M)``: the first seed's trained Gram matrix on a class-sorted test subset, divided by its
    largest absolute entry, with the subset's labels in ``heatmap_labels``.

    rho is measured on the embeddings of the whole test set. Every activation uses
    ``settings["lr"]`` unless ``settings["lr_overrides"]`` names it (SIREN needs a smaller step).
    """
    if dataset == "digits":
        data = load_digits_dataset(data_seed)
        subset = class_sorted_subset(data.y_test, settings["heatmap_per_class"])
    elif dataset == "synthetic":
        data = lowrank_regression_dataset(**settings["synthetic"], seed=data_seed)
        subset = None
    else:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    keys = [
        "rho_init",
        "rho_trained",
        "rho_init_centred",
        "rho_trained_centred",
        "train_loss",
        "test_loss",
    ]
    if subset is not None:
        keys.append("test_accuracy")
    shape = (
        len(settings["activations"]),
        len(settings["depths"]),
        len(settings["seeds"]),
    )
    out = {k: np.zeros(shape) for k in keys}
    maps = []
    for a, act in enumerate(settings["activations"]):
        row = []
        for d, depth in enumerate(settings["depths"]):
            values, heatmap = _train_one(data, settings, act, depth, subset)
            for key, value in values.items():
                out[key][a, d] = value
            if heatmap is not None:
                row.append(heatmap)
        if row:
            maps.append(np.stack(row))
    if maps:
        out["heatmaps"] = np.stack(maps)
        out["heatmap_labels"] = data.y_test[subset].numpy()
    return out


def _train_one(data, settings: dict, act: str, depth: int, subset):
    """One cell of :func:`trained_sweep`: rho at initialisation and after training, the losses,
    and (with a heatmap ``subset``) the first seed's normalised trained Gram matrix on it."""
    init = init_mlp(
        data.in_dim, settings["width"], data.out_dim, depth, act, settings["seeds"]
    )
    phi = embed(init, data.x_test)
    values = {
        "rho_init": gram_entropy(phi),
        "rho_init_centred": gram_entropy(phi, centre=True),
    }
    net = train_mlp(
        data,
        depth,
        act,
        settings["seeds"],
        width=settings["width"],
        steps=settings["steps"],
        lr=settings["lr_overrides"].get(act, settings["lr"]),
    )
    heatmap = None
    with torch.no_grad():
        phi = embed(net, data.x_test)
        values["rho_trained"] = gram_entropy(phi)
        values["rho_trained_centred"] = gram_entropy(phi, centre=True)
        if subset is not None:
            k = gram(embed(net, data.x_test[subset])[0].double())
            heatmap = (k / k.abs().max()).float().numpy()
    values.update(evaluate(net, data))
    return values, heatmap


def trained_record(scale: str = "paper", data_seed: int = 0, log=None) -> dict:
    """The sweep at ``scale`` on both datasets, as :func:`support.results.cached` stores it:
    ``config`` (the settings), ``arrays`` (``<dataset>_<key>`` for every key of
    :func:`trained_sweep`) and ``seeds``. ``log(line)`` is told when each dataset is done."""
    settings = sweep_settings(scale)
    arrays = {}
    for dataset in DATASETS:
        for key, value in trained_sweep(settings, dataset, data_seed).items():
            arrays[f"{dataset}_{key}"] = value
        if log is not None:
            log(f"{dataset} done")
    return {
        "config": {**settings, "data_seed": data_seed},
        "arrays": arrays,
        "seeds": list(settings["seeds"]),
    }


def _train_command(args) -> int:
    torch.set_num_threads(args.threads)
    if args.scale == "paper":
        cli.store(TRAINED_RESULT, lambda: trained_record("paper", log=cli.say), args)
        return 0
    record = trained_record(args.scale, log=cli.say)
    rho = record["arrays"]["digits_rho_trained"].mean(-1)
    for a, act in enumerate(record["config"]["activations"]):
        cli.say(
            f"{act:10s} trained rho(K) on digits by depth {list(record['config']['depths'])}: "
            + " ".join(f"{v:.3f}" for v in rho[a])
        )
    return 0


def main(argv=None) -> int:
    """Recipes of the chapter 'Non-linear networks'."""
    top, sub = cli.parser("nonlinear_networks", main.__doc__)
    train = cli.command(
        sub,
        "train",
        _train_command,
        "train the sweep on digits and synthetic data (CPU); "
        f"the paper scale is stored as {TRAINED_RESULT}",
    )
    train.add_argument("--scale", choices=tuple(SCALES), default="paper")
    train.add_argument(
        "--threads", type=cli.positive_int, default=1, help="torch intra-op threads"
    )
    return cli.run(top, argv)


if __name__ == "__main__":
    sys.exit(main())
