"""Paper-scale (GPU) and CPU-scale runs of the chapter *Expanded CNNs on CIFAR*; results to book/results/.

Each experiment trains one architecture as a baseline and linearly over-parameterized (expansion
depth 2 and 4, collapsed for evaluation) for several seeds on CIFAR-10, and stores per-run test and
train accuracy, per-epoch test accuracy, the recorded layer spectra and rho of the penultimate
embeddings through ``support.results`` (files ``book/results/cifar_*.json/.npz``).

    # GPU, about 12 minutes on one H100 (take the JPEG archive along; no download needed):
    CIFAR10_JPEG=/path/to/cifar10-jpeg python benchmarks/cifar_paper_scale.py --scale gpu
    # CPU-scale stand-in (4,000/1,000-image subset, small widths, 10 epochs; about 45 minutes on 2 shared cores):
    CIFAR10_JPEG=/path/to/cifar10-jpeg nice -n 10 python benchmarks/cifar_paper_scale.py --scale cpu

``--budget-s`` stops starting new experiments once the elapsed time passes it (each experiment
is stored as soon as it finishes, so a cut-off run keeps what it finished). ``--dataset cifar100``
(torchvision download, e.g. on Colab) runs the same grid on CIFAR-100.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import numpy as np
import torch

from support import data as data_mod
from support import results
from support.train import TrainConfig, run_experiment, summarize

# Experiments per scale: (result-name stem, model, model kwargs, epochs, batch size, lr, record layer).
GRIDS = {
    "gpu": {
        "subset": None, "seeds": (0, 1, 2, 3, 4), "depths": (1, 2, 4),
        "experiments": [
            ("fast", "fast", {"widths": [64, 256, 256]}, 10, 1024, 0.4, "groups.2.conv2"),
            ("plain", "plain", {"widths": [64, 128, 256, 512]}, 15, 512, 0.1, "body.12"),
        ],
    },
    "cpu": {
        "subset": (4000, 1000), "seeds": (0, 1, 2), "depths": (1, 2, 4),
        "experiments": [
            ("plain", "plain", {"widths": [16, 32, 64, 128]}, 10, 128, 0.05, "body.12"),
        ],
    },
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=sorted(GRIDS), required=True)
    parser.add_argument("--dataset", default="cifar10", choices=sorted(data_mod.NORMALIZATION))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--budget-s", type=float, default=None, help="start no new experiment after this many seconds")
    parser.add_argument("--only", nargs="*", default=None, help="experiment stems to run (default all)")
    parser.add_argument("--checkpoint-dir", default=".cache/checkpoints", help="per-run checkpoints (resume after a cut)")
    args = parser.parse_args(argv)
    torch.set_num_threads(min(torch.get_num_threads(), 16))
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    grid = GRIDS[args.scale]
    t0 = time.perf_counter()
    data = data_mod.load_cifar(args.dataset)
    if grid["subset"]:
        data = data.subset(*grid["subset"], seed=0)
    print(f"data: {data.source}; load {time.perf_counter() - t0:.1f} s", flush=True)
    for stem, model, kwargs, epochs, batch, lr, layer in grid["experiments"]:
        if args.only and stem not in args.only:
            continue
        if args.budget_s is not None and time.perf_counter() - t0 > args.budget_s:
            print(f"budget of {args.budget_s} s spent: skipping {stem}", flush=True)
            continue
        config = TrainConfig(epochs=epochs, batch_size=batch, lr=lr, record_layer=layer)
        start = time.perf_counter()
        out = run_experiment(data, model, depths=grid["depths"], seeds=grid["seeds"], config=config,
                             model_kwargs=kwargs, device=args.device, log=lambda s: print(s, flush=True),
                             checkpoint_dir=f"{args.checkpoint_dir}/{args.scale}-{args.dataset}")
        wall = time.perf_counter() - start
        name = f"cifar_{args.dataset}_{stem}_{args.scale}"
        summary = summarize(out, grid["depths"])
        arrays = {k: v for k, v in out.items() if isinstance(v, np.ndarray)}
        results.save(name, config={
            "scale": args.scale, "dataset": args.dataset, "data_source": data.source,
            "n_train": int(len(data.train_labels)), "n_test": int(len(data.test_labels)),
            "model": model, "model_kwargs": kwargs, "depths": list(grid["depths"]), "width": 1.0,
            "train_config": config.to_dict(), "precision": out["precision"],
        }, scalars=summary, arrays=arrays,
            provenance_record=results.provenance(device=args.device if args.device != "auto" else None,
                                                 seeds=grid["seeds"], wall_time_s=wall))
        print(json.dumps({"name": name, "wall_time_s": round(wall, 1), "summary": summary}, indent=1), flush=True)
    print(f"total {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
