"""Every data source loads with the right shapes and labels; bad input raises DataError naming the problem."""

from __future__ import annotations

import dataclasses
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from cnnray.config.data import DataSection
from cnnray.data import check_num_classes, describe_dataset, load_arrays, resolve_loader_kind
from cnnray.data.fake import write_fake_cifar, write_image_folder
from cnnray.data.safe_pickle import safe_loads
from cnnray.data.test_split import load_test_split
from cnnray.errors import ConfigError, DataError


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
    if info.num_test:  # the held-out split: same classes, shape and size; its fingerprint is the one describe gives
        t = load_test_split(cfg)
        assert t.x.dtype == torch.uint8 and t.y.dtype == torch.int64 and t.x.shape[1:] == (channels, s, s)
        assert len(t.x) == len(t.y) == info.num_test and t.fingerprint == info.test_fingerprint
        assert t.class_names == info.class_names and len(info.test_fingerprint) == 64
    else:
        assert info.test_fingerprint == ""


def test_digits_shapes_split_and_channels():
    _check(DataSection(source="digits", image_size=16), 10, 1)
    _check(DataSection(source="digits", image_size=8, channels=3), 10, 3)
    seed1 = DataSection(source="digits", split_seed=1)
    a, b = load_arrays(seed1), load_arrays(seed1)
    assert torch.equal(a[1], b[1]) and torch.equal(a[0], b[0])
    c = load_arrays(DataSection(source="digits", split_seed=2))
    assert not torch.equal(a[1], c[1])
    t = load_test_split(seed1)
    # val 0.2 and test 0.15 of each class (of the whole set), rounded per class: 1169 + 359 + 269 = 1797
    assert (len(a[0]), len(a[2]), len(t.y)) == (1169, 359, 269)
    info = describe_dataset(DataSection(source="digits"))
    assert (info.num_train, info.num_val, info.num_test) == (1169, 359, 269)


def test_synthetic_deterministic_and_classes():
    cfg = DataSection(source="synthetic", num_classes=4, samples_per_class=10, image_size=12)
    _check(cfg, 4, 3)
    assert describe_dataset(cfg).fingerprint == describe_dataset(cfg).fingerprint
    assert describe_dataset(cfg).fingerprint != describe_dataset(cfg.model_copy(update={"split_seed": 1})).fingerprint
    _check(cfg.model_copy(update={"channels": 1}), 4, 1)


@pytest.mark.parametrize("kind,k", [("cifar10", 10), ("cifar100", 100)])
def test_fake_cifar_in_real_pickle_format(tmp_path, kind, k):
    n_train = 6 if kind == "cifar10" else 300  # cifar100: enough per class that val is not empty
    write_fake_cifar(tmp_path, kind, n_train=n_train)
    for path in (tmp_path, tmp_path / ("cifar-10-batches-py" if kind == "cifar10" else "cifar-100-python")):
        cfg = DataSection(source=kind, path=str(path), image_size=32)
        _check(cfg, k, 3)
    tx, _, vx, _ = load_arrays(cfg)
    # val comes off the train batches; the official test batch is the test split (data.test_fraction ignored)
    assert len(tx) + len(vx) == (30 if kind == "cifar10" else 300) and len(vx) > 0
    assert describe_dataset(cfg).num_test == 4 == len(load_test_split(cfg.model_copy(update={"test_fraction": 0})).y)
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
