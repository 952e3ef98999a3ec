"""``python -m support.book``: execute chapters, check the book, regenerate the status page,
set the public repository. Every mistake is one line on stderr and exit code 1."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from support import files, paths
from support.book.colab import set_repository
from support.book.execution import (
    DEFAULT_CELL_TIMEOUT_S,
    SCRATCH_DIR,
    STATUS_PAGE,
    execute_chapter,
    executor_lock,
    plan_run,
    source_commit,
)
from support.book.parameters import overrides
from support.book.report import check, status_page
from support.book.toc import BookError, notebook_chapters, resolve_chapter
from support.results import is_clean


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of seconds, got {text[:40]!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 second, got {value}")
    return value


def _add_execute(sub) -> None:
    """The ``execute`` sub-command and its options."""
    ex = sub.add_parser(
        "execute", help="execute chapters (all notebook chapters by default)"
    )
    ex.add_argument(
        "chapters",
        nargs="*",
        help="chapter names, e.g. finite_width or book/finite_width.ipynb",
    )
    ex.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help=f"override a parameter (a non-default run, written to --out-dir, default {SCRATCH_DIR}/)",
    )
    ex.add_argument(
        "--timeout",
        type=_positive_int,
        default=DEFAULT_CELL_TIMEOUT_S,
        help="per-cell timeout in seconds",
    )
    ex.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        help=f"where non-default runs go (default {SCRATCH_DIR}/; never inside book/)",
    )
    ex.add_argument(
        "--replace-book",
        action="store_true",
        help="let a run with -p replace the book's committed notebook, run log and stored results",
    )
    ex.add_argument(
        "--allow-dirty",
        action="store_true",
        help="execute although library code or stored results have uncommitted changes "
        "(the run log then records a '-dirty' commit)",
    )
    ex.set_defaults(func=_execute)


def _parser() -> argparse.ArgumentParser:
    from support import book

    parser = argparse.ArgumentParser(
        prog="python -m support.book", description=book.__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_execute(sub)
    sub.add_parser(
        "check", help="hygiene checks of the committed chapters"
    ).set_defaults(func=_check)
    sub.add_parser(
        "status", help="regenerate book/status.md from the run log"
    ).set_defaults(func=_status)
    repo = sub.add_parser(
        "repository",
        help="set the public repository URL (buttons, Colab cells); '' unsets",
    )
    repo.add_argument("url")
    repo.set_defaults(func=_repository)
    return parser


def _execute(root: Path, args) -> int:
    import nbformat

    chapters = [resolve_chapter(root, c) for c in args.chapters] or notebook_chapters(
        root
    )
    commit = source_commit(root)
    if not args.allow_dirty and not is_clean(commit):
        raise BookError(
            f"the working tree has uncommitted changes outside the chapters, or no git (commit "
            f"{commit!r}), so the run log could not say which code ran: commit first, "
            "or pass --allow-dirty (BOOK_ALLOW_DIRTY=1 for scripts/build_book.sh)"
        )
    for path in chapters:
        rel = path.relative_to(root)
        parameters = overrides(nbformat.read(path, as_version=4), rel, args.parameter)
        plan = plan_run(root, path, parameters, args.out_dir, args.replace_book)
        if plan.note:
            print(f"note: {plan.note}", flush=True)
        print(f"executing {rel} ...", flush=True)
        target = execute_chapter(
            root,
            path,
            parameters,
            args.timeout,
            args.out_dir,
            commit,
            args.replace_book,
        )
        print(f"  ok -> {os.path.relpath(target, root)}", flush=True)
    return 0


def _check(root: Path, args) -> int:
    problems = check(root)
    for problem in problems:
        print(f"check: {problem}")
    if problems:
        return 1
    print(f"check: {len(notebook_chapters(root))} chapters clean")
    return 0


def _status(root: Path, args) -> int:
    with executor_lock(root):
        files.write_text(root / STATUS_PAGE, status_page(root), "status page")
    print(f"wrote {STATUS_PAGE}")
    return 0


def _repository(root: Path, args) -> int:
    set_repository(root, args.url)
    print(
        f"repository {'set to ' + args.url if args.url else 'unset'}: _config.yml and "
        f"{len(notebook_chapters(root))} chapters updated"
    )
    return 0


def main(argv=None, root: Path | None = None) -> int:
    """Command-line entry point; returns the exit code (1 with a one-line error on bad input;
    argparse's usage errors exit with 2)."""
    args = _parser().parse_args(argv)
    try:
        root = Path(root) if root is not None else paths.repository_root()
        return args.func(root, args)
    except (BookError, OSError, ValueError) as e:
        # OSError: unwritable folders, special files; ValueError: unreadable notebooks
        print(
            f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
            file=sys.stderr,
        )
        return 1
