# Sourced by build_book.sh and run_tests.sh: create .venv when missing, (re)install the pinned
# environment when the requirements changed since the last install, and activate it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python >= 3.10 is required")'
export PIP_DISABLE_PIP_VERSION_CHECK=1
# Offline CIFAR-10 (JPEG archive) for the CIFAR chapter when the caller named none and the
# project's shared data folder sits beside the repository; elsewhere torchvision downloads it.
if [ -z "${CIFAR10_JPEG:-}" ] && [ -d ../shared/data/cifar10-jpeg ]; then
    export CIFAR10_JPEG="$(cd ../shared/data/cifar10-jpeg && pwd)"
fi
[ -x .venv/bin/python ] || { echo "::: creating .venv with $("$PY" --version)"; "$PY" -m venv .venv; }
. .venv/bin/activate

stamp=".venv/.installed-$(cat requirements.txt requirements-lock.txt pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    echo "::: installing the pinned environment into .venv"
    t0=$SECONDS
    # pip's 'Location ... is ignored' lines come from machines with a local wheel store; harmless.
    python -m pip install -q -r requirements.txt -c requirements-lock.txt 2>&1 | { grep -v "^WARNING: Location" || true; }
    python -m pip install -q --no-deps -e . 2>&1 | { grep -v "^WARNING: Location" || true; }
    python -m pip check
    rm -f .venv/.installed-*
    touch "$stamp"
    echo "::: environment ready in $((SECONDS - t0)) s"
fi
