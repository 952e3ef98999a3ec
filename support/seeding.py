"""One way to turn a seed into independent random streams: numpy's ``SeedSequence``.

Every random draw in the library starts from a user-facing integer ``seed`` plus *keys* that
name the purpose of the stream (``"model-init"``, ``"loader"``, an epoch number, a depth ...).
``SeedSequence([seed, *keys])`` mixes them into well-separated states, so streams for different
purposes or different seeds never overlap, and adding a new stream never shifts an old one.
Keys are integers or short strings; a string enters as the first 4 bytes of its SHA-256, so the
mapping is the same on every machine and Python version.

* :func:`generator`: a ``numpy.random.Generator`` for the stream;
* :func:`torch_seed`: a 63-bit integer for ``torch.manual_seed`` or ``torch.Generator.manual_seed``;
* :func:`torch_generator`: a ``torch.Generator`` on a device, seeded for the stream.

*How to run this book* explains the ``SEED`` parameter every chapter takes.
"""

from __future__ import annotations

import hashlib

import numpy as np

from support.checks import check_int


def _key(key) -> int:
    if isinstance(key, str):
        return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little")
    return check_int(key, "seed key", minimum=0)


def seed_sequence(seed: int, *keys) -> np.random.SeedSequence:
    """``SeedSequence`` of ``seed`` (an integer >= 0) and the stream's ``keys`` (ints >= 0 or strings)."""
    seed = check_int(seed, "seed", minimum=0)
    return np.random.SeedSequence([seed, *(_key(k) for k in keys)])


def generator(seed: int, *keys) -> np.random.Generator:
    """A numpy ``Generator`` (PCG64) for the stream ``(seed, *keys)``."""
    return np.random.default_rng(seed_sequence(seed, *keys))


def torch_seed(seed: int, *keys) -> int:
    """A 63-bit integer seed for torch, derived from the stream ``(seed, *keys)``."""
    low, high = seed_sequence(seed, *keys).generate_state(2, dtype=np.uint32)
    return (int(high) << 32 | int(low)) & (2**63 - 1)


def torch_generator(seed: int, *keys, device="cpu"):
    """A ``torch.Generator`` on ``device`` seeded for the stream ``(seed, *keys)``."""
    import torch

    g = torch.Generator(device=device)
    g.manual_seed(torch_seed(seed, *keys))
    return g
