"""Small builders shared by several test modules (imported as ``helpers``: pytest puts this
folder on the path)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np

from support import data, train

TINY = {"widths": [4, 8]}
"""PlainCNN widths small enough for CPU tests in seconds."""


def tiny_data():
    """A learnable 4-class stand-in for CIFAR: 96 training and 48 test images."""
    return data.synthetic(96, 48, num_classes=4, seed=0)


def tiny_config(**overrides) -> train.TrainConfig:
    """A two-epoch recipe for :func:`tiny_data`; keyword arguments override its fields."""
    base = dict(
        epochs=2,
        batch_size=16,
        lr=0.05,
        label_smoothing=0.1,
        warmup=0.25,
        check_every=2,
    )
    return train.TrainConfig(**{**base, **overrides})


def jpeg_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def make_archive(path: Path, per_split=None, size=32, seed=0) -> dict:
    """A tiny ImageFolder .tar.xz with classes 'b_cls' and 'a_cls' (written in non-sorted order);
    returns the decoded images by (split, class, index)."""
    from PIL import Image

    per_split = per_split or {"train": 3, "test": 2}
    rng = np.random.default_rng(seed)
    decoded = {}
    with tarfile.open(path, "w:xz") as tar:
        for split, n in per_split.items():
            for cls in ("b_cls", "a_cls"):
                for i in reversed(range(n)):
                    rgb = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
                    payload = jpeg_bytes(rgb)
                    info = tarfile.TarInfo(f"{split}/{cls}/{i:04d}.jpg")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
                    decoded[(split, cls, i)] = np.asarray(
                        Image.open(io.BytesIO(payload)).convert("RGB")
                    )
    return decoded


def commit_all(folder: Path) -> None:
    """Make ``folder`` a git repository with everything in it committed (a clean tree)."""
    import subprocess

    def git(*args):
        subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True)

    git("init", "-q")
    git("add", "-A")
    git(
        "-c",
        "user.name=test",
        "-c",
        "user.email=test@example.invalid",
        "commit",
        "-qm",
        "book",
    )
