"""CIFAR-10/100 for the expanded-CNN chapter: offline JPEG archive, torchvision, device-resident batches.

The chapter *Expanded CNNs on CIFAR* (``book/cifar_expanded.ipynb``) trains small CNNs with and
without linear over-parameterization. This module gets the images there:

* :func:`load_cifar10_jpeg` reads the offline ImageFolder JPEG copy of CIFAR-10 (one ``.tar.xz``;
  its location is passed explicitly or read from the environment variable ``CIFAR10_JPEG``, which
  may name the archive or its folder). The archive's SHA-256 is checked, the JPEGs are decoded
  once, and the decoded ``uint8`` arrays are cached under ``.cache/`` (git-ignored) in a file
  keyed by that checksum, so a later run loads them in well under a second.
* :func:`load_torchvision` gets CIFAR-10 or CIFAR-100 through ``torchvision.datasets`` (with
  ``download=True`` where a network exists, e.g. on Colab): the original, lossless arrays.
* :func:`load_cifar` picks one of the two.
* :class:`DeviceLoader` keeps a whole split on one device (GPU or CPU) as normalised tensors and
  yields shuffled, augmented batches with tensor operations only: no worker processes and no
  per-step host-to-device copies (the design of the CIFAR-10 speed records, e.g. airbench's
  ``CifarLoader``). Shuffling and augmentation of epoch ``e``
  depend only on ``(seed, e)``, which is what makes an interrupted run resume exactly.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from support import files, paths, seeding

ENV_VAR = "CIFAR10_JPEG"
ARCHIVE_NAME = "cifar10-jpg.tar.xz"
ARCHIVE_SHA256 = "18ee257832403cf6f3f79ff7db1e971124c3f510d031eb5c9213eee4dab66e51"
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
SPLIT_SIZES = {"train": 50_000, "test": 10_000}
# Bumped whenever decoding changes, so caches written by another decoder are rebuilt.
CACHE_FORMAT = 2

# Per-channel mean and std of the training images (the usual published figures).
NORMALIZATION = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


@dataclass(frozen=True)
class ImageArrays:
    """A dataset as host arrays: images ``uint8`` of shape (N, 32, 32, 3), labels ``int64``.

    ``name`` is "cifar10" or "cifar100" (it selects the normalisation); ``source`` says where the
    pixels came from, for provenance records.
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: tuple
    source: str

    def __post_init__(self):
        for split in ("train", "test"):
            images = getattr(self, f"{split}_images")
            labels = getattr(self, f"{split}_labels")
            if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
                raise TypeError(
                    f"{split}_images must be a uint8 numpy array, got "
                    f"{getattr(images, 'dtype', type(images).__name__)}"
                )
            if images.ndim != 4 or images.shape[3] != 3:
                raise ValueError(
                    f"{split}_images must have shape (N, H, W, 3), got {images.shape}"
                )
            if not isinstance(labels, np.ndarray) or labels.dtype.kind not in "iu":
                raise TypeError(
                    f"{split}_labels must be an integer numpy array (class indices), got "
                    f"{getattr(labels, 'dtype', type(labels).__name__)}"
                )
            if labels.shape != (len(images),):
                raise ValueError(
                    f"{split}_labels must have shape ({len(images)},), got {labels.shape}"
                )
            if len(labels) and (labels.min() < 0 or labels.max() >= len(self.classes)):
                raise ValueError(
                    f"{split}_labels must lie in [0, {len(self.classes)}), got "
                    f"[{labels.min()}, {labels.max()}]"
                )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(
        self, n_train: int | None = None, n_test: int | None = None, seed: int = 0
    ) -> ImageArrays:
        """A class-balanced random subset (``n`` must be a multiple of the number of classes).

        ``None`` keeps a split whole. The kept images stay in their original order.
        """
        rng = seeding.generator(seed, "cifar-subset")
        out = {}
        for split, n in (("train", n_train), ("test", n_test)):
            images, labels = (
                getattr(self, f"{split}_images"),
                getattr(self, f"{split}_labels"),
            )
            if n is None:
                out[split] = (images, labels)
                continue
            idx = _balanced_indices(labels, n, self.num_classes, rng, f"n_{split}")
            out[split] = (images[idx], labels[idx])
        return replace(
            self,
            train_images=out["train"][0],
            train_labels=out["train"][1],
            test_images=out["test"][0],
            test_labels=out["test"][1],
            source=f"{self.source}; subset train={len(out['train'][1])} "
            f"test={len(out['test'][1])} (seed {seed})",
        )

    def with_validation(
        self, n_train: int, n_val: int, seed: int = 0
    ) -> tuple[ImageArrays, dict]:
        """The data for choosing hyper-parameters: training images as ``subset(n_train, seed=seed)``
        picks them, evaluated on ``n_val`` other *training* images; the test set is left out.

        The returned :class:`ImageArrays` holds the validation images in its ``test_*`` fields
        (the trainer evaluates on that split), so a tuning run cannot see a test image. The
        validation images are a class-balanced draw (stream ``"cifar-validation"`` of ``seed``)
        from the training images the subset did not take, so the two are disjoint by
        construction. The second value records the split for provenance: sizes, seed and the
        SHA-256 of the sorted index lists (chapter *Expanded CNNs on CIFAR*, tuning).
        """
        k = self.num_classes
        train_idx = _balanced_indices(
            self.train_labels,
            n_train,
            k,
            seeding.generator(seed, "cifar-subset"),
            "n_train",
        )
        rest = np.setdiff1d(np.arange(len(self.train_labels)), train_idx)
        val_idx = rest[
            _balanced_indices(
                self.train_labels[rest],
                n_val,
                k,
                seeding.generator(seed, "cifar-validation"),
                "n_val",
            )
        ]
        record = {
            "n_train": int(len(train_idx)),
            "n_val": int(len(val_idx)),
            "seed": int(seed),
            "drawn_from": "training images not in the training subset",
            "train_indices_sha256": hashlib.sha256(
                train_idx.astype(np.int64).tobytes()
            ).hexdigest(),
            "val_indices_sha256": hashlib.sha256(
                val_idx.astype(np.int64).tobytes()
            ).hexdigest(),
            "overlap": int(np.intersect1d(train_idx, val_idx).size),
        }
        tuning = replace(
            self,
            train_images=self.train_images[train_idx],
            train_labels=self.train_labels[train_idx],
            test_images=self.train_images[val_idx],
            test_labels=self.train_labels[val_idx],
            source=f"{self.source}; subset train={len(train_idx)} (seed {seed}); "
            f"evaluated on a validation split of {len(val_idx)} other training images",
        )
        return tuning, record

    def fingerprint(self) -> dict:
        """What identifies this data for a checkpoint: name, sizes and SHA-256 of images and labels.

        A training run resumed from a checkpoint must see the same data it started with; the
        trainer compares this record (chapter *Expanded CNNs on CIFAR*).
        """
        digest = hashlib.sha256()
        for array in (
            self.train_images,
            self.train_labels,
            self.test_images,
            self.test_labels,
        ):
            digest.update(np.ascontiguousarray(array).tobytes())
        return {
            "name": self.name,
            "n_train": int(len(self.train_labels)),
            "n_test": int(len(self.test_labels)),
            "num_classes": self.num_classes,
            "sha256": digest.hexdigest(),
        }


