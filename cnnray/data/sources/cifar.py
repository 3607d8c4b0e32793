"""CIFAR-10/100 from the standard python-pickle batches on local disk.

The official test batch is the held-out test split (data.test_fraction is ignored: CIFAR has its own), and val
is a seeded, stratified data.val_fraction of the train batches (before test splits existed, val was the test
batch)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnray.config.data import DataSection
from cnnray.data.convert import convert_stats
from cnnray.data.info import DatasetInfo, SplitArrays, TestArrays
from cnnray.data.safe_pickle import safe_loads
from cnnray.data.sources.common import check_labels, finish, held_out_arrays, require_path
from cnnray.data.split import stratified_split3
from cnnray.errors import DataError


@dataclass(frozen=True)
class Layout:
    """Where one CIFAR variant keeps its batches and which keys hold labels and names."""

    folder: str
    train: tuple[str, ...]
    test: str
    meta: str
    label_key: str
    names_key: str
    mean: tuple[float, float, float]  # the published train-split statistics
    std: tuple[float, float, float]


LAYOUTS = {
    "cifar10": Layout("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch",
                      "batches.meta", "labels", "label_names",
                      (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": Layout("cifar-100-python", ("train",), "test", "meta", "fine_labels", "fine_label_names",
                       (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def find_dir(cfg: DataSection) -> tuple[Path, Layout]:
    """The extracted folder: data.path itself or data.path/<standard folder name>."""
    layout = LAYOUTS[cfg.source]
    root = Path(require_path(cfg)).expanduser()
    names = (*layout.train, layout.test, layout.meta)
    candidates = [root / layout.folder, root]
    for d in candidates:
        if all((d / n).is_file() for n in names):
            return d, layout
    if not root.exists():
        raise DataError(f"data.path {root} does not exist (data.source={cfg.source} expects the extracted "
                        f"'{layout.folder}' folder or its parent; nothing is downloaded)")
    missing = [n for n in names if not (candidates[0] / n).is_file() and not (root / n).is_file()]
    raise DataError(f"data.source={cfg.source}: looked in {candidates[0]} and {root} for the python batches "
                    f"{', '.join(names)}; missing: {', '.join(missing)} (download and extract the python "
                    "version of the data set there; nothing is downloaded)")


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _read(path: Path) -> tuple[dict[str, Any], bytes]:
    raw = path.read_bytes()
    obj = safe_loads(raw, str(path))
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict, found {type(obj).__name__}")
    return {_text(k): v for k, v in obj.items()}, raw


def _batch(path: Path, layout: Layout, hasher: Any) -> tuple[np.ndarray, np.ndarray]:
    d, raw = _read(path)
    hasher.update(raw)
    if "data" not in d or layout.label_key not in d:
        raise DataError(f"{path}: missing key 'data' or '{layout.label_key}' (found {', '.join(d)})")
    data = np.asarray(d["data"])
    labels = np.asarray(d[layout.label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DataError(f"{path}: expected uint8 data of shape (N, 3072) and N labels, found "
                        f"{data.dtype} {data.shape} and {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), labels


Arrays = tuple[np.ndarray, np.ndarray]


def _names(d: Path, layout: Layout, hasher: Any) -> tuple[str, ...]:
    meta, raw = _read(d / layout.meta)
    hasher.update(raw)
    if layout.names_key not in meta:
        raise DataError(f"{d / layout.meta}: missing key '{layout.names_key}'")
    return tuple(_text(n) for n in meta[layout.names_key])


def _train(d: Path, layout: Layout, k: int, hasher: Any) -> Arrays:
    parts = [_batch(d / n, layout, hasher) for n in layout.train]
    x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    check_labels(y, k, f"{d} (train batches)")
    return x, y


def _test(d: Path, layout: Layout, k: int, hasher: Any) -> tuple[Arrays, str]:
    """The test batch and the sha256 of its file's bytes (what `sha256sum` prints)."""
    test_hasher = hashlib.sha256()
    x, y = _batch(d / layout.test, layout, _Both(hasher, test_hasher))
    check_labels(y, k, f"{d / layout.test}")
    return (x, y), test_hasher.hexdigest()


class _Both:
    """Feeds one read of a file to two hashers (the whole set's fingerprint and the test split's)."""

    def __init__(self, *hashers: Any) -> None:
        self.hashers = hashers

    def update(self, data: bytes) -> None:
        for h in self.hashers:
            h.update(data)


def _train_val(cfg: DataSection, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    # val comes off the train batches; test_fraction=0 because the test batch is the test split
    tr, va, _ = stratified_split3(labels, cfg.val_fraction, 0.0, cfg.split_seed)
    return torch.from_numpy(tr), torch.from_numpy(va)


def load(cfg: DataSection) -> SplitArrays:
    """Train and val (both from the train batches) at data.image_size and data.channels; never the test batch."""
    d, layout = find_dir(cfg)
    h = hashlib.sha256()
    names = _names(d, layout, h)
    x, y = (torch.from_numpy(v) for v in _train(d, layout, len(names), h))
    tr, va = _train_val(cfg, y.numpy())
    return finish(cfg, x[tr], y[tr], x[va], y[va], names, native_channels=3)


def load_test(cfg: DataSection) -> TestArrays | None:
    """The official test batch (data.test_fraction is ignored); called only by cnnray.data.test_split."""
    d, layout = find_dir(cfg)
    h = hashlib.sha256()
    names = _names(d, layout, h)
    (x, y), fp = _test(d, layout, len(names), h)
    return held_out_arrays(cfg, torch.from_numpy(x), torch.from_numpy(y), names, fp, native_channels=3)


def describe(cfg: DataSection) -> DatasetInfo:
    """Reads every batch (to count, check and fingerprint them); mean/std are the published constants."""
    d, layout = find_dir(cfg)
    h = hashlib.sha256(cfg.source.encode())  # the whole set: meta, train batches, test batch, in that order
    names = _names(d, layout, h)
    _, ty = _train(d, layout, len(names), h)
    (_, test_y), test_fp = _test(d, layout, len(names), h)
    c = cfg.channels or 3
    s = cfg.image_size
    stats = convert_stats(layout.mean, layout.std, c)
    tr, va = _train_val(cfg, ty)
    n, n_test = len(tr), len(test_y)
    return DatasetInfo(source=cfg.source, num_classes=len(names), class_names=names, channels=c,
                       image_size=s, num_train=n, num_val=len(va), fingerprint=h.hexdigest(),
                       mean=stats[0], std=stats[1], nbytes_train=n * c * s * s, num_test=n_test,
                       test_fingerprint=test_fp if n_test else "")
