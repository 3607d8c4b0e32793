"""CIFAR-10/100 from the standard python-pickle batches on local disk; the official test set is the val split."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnray.config.data import DataSection
from cnnray.data.convert import convert_stats
from cnnray.data.info import DatasetInfo, SplitArrays
from cnnray.data.safe_pickle import safe_loads
from cnnray.data.sources.common import check_labels, finish, require_path
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


def read(cfg: DataSection) -> tuple[SplitArrays, str]:
    """Native 32x32 RGB arrays of both splits and a sha256 over the batch files' bytes."""
    d, layout = find_dir(cfg)
    hasher = hashlib.sha256(cfg.source.encode())
    meta, raw = _read(d / layout.meta)
    hasher.update(raw)
    if layout.names_key not in meta:
        raise DataError(f"{d / layout.meta}: missing key '{layout.names_key}'")
    names = tuple(_text(n) for n in meta[layout.names_key])
    parts = [_batch(d / n, layout, hasher) for n in layout.train]
    vx, vy = _batch(d / layout.test, layout, hasher)
    tx, ty = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    check_labels(ty, len(names), f"{d} (train batches)")
    check_labels(vy, len(names), f"{d / layout.test}")
    arrays = SplitArrays(torch.from_numpy(tx), torch.from_numpy(ty), torch.from_numpy(vx), torch.from_numpy(vy), names)
    return arrays, hasher.hexdigest()


def load(cfg: DataSection) -> SplitArrays:
    """Train (the five/one train batches) and val (the test batch) at data.image_size and data.channels."""
    a, _ = read(cfg)
    return finish(cfg, a.train_x, a.train_y, a.val_x, a.val_y, a.class_names, native_channels=3)


def describe(cfg: DataSection) -> DatasetInfo:
    """Reads the batches (to count and fingerprint them); mean/std are the published constants."""
    a, fp = read(cfg)
    c = cfg.channels or 3
    s = cfg.image_size
    layout = LAYOUTS[cfg.source]
    stats = convert_stats(layout.mean, layout.std, c)
    n = int(a.train_x.shape[0])
    return DatasetInfo(source=cfg.source, num_classes=len(a.class_names), class_names=a.class_names, channels=c,
                       image_size=s, num_train=n, num_val=int(a.val_x.shape[0]), fingerprint=fp,
                       mean=stats[0], std=stats[1], nbytes_train=n * c * s * s)
