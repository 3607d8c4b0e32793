"""scikit-learn's bundled 8x8 digits (1797 images, values 0-16), split with a seeded stratified split."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import torch

from cnnray.config.data import DataSection
from cnnray.data.info import DatasetInfo, SplitArrays
from cnnray.data.sources.common import finish, info_from_arrays
from cnnray.data.split import stratified_split

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


def load(cfg: DataSection) -> SplitArrays:
    """Train/val arrays at data.image_size (1 channel unless data.channels=3)."""
    x, y = native()
    tr, va = stratified_split(y, cfg.val_fraction, cfg.split_seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    return finish(cfg, xt[tr], yt[tr], xt[va], yt[va], CLASS_NAMES, native_channels=1)


def describe(cfg: DataSection) -> DatasetInfo:
    """Loads the (tiny) set to measure its stats; the fingerprint covers the native images and labels."""
    x, y = native()
    fp = hashlib.sha256(b"digits\n" + x.tobytes() + y.tobytes()).hexdigest()
    return info_from_arrays(cfg, load(cfg), fp)
