"""Run a snippet in a child process with a time limit and a memory limit (imported as
``bounded``): how the fault tests try inputs that used to hang or to allocate terabytes without
hanging or exhausting the machine that runs the tests."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]


def run(code: str, timeout_s: float = 120, memory_gib: float = 4) -> str:
    """Run ``code`` with ``python -c`` (``support`` importable as in the tests), at most ``timeout_s`` seconds
    and ``memory_gib`` GiB of address space; return its stdout. Fails the calling test, naming
    the limit, when the child runs out of time or ends with an error."""
    limit = int(memory_gib * 2**30)

    def limit_memory():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPOSITORY / "tests",
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [os.environ.get("PYTHONPATH"), str(REPOSITORY)])
                ),
            },
            capture_output=True,
            text=True,
            timeout=timeout_s,
            preexec_fn=limit_memory,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {timeout_s} s (a hang): {code[:200]}")
    if done.returncode != 0:
        pytest.fail(
            f"exit code {done.returncode} within {memory_gib} GiB:\n{done.stderr[-2000:]}"
        )
    return done.stdout
