"""Argument checks shared by the library's public functions.

Bad input must fail loudly with a message that names the argument and the problem, never give a
silent wrong answer; these helpers keep that wording identical across modules.
"""

from __future__ import annotations

import numpy as np


def check_int(value, name: str, minimum: int = 1) -> int:
    """``value`` as an int; TypeError unless it is an integer (bools refused), ValueError below ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_seeds(seeds) -> list[int]:
    """A non-empty list of distinct integer seeds (each seed is one independent run)."""
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds}")
    return seeds
