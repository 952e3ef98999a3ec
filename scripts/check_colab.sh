#!/usr/bin/env bash
# Imitate Colab on this machine: a fresh virtual environment holding only what Colab preinstalls
# (torch, torchvision, numpy, tqdm, pyyaml, matplotlib, scipy, pandas and Jupyter's kernel and client), then a
# chapter executed as Colab would run it -- its own first cell clones the repository (pointed at
# this clone), installs `support` with --no-deps plus the chapter's extras, and moves into book/.
# Usage: bash scripts/check_colab.sh [CHAPTER]   (default: effective_rank)
set -euo pipefail
cd "$(dirname "$0")/.."
chapter=${1:-effective_rank}
repo=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PIP_DISABLE_PIP_VERSION_CHECK=1
python3 -m venv "$work/colab"
# Colab's preinstalled set (its versions float; ours are taken from the project's lock file).
"$work/colab/bin/python" -m pip install -q -c "$repo/requirements-lock.txt" torch torchvision numpy tqdm pyyaml \
    matplotlib scipy pandas ipykernel nbclient nbformat 2>&1 | { grep -v "^WARNING: Location" || true; }
cd "$work"  # as on Colab: nothing of the repository is on the path yet
if "$work/colab/bin/python" -c "import support" 2>/dev/null; then
    echo "check_colab: support is importable before the set-up cell ran"; exit 1
fi
BOOK_BOOTSTRAP=1 BOOK_REPO="$repo" BOOK_CHECKOUT="$work/checkout" \
    "$work/colab/bin/python" - "$repo/book/$chapter.ipynb" <<'PY'
import sys
import time

import nbclient
import nbformat

path = sys.argv[1]
nb = nbformat.read(path, as_version=4)
start = time.perf_counter()
# Colab runs the notebook from its own folder; the set-up cell moves into the fresh checkout.
nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                        resources={"metadata": {"path": "/"}}).execute()
errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
assert not errors, errors
print(f"check_colab: {path} ran as on Colab in {time.perf_counter() - start:.0f} s")
PY
