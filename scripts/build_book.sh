#!/usr/bin/env bash
# Set up the environment (when needed), execute every chapter with the project's executor and
# render the HTML to _build/html with the strict build (zero warnings allowed).
# BOOK_EXECUTE=0 renders the stored outputs without re-executing (what CI does after nbval).
source "$(dirname "$0")/setup_env.sh"
if [ "${BOOK_EXECUTE:-1}" = 1 ]; then
    python -m support.book execute
fi
python -m support.book check
rm -rf _build/html _build/.doctrees
jupyter-book build . -W -n --keep-going --all
echo "::: book at _build/html/index.html"
