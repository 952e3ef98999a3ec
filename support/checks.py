"""Argument checks shared by the library's public functions.

Bad input must fail loudly with a message that names the argument and the problem, never give a
silent wrong answer; these helpers keep that wording identical across modules, and one rule for
the exception: **TypeError** when the argument is of the wrong kind (a string, a float where a
count is due, a bool where a number is due), **ValueError** when it is of the right kind but an
impossible value (negative, NaN, out of range, too large to fit in memory). Numpy scalars
(``np.int64``, ``np.float32``) are accepted wherever a Python number is.
"""

from __future__ import annotations

import itertools
import math
import numbers
import os

import numpy as np


def check_int(value, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` as an int; TypeError unless it is an integer (bools refused), ValueError outside
    ``[minimum, maximum]``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{name} must be an integer, got {type(value).__name__} {value!r}"
        )
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return int(value)


def check_flag(value, name: str) -> bool:
    """``value`` as a bool; TypeError for anything that is not True or False (numpy bools
    included), so that 0, 1 or "yes" never pass as a switch."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"{name} must be True or False, got {type(value).__name__} {value!r}"
        )
    return bool(value)


def check_real(
    value,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict: bool = False,
) -> float:
    """``value`` as a finite float; TypeError unless it is a real number (bools and strings
    refused), ValueError for NaN, infinity, or a value below ``minimum`` / above ``maximum``
    (``strict=True``: the bounds themselves are excluded too)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a real number, got {type(value).__name__} {value!r}"
        )
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and (value < minimum or (strict and value == minimum)):
        raise ValueError(
            f"{name} must be {'>' if strict else '>='} {minimum:g}, got {value:g}"
        )
    if maximum is not None and (value > maximum or (strict and value == maximum)):
        raise ValueError(
            f"{name} must be {'<' if strict else '<='} {maximum:g}, got {value:g}"
        )
    return value


def check_increasing(values, name: str = "depths", minimum: int = 1) -> list[int]:
    """A non-empty, strictly increasing list of integers ``>= minimum`` (depths along one chain:
    each is a checkpoint of the deeper ones); a single integer is a list of one."""
    if isinstance(values, (str, bytes)):
        raise TypeError(
            f"{name} must be integers, got {type(values).__name__} {values!r}"
        )
    items = list(np.atleast_1d(np.asarray(values, dtype=object)).tolist())
    checked = [check_int(v, name, minimum) for v in items]
    if not checked or any(b <= a for a, b in itertools.pairwise(checked)):
        raise ValueError(
            f"{name} must be a non-empty strictly increasing sequence of integers >= {minimum}, "
            f"got {checked}"
        )
    return checked


def check_choice(value, name: str, choices) -> str:
    """``value`` if it is one of ``choices``; ValueError listing them otherwise."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_seeds(seeds) -> list[int]:
    """A non-empty list of distinct integer seeds (each seed is one independent run); TypeError
    for a string or a non-integer seed (``[1.7]`` is not silently seed 1)."""
    if isinstance(seeds, (str, bytes)):
        raise TypeError(
            f"seeds must be a sequence of integers, got the string {seeds!r}"
        )
    seeds = [check_int(s, "seed", minimum=0) for s in seeds]
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds}")
    return seeds


def memory_bytes(device=None) -> int:
    """Memory of ``device`` in bytes: a CUDA GPU's total memory, otherwise the machine's RAM."""
    if device is not None and getattr(device, "type", str(device)).startswith("cuda"):
        import torch

        return torch.cuda.get_device_properties(device).total_memory
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 2**40


def check_fits(nbytes: int, what: str, device=None) -> None:
    """ValueError before allocating when ``what`` needs more than the memory of ``device``
    (a result of 10**12 samples is refused at once, not after minutes or by the allocator)."""
    available = memory_bytes(device)
    if nbytes > available:
        raise ValueError(
            f"{what} needs {nbytes / 2**30:.3g} GiB, more than the {available / 2**30:.3g} GiB "
            "of memory here; ask for fewer"
        )
