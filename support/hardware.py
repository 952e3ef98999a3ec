"""Which device and precision a computation runs in, and how to describe them in provenance records.

The one place where the library turns a user's ``device``/``dtype`` argument into torch objects:
chapters take a ``DEVICE = "auto"`` parameter (see *How to run this book*); ``"auto"`` picks the
first CUDA GPU when one is present and the CPU otherwise.
"""

from __future__ import annotations

import os
import platform


def resolve_device(name="auto", *, default: str = "cpu"):
    """Return a ``torch.device`` for ``name``: "auto", "cpu", "cuda", "cuda:1", "mps", ..., a
    ``torch.device``, or None (then ``default``).

    Raises ValueError when a named accelerator is not available, rather than silently
    falling back to the CPU.
    """
    import torch

    if name is None:
        name = default
    if isinstance(name, torch.device):
        name = str(name)
    if not isinstance(name, str):
        raise TypeError(
            f"device must be a string, a torch.device or None, got {type(name).__name__}"
        )
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but no CUDA GPU is available")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} requested but MPS is not available")
    return device


def resolve_dtype(dtype=None, *, default=None, allowed=None):
    """Return the torch floating dtype for ``dtype`` (None -> ``default``, float64 unless given).

    ``allowed`` (default float32 and float64) lists what the caller supports; anything else is a
    ValueError naming it.
    """
    import torch

    allowed = (torch.float32, torch.float64) if allowed is None else tuple(allowed)
    dtype = (torch.float64 if default is None else default) if dtype is None else dtype
    if dtype not in allowed:
        raise ValueError(
            f"dtype must be one of {[str(a) for a in allowed]}, got {dtype}"
        )
    return dtype


def cpu_description() -> str:
    """CPU model and core count, e.g. 'AMD EPYC 7B13 (2 cores)'."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model} ({os.cpu_count()} cores)"


def describe_device(device=None) -> str:
    """Human-readable name of ``device`` (default: what "auto" would pick), for provenance."""
    try:
        import torch
    except ImportError:
        return cpu_description()
    device = resolve_device("auto") if device is None else torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_description()