def _balanced_indices(labels, n, num_classes, rng, name) -> np.ndarray:
    """Sorted indices of ``n / num_classes`` examples of every class: the first of each class in
    one permutation drawn from ``rng`` (one draw, whatever ``n`` is)."""
    k, rem = divmod(int(n), num_classes)
    if n <= 0 or rem:
        raise ValueError(
            f"subset: {name}={n} must be a positive multiple of "
            f"the number of classes ({num_classes})"
        )
    perm = rng.permutation(len(labels))
    keep = []
    for c in range(num_classes):
        members = perm[labels[perm] == c]
        if len(members) < k:
            raise ValueError(
                f"subset: {name}={n} needs {k} images of class {c}, "
                f"the split has {len(members)}"
            )
        keep.append(members[:k])
    return np.sort(np.concatenate(keep))


def resolve_archive(path=None) -> Path:
    """Path of the CIFAR-10 JPEG archive: ``path`` if given, else the ``CIFAR10_JPEG`` variable.

    Either may name the ``.tar.xz`` itself or the folder holding ``cifar10-jpg.tar.xz``. Raises
    FileNotFoundError, saying what was looked for, when there is no archive there.
    """
    if path is None:
        path = os.environ.get(ENV_VAR)
        if not path:
            raise FileNotFoundError(
                f"no CIFAR-10 JPEG archive given: pass path=... or set the environment variable "
                f"{ENV_VAR} to {ARCHIVE_NAME} or its folder (or use load_torchvision where a "
                f"network is available)"
            )
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / ARCHIVE_NAME
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR-10 JPEG archive not found at {path}")
    return path


