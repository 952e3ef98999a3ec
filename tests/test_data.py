"""Tests of support.data: archive checks and decoding, the checksum-keyed cache, subsets, device loader."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import make_archive

from support import data

REAL_ARCHIVE_DIR = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-jpeg"
)


def test_resolve_archive_errors_and_env(tmp_path, monkeypatch):
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    with pytest.raises(FileNotFoundError, match=data.ENV_VAR):
        data.resolve_archive()
    with pytest.raises(FileNotFoundError, match="not found"):
        data.resolve_archive(tmp_path)  # folder without the archive
    archive = tmp_path / data.ARCHIVE_NAME
    archive.write_bytes(b"x")
    assert data.resolve_archive(tmp_path) == archive
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    assert data.resolve_archive() == archive


def test_verify_archive_detects_corruption(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"hello world" * 1000)
    expected = hashlib.sha256(b"hello world" * 1000).hexdigest()
    assert data.verify_archive(path, expected) == expected
    with pytest.raises(ValueError, match="corrupt"):
        data.verify_archive(path)  # not the CIFAR-10 checksum


def test_decode_tiny_archive_order_labels_and_pixels(tmp_path):
    path = tmp_path / "tiny.tar.xz"
    decoded = make_archive(path)
    arrays = data.decode_jpeg_archive(path, expected_sizes={"train": 6, "test": 4})
    assert arrays.classes == (
        "a_cls",
        "b_cls",
    )  # alphabetical, whatever the archive order
    assert (
        arrays.train_images.shape == (6, 32, 32, 3)
        and arrays.train_images.dtype == np.uint8
    )
    np.testing.assert_array_equal(arrays.train_labels, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(arrays.test_labels, [0, 0, 1, 1])
    np.testing.assert_array_equal(
        arrays.train_images[1], decoded[("train", "a_cls", 1)]
    )
    np.testing.assert_array_equal(arrays.test_images[2], decoded[("test", "b_cls", 0)])
    few = data.decode_jpeg_archive(path, max_per_class=1)
    assert len(few.train_labels) == 2 and len(few.test_labels) == 2
    with pytest.raises(ValueError, match="expected 50000"):
        data.decode_jpeg_archive(path)  # CIFAR-10's split sizes by default


def test_decode_rejects_wrong_shape_and_truncation(tmp_path):
    bad = tmp_path / "bad.tar.xz"
    make_archive(bad, size=16)
    with pytest.raises(ValueError, match=r"shape \(16, 16, 3\)"):
        data.decode_jpeg_archive(bad, expected_sizes=None)
    good = tmp_path / "good.tar.xz"
    make_archive(good)
    truncated = tmp_path / "trunc.tar.xz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="cannot read"):
        data.decode_jpeg_archive(truncated, expected_sizes=None)


def test_cache_is_keyed_by_checksum_and_reused(tmp_path):
    path = tmp_path / "tiny.tar.xz"
    make_archive(path)
    sizes = {"train": 6, "test": 4}
    first = data.load_cifar10_jpeg(
        path, cache_dir=tmp_path / "cache", expected_sha256=None, expected_sizes=sizes
    )
    checksum = hashlib.sha256(path.read_bytes()).hexdigest()
    cache = tmp_path / "cache" / f"cifar10-jpeg-{checksum[:16]}.npz"
    assert cache.exists()
    os.utime(cache, (1, 1))
    path_mtime = cache.stat().st_mtime
    second = data.load_cifar10_jpeg(
        path, cache_dir=tmp_path / "cache", expected_sha256=None, expected_sizes=sizes
    )
    assert cache.stat().st_mtime == path_mtime  # loaded, not rewritten
    np.testing.assert_array_equal(first.train_images, second.train_images)
    assert second.classes == first.classes
    cache.write_bytes(b"garbage")  # a damaged cache is decoded again
    third = data.load_cifar10_jpeg(
        path, cache_dir=tmp_path / "cache", expected_sha256=None, expected_sizes=sizes
    )
    np.testing.assert_array_equal(third.test_images, first.test_images)
    with pytest.raises(ValueError, match="corrupt"):
        data.load_cifar10_jpeg(
            path, cache_dir=tmp_path / "cache"
        )  # real checksum expected


def _real_archive():
    for candidate in (os.environ.get(data.ENV_VAR), REAL_ARCHIVE_DIR):
        if candidate:
            try:
                return data.resolve_archive(candidate)
            except FileNotFoundError:
                continue
    return None


@pytest.mark.skipif(
    _real_archive() is None,
    reason=f"CIFAR-10 JPEG archive not available (set {data.ENV_VAR} or place it in ../shared/data/cifar10-jpeg)",
)
def test_real_archive_checksum_and_slice():
    path = _real_archive()
    assert data.verify_archive(path) == data.ARCHIVE_SHA256
    arrays = data.decode_jpeg_archive(path, max_per_class=3)
    assert arrays.classes == data.CIFAR10_CLASSES
    assert arrays.train_images.shape == (
        30,
        32,
        32,
        3,
    ) and arrays.test_images.shape == (30, 32, 32, 3)
    np.testing.assert_array_equal(np.bincount(arrays.train_labels), [3] * 10)
    assert (
        60 < arrays.train_images.mean() < 190
    )  # natural images, not blank or saturated


def test_subset_is_class_balanced_and_ordered():
    d = data.synthetic(200, 100, num_classes=4, seed=1)
    s = d.subset(40, 20, seed=3)
    np.testing.assert_array_equal(np.bincount(s.train_labels, minlength=4), [10] * 4)
    np.testing.assert_array_equal(np.bincount(s.test_labels, minlength=4), [5] * 4)
    # kept images appear in their original order, and are images of the original set
    flat = d.train_images.reshape(len(d.train_images), -1)
    pos = [
        int(np.flatnonzero((flat == img.reshape(-1)).all(1))[0])
        for img in s.train_images
    ]
    assert pos == sorted(pos)
    assert d.subset(40, 20, seed=3).train_labels.tolist() == s.train_labels.tolist()
    with pytest.raises(ValueError, match="multiple"):
        d.subset(41)
    with pytest.raises(ValueError, match="needs"):
        d.subset(4000)


def test_load_cifar_argument_errors():
    with pytest.raises(ValueError, match="source"):
        data.load_cifar("cifar10", source="disk")
    with pytest.raises(ValueError, match="name"):
        data.load_cifar("mnist")
    with pytest.raises(ValueError, match="CIFAR-10 only"):
        data.load_cifar("cifar100", source="jpeg")


def test_eval_loader_normalises_in_order():
    d = data.synthetic(10, 7, seed=0)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    loader = data.DeviceLoader(
        d.test_images, d.test_labels, 3, train=False, mean=mean, std=std
    )
    xs, ys = zip(*loader)
    assert [len(y) for y in ys] == [3, 3, 1] and len(loader) == 3
    x = torch.cat(xs).numpy()
    expected = (
        d.test_images.transpose(0, 3, 1, 2) / 255 - np.array(mean)[:, None, None]
    ) / np.array(std)[:, None, None]
    np.testing.assert_allclose(x, expected, atol=1e-6)
    np.testing.assert_array_equal(torch.cat(ys).numpy(), d.test_labels)


def test_train_loader_is_a_deterministic_permutation_per_epoch():
    d = data.synthetic(50, 10, seed=0)
    labels = np.arange(50)  # label = index, to see the permutation
    loader = data.DeviceLoader(
        d.train_images,
        labels,
        8,
        train=True,
        translate=0,
        flip=False,
        seed=5,
        mean=(0, 0, 0),
        std=(1, 1, 1),
    )
    assert len(loader) == 6  # 50 // 8, last partial batch dropped
    epoch0 = torch.cat([y for _, y in loader]).numpy()
    assert len(set(epoch0.tolist())) == 48
    for x, y in loader:  # without augmentation a batch holds exactly the indexed images
        np.testing.assert_allclose(
            x.numpy(), d.train_images[y.numpy()].transpose(0, 3, 1, 2) / 255, atol=1e-6
        )
    again = torch.cat([y for _, y in loader]).numpy()
    np.testing.assert_array_equal(epoch0, again)
    loader.set_epoch(1)
    assert not np.array_equal(epoch0, torch.cat([y for _, y in loader]).numpy())


def test_augmentation_is_a_reflect_padded_crop_or_its_mirror():
    d = data.synthetic(64, 8, seed=2)
    labels = np.arange(64)
    p = 2
    loader = data.DeviceLoader(
        d.train_images,
        labels,
        16,
        train=True,
        translate=p,
        flip=True,
        seed=0,
        mean=(0, 0, 0),
        std=(1, 1, 1),
    )
    padded = np.pad(
        d.train_images.transpose(0, 3, 1, 2) / 255,
        ((0, 0), (0, 0), (p, p), (p, p)),
        mode="reflect",
    )
    shifts, flips = set(), 0
    for x, y in loader:
        for img, i in zip(x.numpy(), y.numpy()):
            found = None
            for dy in range(2 * p + 1):
                for dx in range(2 * p + 1):
                    crop = padded[i, :, dy : dy + 32, dx : dx + 32]
                    for flipped, cand in ((False, crop), (True, crop[..., ::-1])):
                        if np.allclose(img, cand, atol=1e-6):
                            found = (dy, dx, flipped)
            assert found is not None, (
                "augmented image is not a crop of the padded original"
            )
            shifts.add(found[:2])
            flips += found[2]
    assert len(shifts) > 10 and 10 < flips < 54  # shifts and flips actually vary


def test_sharding_reassembles_the_single_process_batches():
    d = data.synthetic(40, 10, seed=0)
    labels = np.arange(40)
    kw = dict(train=True, translate=1, seed=3, mean=(0, 0, 0), std=(1, 1, 1))
    whole = [y for _, y in data.DeviceLoader(d.train_images, labels, 8, **kw)]
    ranks = [
        [
            y
            for _, y in data.DeviceLoader(
                d.train_images, labels, 4, rank=r, world_size=2, **kw
            )
        ]
        for r in (0, 1)
    ]
    assert len(ranks[0]) == len(whole) == 5
    for b, y in enumerate(whole):
        assert sorted(y.tolist()) == sorted(ranks[0][b].tolist() + ranks[1][b].tolist())


def test_loader_argument_errors():
    d = data.synthetic(20, 10, seed=0)
    with pytest.raises(ValueError, match="uint8"):
        data.DeviceLoader(
            d.train_images.astype(np.float32), d.train_labels, 4, train=True
        )
    with pytest.raises(ValueError, match="labels"):
        data.DeviceLoader(d.train_images, d.train_labels[:5], 4, train=True)
    with pytest.raises(ValueError, match="batch_size"):
        data.DeviceLoader(d.train_images, d.train_labels, 64, train=True)
    with pytest.raises(ValueError, match="rank"):
        data.DeviceLoader(
            d.train_images, d.train_labels, 4, train=True, rank=2, world_size=2
        )


def test_missing_dataset_without_network_names_the_offline_alternative(
    tmp_path, monkeypatch
):
    import urllib.error

    import torchvision

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    with pytest.raises(
        FileNotFoundError, match=f"could not be downloaded.*set {data.ENV_VAR}"
    ):
        data.load_cifar("cifar10", cache_dir=tmp_path)


def test_validation_split_is_disjoint_balanced_and_keeps_the_training_subset():
    full = data.synthetic(600, 30, seed=1)
    tuning, record = full.with_validation(100, 50, seed=3)
    subset = full.subset(100, None, seed=3)
    np.testing.assert_array_equal(tuning.train_images, subset.train_images)
    np.testing.assert_array_equal(tuning.train_labels, subset.train_labels)
    assert np.bincount(tuning.test_labels, minlength=10).tolist() == [5] * 10
    flat = full.train_images.reshape(len(full.train_images), -1)

    def rows(images):
        return {
            int(np.flatnonzero((flat == im.reshape(-1)).all(1))[0]) for im in images
        }

    train_rows, val_rows = rows(tuning.train_images), rows(tuning.test_images)
    assert len(val_rows) == 50 and not train_rows & val_rows
    same = tuning.test_images.reshape(50, 1, -1) == full.test_images.reshape(1, 30, -1)
    assert not same.all(-1).any()  # no test image among the validation images
    assert record["overlap"] == 0 and (record["n_train"], record["n_val"]) == (100, 50)
    again, record_again = full.with_validation(100, 50, seed=3)
    np.testing.assert_array_equal(again.test_images, tuning.test_images)
    assert record_again == record
    assert (
        full.with_validation(100, 50, seed=4)[1]["val_indices_sha256"]
        != (record["val_indices_sha256"])
    )


def test_validation_split_refuses_what_the_rest_cannot_hold():
    full = data.synthetic(200, 30, seed=1)
    with pytest.raises(ValueError, match="n_val=150 needs 15 images of class"):
        full.with_validation(100, 150)
    with pytest.raises(ValueError, match="n_val=55 must be a positive multiple"):
        full.with_validation(100, 55)


@pytest.mark.parametrize(
    "field, value, error, message",
    [
        ("train_labels", np.array([0.0, 1.7, 1.0, 0.0]), TypeError, "integer numpy"),
        ("train_labels", np.array([0, 1, 5, 0]), ValueError, r"lie in \[0, 2\)"),
        ("train_labels", np.array([0, 1, 1]), ValueError, r"shape \(4,\)"),
        ("train_images", np.zeros((4, 32, 32, 3)), TypeError, "uint8"),
        ("test_images", np.zeros((2, 32, 32), np.uint8), ValueError, r"\(N, H, W, 3\)"),
    ],
)
def test_image_arrays_refuse_what_would_train_on_wrong_labels(
    field, value, error, message
):
    fields = dict(
        name="cifar10",
        train_images=np.zeros((4, 32, 32, 3), np.uint8),
        train_labels=np.array([0, 1, 1, 0]),
        test_images=np.zeros((2, 32, 32, 3), np.uint8),
        test_labels=np.array([0, 1]),
        classes=("a", "b"),
        source="test",
    )
    with pytest.raises(error, match=message):
        data.ImageArrays(**{**fields, field: value})


def test_a_decompression_bomb_in_the_archive_is_a_clear_error(tmp_path, monkeypatch):
    from PIL import Image

    path = tmp_path / "bomb.tar.xz"
    make_archive(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 32x32 now counts as a bomb
    with pytest.raises(ValueError, match="claims a huge image"):
        data.decode_jpeg_archive(path, expected_sizes=None)


def test_cache_write_does_not_follow_a_planted_link_and_refuses_a_fifo(tmp_path):
    import os

    path = tmp_path / "a.tar.xz"
    make_archive(path)
    sizes = {"train": 6, "test": 4}
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    checksum = hashlib.sha256(path.read_bytes()).hexdigest()
    stem = f"cifar10-jpeg-{checksum[:16]}"
    for pid in range(os.getpid() - 2, os.getpid() + 3):  # the old predictable names
        (cache_dir / f".{stem}.{pid}.tmp.npz").symlink_to(victim)
    data.load_cifar10_jpeg(
        path, cache_dir=cache_dir, expected_sha256=None, expected_sizes=sizes
    )
    assert victim.read_text() == "keep me" and (cache_dir / f"{stem}.npz").is_file()
    (cache_dir / f"{stem}.npz").unlink()
    os.mkfifo(cache_dir / f"{stem}.npz")
    with pytest.raises(OSError, match="named pipe"):
        data.load_cifar10_jpeg(
            path, cache_dir=cache_dir, expected_sha256=None, expected_sizes=sizes
        )
