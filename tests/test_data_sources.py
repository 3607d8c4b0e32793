"""Every data source loads with the right shapes and labels; bad input raises DataError naming the problem."""

from __future__ import annotations

import dataclasses
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnray.config.data import DataSection
from cnnray.data import check_num_classes, describe_dataset, load_arrays, resolve_loader_kind
from cnnray.data.fake import write_image_folder
from cnnray.data.safe_pickle import safe_loads
from cnnray.errors import ConfigError, DataError


def write_fake_cifar(parent: Path, kind: str, n_train: int = 6, n_test: int = 4) -> Path:
    """Tiny batches in the real format: protocol-2 pickles of dicts with bytes keys and uint8 (N, 3072) data."""
    rng = np.random.default_rng(0)
    if kind == "cifar10":
        d = parent / "cifar-10-batches-py"
        train, test, meta, lkey, nkey, k = [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "batches.meta", \
            b"labels", b"label_names", 10
    else:
        d = parent / "cifar-100-python"
        train, test, meta, lkey, nkey, k = ["train"], "test", "meta", b"fine_labels", b"fine_label_names", 100
    d.mkdir(parents=True)
    for name, n in [*((t, n_train) for t in train), (test, n_test)]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), lkey: [int(v) for v in rng.integers(0, k, n)],
                 b"batch_label": name.encode()}
        (d / name).write_bytes(pickle.dumps(batch, protocol=2))
    (d / meta).write_bytes(pickle.dumps({nkey: [f"c{i}".encode() for i in range(k)]}, protocol=2))
    return d


def _check(cfg: DataSection, n_classes: int, channels: int) -> None:
    info = describe_dataset(cfg)
    tx, ty, vx, vy = load_arrays(cfg)
    s = cfg.image_size
    assert tx.dtype == vx.dtype == torch.uint8 and ty.dtype == vy.dtype == torch.int64
    assert tx.shape[1:] == vx.shape[1:] == (channels, s, s)
    assert (info.num_train, info.num_val) == (len(tx), len(vx)) == (len(ty), len(vy))
    assert info.num_classes == n_classes and len(info.class_names) == n_classes and info.channels == channels
    assert 0 <= int(ty.min()) and int(ty.max()) < n_classes and int(vy.max()) < n_classes
    assert len(info.mean) == len(info.std) == channels and len(info.fingerprint) == 64
    assert info.nbytes_train == tx.numel()


def test_digits_shapes_split_and_channels():
    _check(DataSection(source="digits", image_size=16), 10, 1)
    _check(DataSection(source="digits", image_size=8, channels=3), 10, 3)
    a, b = load_arrays(DataSection(source="digits", split_seed=1)), load_arrays(DataSection(source="digits", split_seed=1))
    assert torch.equal(a[1], b[1]) and torch.equal(a[0], b[0])
    c = load_arrays(DataSection(source="digits", split_seed=2))
    assert not torch.equal(a[1], c[1])
    assert len(a[0]) + len(a[2]) == 1797


def test_synthetic_deterministic_and_classes():
    cfg = DataSection(source="synthetic", num_classes=4, samples_per_class=10, image_size=12)
    _check(cfg, 4, 3)
    assert describe_dataset(cfg).fingerprint == describe_dataset(cfg).fingerprint
    assert describe_dataset(cfg).fingerprint != describe_dataset(cfg.model_copy(update={"split_seed": 1})).fingerprint
    _check(cfg.model_copy(update={"channels": 1}), 4, 1)


@pytest.mark.parametrize("kind,k", [("cifar10", 10), ("cifar100", 100)])
def test_fake_cifar_in_real_pickle_format(tmp_path, kind, k):
    write_fake_cifar(tmp_path, kind)
    for path in (tmp_path, tmp_path / ("cifar-10-batches-py" if kind == "cifar10" else "cifar-100-python")):
        cfg = DataSection(source=kind, path=str(path), image_size=32)
        _check(cfg, k, 3)
    tx, ty, vx, vy = load_arrays(cfg)
    assert len(tx) == (30 if kind == "cifar10" else 6) and len(vx) == 4  # val = the official test batch
    _check(cfg.model_copy(update={"channels": 1, "image_size": 16}), k, 1)


