#!/usr/bin/env bash
# One short GPU session for the chapter "Expanded CNNs on CIFAR" (about 7 minutes on one H100):
#   1. the paper-scale grid on all of CIFAR-10, fast CNN first, then the plain CNN and ResNet-18
#      while the time budget lasts (each experiment is stored as soon as it finishes);
#   2. airbench94 on the same images and GPU, if the `airbench` package is importable and time
#      remains, so the fast CNN's accuracy and time sit beside the speed record's in one run.
# Run it from the repository root of a clean checkout, with torch (CUDA) installed and
# CIFAR10_JPEG naming the offline archive (or a network for torchvision). Results go to
# book/results (or RESULTS_DIR) with provenance; rerunning resumes from the checkpoints.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
budget=${GRID_BUDGET_S:-330}
extra=()
[ -n "${RESULTS_DIR:-}" ] && extra+=(--results-dir "$RESULTS_DIR")
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
t0=$SECONDS
python -m support.experiments.cifar_expanded grid --scale gpu --budget-s "$budget" "${extra[@]}"
echo "grid: $((SECONDS - t0)) s"
if python -c 'import airbench' 2>/dev/null; then
    python -m support.experiments.cifar_expanded airbench --runs "${AIRBENCH_RUNS:-5}" "${extra[@]}"
else
    echo "airbench is not installed: airbench94 reference skipped (pip install airbench)"
fi
echo "total: $((SECONDS - t0)) s"
