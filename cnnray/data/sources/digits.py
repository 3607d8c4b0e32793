"""scikit-learn's bundled 8x8 digits (1797 images, values 0-16), split train/val/test with a seeded stratified split."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import torch

from cnnray.config.data import DataSection
from cnnray.data.info import DatasetInfo, SplitArrays, TestArrays
from cnnray.data.sources.common import content_fingerprint, finish, held_out_arrays, info_from_arrays
from cnnray.data.split import stratified_split3

CLASS_NAMES = tuple(str(i) for i in range(10))


def _bundled_csv() -> Path | None:
    """scikit-learn's own copy of the set (`sklearn/datasets/data/digits.csv.gz`), found without importing
    scikit-learn: its import costs ~2 s (SciPy), reading the file 20 ms."""
    spec = importlib.util.find_spec("sklearn")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            return path
    return None


def native() -> tuple[np.ndarray, np.ndarray]:
    """All digits as uint8 [N,1,8,8] scaled to 0-255, and int64 labels."""
    path = _bundled_csv()
    if path is not None:
        with gzip.open(path, "rt") as f:
            data = np.loadtxt(f, delimiter=",")  # 64 pixels then the label, as load_digits reads it
        images, target = data[:, :-1].reshape(-1, 8, 8), data[:, -1]
    else:
        from sklearn.datasets import load_digits  # bundled with scikit-learn: nothing is downloaded

        d = load_digits()
        images, target = d.images, d.target
    x = np.rint(images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[:, None]
    return x, target.astype(np.int64)


def _split(cfg: DataSection, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return stratified_split3(y, cfg.val_fraction, cfg.test_fraction, cfg.split_seed)


def load(cfg: DataSection) -> SplitArrays:
    """Train/val arrays at data.image_size (1 channel unless data.channels=3); the test split is never here."""
    x, y = native()
    tr, va, _ = _split(cfg, y)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    return finish(cfg, xt[tr], yt[tr], xt[va], yt[va], CLASS_NAMES, native_channels=1)


def load_test(cfg: DataSection) -> TestArrays | None:
    """The held-out split (data.test_fraction of each class); read only through cnnray.data.test_split."""
    x, y = native()
    te = _split(cfg, y)[2]
    fp = content_fingerprint("digits-test", x[te], y[te])
    xt, yt = torch.from_numpy(x[te]), torch.from_numpy(y[te])
    return held_out_arrays(cfg, xt, yt, CLASS_NAMES, fp, native_channels=1)


def describe(cfg: DataSection) -> DatasetInfo:
    """Loads the (tiny) set to measure its stats; the fingerprint covers the native images and labels."""
    x, y = native()
    fp = hashlib.sha256(b"digits\n" + x.tobytes() + y.tobytes()).hexdigest()
    te = _split(cfg, y)[2]
    return info_from_arrays(cfg, load(cfg), fp, num_test=len(te),
                            test_fingerprint=content_fingerprint("digits-test", x[te], y[te]))