def test_cifar_missing_files_named(tmp_path):
    with pytest.raises(DataError, match="data_batch_1.*test_batch.*batches.meta"):
        load_arrays(DataSection(source="cifar10", path=str(tmp_path)))
    with pytest.raises(DataError, match=str(tmp_path / "nope")):
        describe_dataset(DataSection(source="cifar10", path=str(tmp_path / "nope")))
    with pytest.raises(ConfigError, match="data.path is required"):
        describe_dataset(DataSection(source="cifar100"))


def test_restricted_unpickler_refuses_os_system(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    with pytest.raises(DataError, match="refusing to unpickle global .*system"):
        safe_loads(pickle.dumps({b"data": Evil()}, protocol=2), "evil")
    assert not (tmp_path / "pwned").exists()
    arr = np.arange(6, dtype=np.uint8)
    for protocol in (2, 4, 5):  # numpy's own reconstruction stays allowed
        assert np.array_equal(safe_loads(pickle.dumps({"a": arr}, protocol=protocol))["a"], arr)


def test_cifar_batch_with_evil_global_is_refused(tmp_path):
    d = write_fake_cifar(tmp_path, "cifar10")
    (d / "data_batch_3").write_bytes(pickle.dumps({b"data": os.system}, protocol=2))
    with pytest.raises(DataError, match="data_batch_3.*posix.system|data_batch_3.*refusing"):
        load_arrays(DataSection(source="cifar10", path=str(tmp_path)))


def test_imagefolder_with_and_without_val(tmp_path):
    write_image_folder(tmp_path / "a", num_classes=3, per_class=6, size=10, val_per_class=2)
    cfg = DataSection(source="imagefolder", path=str(tmp_path / "a"), image_size=8)
    _check(cfg, 3, 3)
    assert describe_dataset(cfg).num_val == 6
    write_image_folder(tmp_path / "b", num_classes=2, per_class=10, size=10, channels=1)
    cfg = DataSection(source="imagefolder", path=str(tmp_path / "b"), image_size=8, val_fraction=0.3)
    _check(cfg, 2, 1)
    assert describe_dataset(cfg).num_val == 6  # 30% of each class split off train


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path / "missing")):
        describe_dataset(DataSection(source="imagefolder", path=str(tmp_path / "missing")))
    root = write_image_folder(tmp_path / "empty", num_classes=2, per_class=2, size=8)
    (root / "train" / "class_9").mkdir()
    with pytest.raises(DataError, match="class_9 is empty"):
        describe_dataset(DataSection(source="imagefolder", path=str(root)))
    root = write_image_folder(tmp_path / "val", num_classes=2, per_class=2, size=8, val_per_class=1)
    (root / "val" / "zebra").mkdir()
    Image.new("RGB", (8, 8)).save(root / "val" / "zebra" / "z.png")
    with pytest.raises(DataError, match="val class 'zebra'"):
        describe_dataset(DataSection(source="imagefolder", path=str(root)))
    root = write_image_folder(tmp_path / "mixed", num_classes=2, per_class=2, size=8)
    Image.new("L", (8, 8)).save(root / "train" / "class_1" / "grey.png")
    with pytest.raises(DataError, match="mixed channel counts.*grey.png.*data.channels"):
        describe_dataset(DataSection(source="imagefolder", path=str(root)))
    assert describe_dataset(DataSection(source="imagefolder", path=str(root), channels=3)).channels == 3
    (root / "train" / "class_0" / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError, match="broken.png"):
        load_arrays(DataSection(source="imagefolder", path=str(root), channels=3))


def test_loader_kind_and_num_classes_check():
    cfg = DataSection(source="synthetic", samples_per_class=10, image_size=16)
    info = describe_dataset(cfg)
    assert resolve_loader_kind(cfg, info) == "memory"
    big = dataclasses.replace(info, num_train=200_000)  # 200k * 3*16*16 bytes = 147 MiB
    assert resolve_loader_kind(cfg.model_copy(update={"memory_budget_mb": 100}), big) == "streaming"
    assert resolve_loader_kind(cfg.model_copy(update={"memory_budget_mb": 200}), big) == "memory"
    assert resolve_loader_kind(cfg.model_copy(update={"loader": "streaming"}), info) == "streaming"
    check_num_classes(info, 10)
    with pytest.raises(ConfigError, match="model.num_classes=7"):
        check_num_classes(info, 7)
