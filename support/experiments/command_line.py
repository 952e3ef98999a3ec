"""The command line every recipe module shares (``python -m support.experiments.<chapter>``).

One skeleton: argparse sub-commands, each bound to its function with ``set_defaults(func=)``;
argument types that turn a bad value (``--threads 0``, ``--device gpu``, ``--samples -1``) into
argparse's one-line usage error instead of a traceback; :func:`store`, the one way a command
computes a stored result (always recomputed, from a clean tree unless ``--allow-dirty``) and says
where it came from; and :func:`run`, which reports any remaining mistake as one line and exit
code 1. *Rerunning and extending the book* lists the commands.
"""

from __future__ import annotations

import argparse
import sys

from support import results
from support.hardware import resolve_device


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number, got {text[:40]!r}"
        ) from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (counts, sizes, threads)."""
    return _whole_number(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0 (seeds)."""
    return _whole_number(text, 0)


def device(text: str):
    """argparse type: a device name that exists here ("auto", "cpu", "cuda", "cuda:1", ...)."""
    try:
        return resolve_device(text)
    except (ValueError, RuntimeError) as e:
        raise argparse.ArgumentTypeError(str(e).splitlines()[0]) from None


def parser(module: str, description: str):
    """The top-level parser of ``python -m support.experiments.<module>`` and its sub-command
    collection (one sub-command is required)."""
    top = argparse.ArgumentParser(
        prog=f"python -m support.experiments.{module}", description=description
    )
    return top, top.add_subparsers(dest="command", required=True)


def command(subparsers, name: str, func, help: str, *, stores: bool = True):
    """A sub-command ``name`` that runs ``func(args)``; ``stores`` adds ``--allow-dirty``."""
    sub = subparsers.add_parser(name, help=help, description=help)
    sub.set_defaults(func=func)
    if stores:
        sub.add_argument(
            "--allow-dirty",
            action="store_true",
            help="store even from a tree with uncommitted changes (development only)",
        )
    return sub


def say(line: str) -> None:
    """Print one progress or result line at once (long runs are watched live)."""
    print(line, flush=True)


def store(name: str, compute, args, *, device="cpu") -> results.StoredResult:
    """Compute ``name`` afresh with ``compute()`` and store it (:func:`support.results.cached` with
    ``recompute=True``; ``args.allow_dirty`` from the command line), then say where it came from."""
    stored = results.cached(
        name,
        compute,
        recompute=True,
        device=device,
        allow_dirty=getattr(args, "allow_dirty", False),
    )
    say(results.describe(stored))
    return stored


def run(top: argparse.ArgumentParser, argv=None) -> int:
    """Parse ``argv`` and run the chosen sub-command; a ValueError, TypeError, OSError or
    ResultError it raises is printed as one line (exit code 1)."""
    args = top.parse_args(argv)
    try:
        code = args.func(args)
    except (ValueError, TypeError, OSError) as e:  # ResultError is a ValueError
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"error: {message}", file=sys.stderr)
        return 1
    return 0 if code is None else code
