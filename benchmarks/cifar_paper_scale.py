"""Paper-scale (GPU) and CPU-scale runs of the chapter *Expanded CNNs on CIFAR*; results to book/results/.

Runs ``support.train.run_grid``: each experiment of ``support.train.GRIDS[scale]`` trains one
architecture as a baseline and linearly over-parameterized (expansion depth 2 and 4, collapsed for
evaluation) for several seeds, and stores per-run test and train accuracy, per-epoch test accuracy,
the recorded layer spectra, rho of the penultimate embeddings, parameter counts, FLOPs and per-run
wall times (``book/results/cifar_<dataset>_<stem>_<scale>.json/.npz``).

    # GPU (one H100: fast + plain CNN, 5 seeds x 3 depths each, estimated well under 10 minutes;
    # ResNet-18 starts only if --budget-s is not yet spent). Take the JPEG archive along:
    CIFAR10_JPEG=/path/to/cifar10-jpeg python benchmarks/cifar_paper_scale.py --scale gpu --budget-s 420
    # CPU-scale stand-in (4,000/1,000-image subset, small widths, 10 epochs; ~45 min on 2 shared cores):
    CIFAR10_JPEG=/path/to/cifar10-jpeg nice -n 10 python benchmarks/cifar_paper_scale.py --scale cpu

Each experiment is stored as soon as it finishes and every run checkpoints each epoch under
``--checkpoint-dir``, so a cut-off command rerun with the same arguments resumes. ``--results-dir``
writes elsewhere (e.g. a folder copied back from a remote machine). ``--dataset cifar100``
(torchvision download, e.g. on Colab) runs the same grid on CIFAR-100.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from support import data as data_mod
from support import results
from support.train import GRIDS, run_grid


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=sorted(GRIDS), required=True)
    parser.add_argument("--dataset", default="cifar10", choices=sorted(data_mod.NORMALIZATION))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--budget-s", type=float, default=None, help="start no new experiment after this many seconds")
    parser.add_argument("--only", nargs="*", default=None, help="experiment stems to run (default all)")
    parser.add_argument("--checkpoint-dir", default=".cache/checkpoints", help="per-run checkpoints (resume after a cut)")
    parser.add_argument("--results-dir", default=str(results.RESULTS_DIR))
    args = parser.parse_args(argv)
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
        print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}", flush=True)
    t0 = time.perf_counter()
    names = run_grid(args.scale, args.dataset, device=args.device, budget_s=args.budget_s, only=args.only,
                     checkpoint_dir=args.checkpoint_dir, results_dir=args.results_dir,
                     log=lambda line: print(line, flush=True))
    print(f"stored {names}; total {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
