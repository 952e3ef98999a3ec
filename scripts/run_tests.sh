#!/usr/bin/env bash
# Set up the environment (when needed) and run every test in one pytest run: the unit tests of
# support/ (tests/, including the book's hygiene checks) and every chapter re-executed and
# compared with its stored outputs by nbval (book/).
source "$(dirname "$0")/setup_env.sh"
set +e
python -m pytest --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg tests book/ "$@"
rc=$?
set -e
# pytest exits 5 when it collected nothing: that is a failure here, never a pass.
[ "$rc" -eq 5 ] && { echo "pytest collected no tests"; exit 1; }
exit "$rc"