def sha256sum(path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_archive(path, expected: str | None = ARCHIVE_SHA256) -> str:
    """Check the archive's SHA-256 against ``expected``; return the checksum.

    Raises ValueError naming both checksums when they differ (a truncated or altered copy).
    ``expected=None`` skips the comparison (for other, e.g. test, archives).
    """
    checksum = sha256sum(path)
    if expected is not None and checksum != expected:
        raise ValueError(
            f"CIFAR-10 JPEG archive {path} is corrupt or not the expected file: "
            f"sha256 {checksum}, expected {expected}; copy it again"
        )
    return checksum


def decode_jpeg_archive(
    path, max_per_class: int | None = None, expected_sizes: dict | None = SPLIT_SIZES
) -> ImageArrays:
    """Decode an ImageFolder archive (``{train,test}/<class>/*.jpg``) into :class:`ImageArrays`.

    Images are sorted by (class, file name) within each split, labels follow the alphabetical
    class order (CIFAR-10's own order). ``max_per_class`` keeps only the first files of each class
    (for quick tests); without it the split sizes must equal ``expected_sizes`` (CIFAR-10's 50,000 /
    10,000 by default; None skips the check), else ValueError. Every image must decode to 32x32 RGB.
    """
    if max_per_class is not None and max_per_class <= 0:
        raise ValueError(f"max_per_class must be positive, got {max_per_class}")
    found = _read_archive(path, max_per_class)
    classes = tuple(sorted(found["train"]))
    arrays = {}
    for split in ("train", "test"):
        if tuple(sorted(found[split])) != classes or not classes:
            raise ValueError(
                f"{path}: class folders differ between splits or are missing "
                f"(train {classes}, {split} {tuple(sorted(found[split]))})"
            )
        images, labels = [], []
        for label, cls in enumerate(classes):
            for _, arr in sorted(found[split][cls], key=lambda item: item[0]):
                images.append(arr)
                labels.append(label)
        if (
            max_per_class is None
            and expected_sizes is not None
            and len(images) != expected_sizes[split]
        ):
            raise ValueError(
                f"{path}: {split} split has {len(images)} images, "
                f"expected {expected_sizes[split]}"
            )
        arrays[split] = (np.stack(images), np.asarray(labels, dtype=np.int64))
    return ImageArrays(
        "cifar10",
        arrays["train"][0],
        arrays["train"][1],
        arrays["test"][0],
        arrays["test"][1],
        classes,
        source=f"CIFAR-10 JPEG archive {Path(path).name}",
    )


def _read_archive(path, max_per_class) -> dict:
    """``{split: {class: [(file name, image), ...]}}`` of every JPEG of the archive (the first
    ``max_per_class`` of each class when given); ValueError naming the file for anything that is
    not a readable 32x32 image."""
    found = {"train": {}, "test": {}}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                parts = Path(member.name).parts
                if not member.isfile() or len(parts) != 3 or parts[0] not in found:
                    continue
                split, cls, fname = parts
                if not fname.lower().endswith((".jpg", ".jpeg")):
                    continue
                per_class = found[split].setdefault(cls, [])
                if max_per_class is not None and len(per_class) >= max_per_class:
                    continue
                per_class.append((fname, _decode(path, member, tar)))
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ValueError(f"cannot read CIFAR-10 JPEG archive {path}: {exc}") from exc
    return found


def _decode(path, member, tar) -> np.ndarray:
    """One archive member as a 32x32 RGB ``uint8`` array."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(tar.extractfile(member).read())) as img:
            arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except Image.DecompressionBombError as exc:
        raise ValueError(
            f"{path}: {member.name} claims a huge image, not a 32x32 CIFAR image ({exc})"
        ) from exc
    if arr.shape != (32, 32, 3):
        raise ValueError(
            f"{path}: {member.name} has shape {arr.shape}, expected (32, 32, 3)"
        )
    return arr


def load_cifar10_jpeg(
    path=None,
    cache_dir=None,
    expected_sha256: str | None = ARCHIVE_SHA256,
    expected_sizes: dict = SPLIT_SIZES,
) -> ImageArrays:
    """CIFAR-10 from the offline JPEG archive, decoded once and cached by checksum.

    ``path``: the archive or its folder (default: the ``CIFAR10_JPEG`` variable). ``cache_dir``
    (default :func:`support.paths.cache_dir`) receives ``cifar10-jpeg-<sha256[:16]>.npz`` with
    the decoded arrays. A cache is used only when it reads back completely and passes
    :func:`_valid_cache` (format, decoder version, shapes, dtypes, label range); anything
    else -- truncated, corrupt, stale, or from another decoder -- is decoded again and rewritten. A
    failed cache write only warns: the decoded data is returned all the same. Raises
    FileNotFoundError for a missing archive and ValueError for a corrupt one (checksum or split
    sizes, ``expected_sizes``).
    """
    archive = resolve_archive(path)
    checksum = verify_archive(archive, expected_sha256)
    cache_dir = Path(cache_dir) if cache_dir is not None else paths.cache_dir()
    cache = cache_dir / f"cifar10-jpeg-{checksum[:16]}.npz"
    source = f"CIFAR-10 JPEG archive {archive.name} (sha256 {checksum[:12]}...)"
    if files.check_target(cache, "decoded CIFAR-10 cache").exists():
        try:
            with np.load(cache, allow_pickle=False) as stored:
                fields = {k: stored[k] for k in stored.files}
        except (
            Exception
        ):  # any unreadable cache (truncated zip, bad header, ...) is rebuilt
            fields = None
        if fields is not None and _valid_cache(fields, expected_sizes):
            return ImageArrays(
                "cifar10",
                fields["train_images"],
                fields["train_labels"],
                fields["test_images"],
                fields["test_labels"],
                tuple(str(c) for c in fields["classes"]),
                source,
            )
    decoded = replace(
        decode_jpeg_archive(archive, expected_sizes=expected_sizes), source=source
    )
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with files.atomic_writer(cache, "decoded CIFAR-10 cache") as handle:
            np.savez(
                handle,
                format=np.int64(CACHE_FORMAT),
                decoder=np.asarray(decoder_version()),
                train_images=decoded.train_images,
                train_labels=decoded.train_labels,
                test_images=decoded.test_images,
                test_labels=decoded.test_labels,
                classes=np.asarray(decoded.classes),
            )
    except OSError as exc:
        warnings.warn(
            f"could not write the decoded CIFAR-10 cache {cache} ({exc}); "
            f"continuing without it (the next run decodes again)",
            RuntimeWarning,
            stacklevel=2,
        )
    return decoded


def decoder_version() -> str:
    """The JPEG decoder behind a cache (Pillow's version): another decoder may give other pixels."""
    import PIL

    return f"Pillow {PIL.__version__}"


def _valid_cache(fields: dict, expected_sizes: dict) -> bool:
    """Whether decoded arrays read from a cache are complete and plausible: the current format
    and decoder, the expected split sizes of 32x32 RGB uint8 images, int64 labels within the
    class list."""
    try:
        classes = fields["classes"]
        if (
            int(fields["format"]) != CACHE_FORMAT
            or str(fields["decoder"]) != decoder_version()
            or classes.ndim != 1
            or len(classes) < 2
        ):
            return False
        for split in ("train", "test"):
            images, labels = fields[f"{split}_images"], fields[f"{split}_labels"]
            n = expected_sizes[split]
            if images.shape != (n, 32, 32, 3) or images.dtype != np.uint8:
                return False
            if (
                labels.shape != (n,)
                or labels.dtype != np.int64
                or labels.min() < 0
                or labels.max() >= len(classes)
            ):
                return False
    except (KeyError, TypeError, ValueError):
        return False
    return True


def load_torchvision(
    name: str = "cifar10", root=None, download: bool = True
) -> ImageArrays:
    """CIFAR-10 or CIFAR-100 through ``torchvision.datasets`` (the original arrays).

    ``root`` defaults to ``torchvision/`` in :func:`support.paths.cache_dir`;
    ``download=True`` fetches the files where a network exists (Colab). Raises
    FileNotFoundError, naming the offline alternative, when the files are neither present
    nor downloadable.
    """
    import torchvision

    classes = {
        "cifar10": torchvision.datasets.CIFAR10,
        "cifar100": torchvision.datasets.CIFAR100,
    }
    if name not in classes:
        raise ValueError(f"name must be one of {sorted(classes)}, got {name!r}")
    root = Path(root) if root is not None else paths.cache_dir() / "torchvision"
    try:
        train = classes[name](str(root), train=True, download=download)
        test = classes[name](str(root), train=False, download=download)
    except (
        OSError,
        RuntimeError,
    ) as e:  # URLError is an OSError; a missing offline copy a RuntimeError
        raise FileNotFoundError(
            f"{name} is not in {root} and could not be downloaded ({type(e).__name__}: {e}); "
            f"offline, set {ENV_VAR} to the CIFAR-10 JPEG archive (CIFAR-10 only)"
        ) from e
    return ImageArrays(
        name,
        np.asarray(train.data, dtype=np.uint8),
        np.asarray(train.targets, dtype=np.int64),
        np.asarray(test.data, dtype=np.uint8),
        np.asarray(test.targets, dtype=np.int64),
        tuple(train.classes),
        source=f"torchvision.datasets.{classes[name].__name__}",
    )


def load_cifar(
    name: str = "cifar10", source: str = "auto", path=None, cache_dir=None
) -> ImageArrays:
    """Load CIFAR-10/100. ``source``: "jpeg" (offline archive), "torchvision", or "auto".

    "auto" uses the JPEG archive for CIFAR-10 when ``path`` is given or ``CIFAR10_JPEG`` is set,
    and torchvision (downloading) otherwise. CIFAR-100 exists only through torchvision here.
    """
    if source not in ("auto", "jpeg", "torchvision"):
        raise ValueError(
            f"source must be 'auto', 'jpeg' or 'torchvision', got {source!r}"
        )
    if name not in NORMALIZATION:
        raise ValueError(f"name must be one of {sorted(NORMALIZATION)}, got {name!r}")
    if source == "auto":
        source = (
            "jpeg"
            if name == "cifar10" and (path is not None or os.environ.get(ENV_VAR))
            else "torchvision"
        )
    if source == "jpeg":
        if name != "cifar10":
            raise ValueError(
                f"the offline JPEG archive holds CIFAR-10 only, not {name!r}"
            )
        return load_cifar10_jpeg(path, cache_dir=cache_dir)
    return load_torchvision(
        name, root=None if cache_dir is None else Path(cache_dir) / "torchvision"
    )


def synthetic(
    n_train: int = 256, n_test: int = 128, num_classes: int = 10, seed: int = 0
) -> ImageArrays:
    """A small learnable stand-in for CIFAR (tests): noisy images tinted by a per-class colour pattern."""
    if n_train <= 0 or n_test <= 0 or num_classes < 2:
        raise ValueError(
            f"synthetic: need positive sizes and >= 2 classes, got {n_train}, {n_test}, {num_classes}"
        )
    rng = np.random.default_rng(seed)
    templates = (
        rng.uniform(-60, 60, size=(num_classes, 8, 8, 3))
        .repeat(4, axis=1)
        .repeat(4, axis=2)
    )

    def draw(n):
        labels = rng.integers(0, num_classes, size=n)
        noise = rng.normal(128, 40, size=(n, 32, 32, 3))
        return np.clip(noise + templates[labels], 0, 255).astype(
            np.uint8
        ), labels.astype(np.int64)

    (xtr, ytr), (xte, yte) = draw(n_train), draw(n_test)
    return ImageArrays(
        "cifar10",
        xtr,
        ytr,
        xte,
        yte,
        tuple(f"class{c}" for c in range(num_classes)),
        source=f"synthetic (seed {seed})",
    )


def normalized_tensor(images, mean, std, device="cpu"):
    """uint8 images (N, H, W, 3) -> float32 tensor (N, 3, H, W) on ``device``, per-channel normalised."""
    import torch

    x = (
        torch.as_tensor(np.asarray(images))
        .to(device)
        .permute(0, 3, 1, 2)
        .float()
        .div_(255)
    )
    m = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


class DeviceLoader:
    """Shuffled, augmented batches of a dataset held entirely on one device.

    The images are converted once to normalised ``dtype`` tensors in NCHW layout (``channels_last``
    memory format by default) on ``device``; labels become ``int64`` there. Training loaders
    (``train=True``) reshuffle every epoch and apply a random translation by up to ``translate``
    pixels (reflection padding, i.e. a random crop of the padded image) and a random horizontal
    flip, all as tensor operations on the device; the last incomplete batch is dropped.
    Evaluation loaders keep the order and every image.

    Epoch ``e`` (set with :meth:`set_epoch`) draws its permutation and augmentation from a generator
    seeded with ``(seed, e)`` only, so a resumed run sees exactly the batches of an uninterrupted
    one. Under data-parallel training each of ``world_size`` processes takes every
    ``world_size``-th example of the epoch's permutation (``rank`` selects which).
    """

    def __init__(
        self,
        images,
        labels,
        batch_size: int,
        *,
        train: bool,
        device="cpu",
        dtype=None,
        mean=NORMALIZATION["cifar10"][0],
        std=NORMALIZATION["cifar10"][1],
        translate: int = 2,
        flip: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        channels_last: bool = True,
    ):
        import torch

        images = np.asarray(images) if not isinstance(images, torch.Tensor) else images
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(
                f"images: expected shape (N, H, W, 3), got {tuple(images.shape)}"
            )
        if images.dtype not in (np.uint8, torch.uint8):
            raise ValueError(f"images: expected uint8 pixels, got dtype {images.dtype}")
        if len(labels) != len(images):
            raise ValueError(f"labels: {len(labels)} labels for {len(images)} images")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(
                f"rank must be in [0, world_size={world_size}), got {rank}"
            )
        if translate < 0:
            raise ValueError(f"translate must be >= 0, got {translate}")
        self.device = torch.device(device)
        self.dtype = dtype or torch.float32
        self.batch_size, self.train, self.translate, self.flip = (
            int(batch_size),
            bool(train),
            int(translate),
            bool(flip),
        )
        self.seed, self.rank, self.world_size, self.epoch = (
            int(seed),
            int(rank),
            int(world_size),
            0,
        )
        self.memory_format = (
            torch.channels_last if channels_last else torch.contiguous_format
        )
        x = normalized_tensor(images, mean, std, device=self.device).to(self.dtype)
        if self.train and self.translate:
            p = self.translate
            x = torch.nn.functional.pad(x.float(), (p, p, p, p), mode="reflect").to(
                self.dtype
            )
        self.images = x.contiguous(memory_format=self.memory_format)
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64).to(
            self.device
        )
        if self.train and self.per_rank < self.batch_size:
            raise ValueError(
                f"batch_size={batch_size} exceeds the {self.per_rank} training examples "
                f"per process: no complete batch"
            )

    @property
    def num_examples(self) -> int:
        return len(self.labels)

    @property
    def per_rank(self) -> int:
        """Examples this process sees per epoch (in training, a multiple of ``world_size`` is used)."""
        n = self.num_examples
        return (
            n // self.world_size
            if self.train
            else len(range(self.rank, n, self.world_size))
        )

    def __len__(self) -> int:
        if self.train:
            return self.per_rank // self.batch_size
        return -(-self.per_rank // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose permutation and augmentation the next iteration uses."""
        self.epoch = int(epoch)

    def _generator(self):
        return seeding.torch_generator(
            self.seed, "loader-epoch", self.epoch, device=self.device
        )

    def _augmented(self, g):
        """The whole split translated and flipped for this epoch (identical on every rank)."""
        import torch

        x, n, p = self.images, self.num_examples, self.translate
        if p:
            shifts = torch.randint(
                0, 2 * p + 1, (2, n), generator=g, device=self.device
            )
            size = x.shape[-1] - 2 * p
            out = torch.empty(
                (n, x.shape[1], size, size), dtype=x.dtype, device=self.device
            )
            out = out.contiguous(memory_format=self.memory_format)
            for dy in range(2 * p + 1):
                for dx in range(2 * p + 1):
                    sel = ((shifts[0] == dy) & (shifts[1] == dx)).nonzero().squeeze(1)
                    out[sel] = x[sel, :, dy : dy + size, dx : dx + size]
            x = out
        if self.flip:
            flips = torch.rand(n, generator=g, device=self.device) < 0.5
            x = torch.where(flips.view(-1, 1, 1, 1), x.flip(-1), x)
        return x

    def __iter__(self):
        import torch

        if not self.train:
            order = torch.arange(
                self.rank, self.num_examples, self.world_size, device=self.device
            )
            for i in range(0, len(order), self.batch_size):
                idx = order[i : i + self.batch_size]
                yield self.images[idx], self.labels[idx]
            return
        g = self._generator()
        perm = torch.randperm(self.num_examples, generator=g, device=self.device)
        x = self._augmented(g)
        mine = perm[: self.per_rank * self.world_size][self.rank :: self.world_size]
        for b in range(len(self)):
            idx = mine[b * self.batch_size : (b + 1) * self.batch_size]
            yield x[idx].contiguous(memory_format=self.memory_format), self.labels[idx]


def loaders(
    data: ImageArrays,
    batch_size: int,
    *,
    device="cpu",
    dtype=None,
    eval_batch_size: int | None = None,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    translate: int = 2,
    flip: bool = True,
    channels_last: bool = True,
):
    """``(train_loader, train_eval_loader, test_loader)`` for ``data`` on ``device``.

    The middle one runs over the un-augmented training images in order (train accuracy).
    """
    mean, std = NORMALIZATION[data.name]
    common = dict(
        device=device,
        dtype=dtype,
        mean=mean,
        std=std,
        rank=rank,
        world_size=world_size,
        channels_last=channels_last,
    )
    eval_bs = eval_batch_size or max(batch_size, 500)
    train = DeviceLoader(
        data.train_images,
        data.train_labels,
        batch_size,
        train=True,
        translate=translate,
        flip=flip,
        seed=seed,
        **common,
    )
    train_eval = DeviceLoader(
        data.train_images, data.train_labels, eval_bs, train=False, **common
    )
    test = DeviceLoader(
        data.test_images, data.test_labels, eval_bs, train=False, **common
    )
    return train, train_eval, test
