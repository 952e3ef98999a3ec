#!/usr/bin/env bash
# Set up the environment (when needed), execute every chapter with the project's executor and
# render the HTML to _build/html with the strict build (zero warnings allowed).
# BOOK_EXECUTE=0 renders the stored outputs without re-executing (what CI does after nbval).
# Arguments are passed to the executor, e.g. `bash scripts/build_book.sh finite_width` or
# `bash scripts/build_book.sh --allow-dirty`; BOOK_ALLOW_DIRTY=1 does the same as --allow-dirty:
# it executes after an uncommitted edit, and the run log records the commit as '-dirty'.
source "$(dirname "$0")/setup_env.sh"
if [ "${BOOK_EXECUTE:-1}" = 1 ]; then
    dirty=()
    if [ "${BOOK_ALLOW_DIRTY:-0}" = 1 ]; then dirty=(--allow-dirty); fi
    python -m support.book execute "${dirty[@]}" "$@"
fi
python -m support.book check
rm -rf _build/html _build/.doctrees
jupyter-book build . -W -n --keep-going --all
echo "::: book at _build/html/index.html"
