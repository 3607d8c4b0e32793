"""Write small sample data sets for tests, benchmarks and demos: image folders (the synthetic images as PNG files)
and CIFAR batches in the real python-pickle format."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from cnnray.data.sources.synthetic import generate


def write_image_folder(root: str | Path, num_classes: int = 3, per_class: int = 10, size: int = 16,
                       channels: int = 3, val_per_class: int = 0, seed: int = 0, fmt: str = "png",
                       test_per_class: int = 0) -> Path:
    """root/train/class_k/NNNNN.png (and root/val/..., root/test/... when val_per_class, test_per_class > 0)."""
    root = Path(root)
    n = per_class + val_per_class + test_per_class
    x, y = generate(num_classes, n, size, channels, seed)
    arr = x.permute(0, 2, 3, 1).numpy()
    for i in range(len(y)):
        k = int(y[i])
        j = i - k * n
        split = "train" if j < per_class else "val" if j < per_class + val_per_class else "test"
        d = root / split / f"class_{k}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr[i, :, :, 0] if channels == 1 else arr[i]).save(d / f"{j:05d}.{fmt}")
    return root


def write_fake_cifar(parent: Path, kind: str, n_train: int = 6, n_test: int = 4) -> Path:
    """Tiny random batches in the real format under parent (protocol-2 pickles of dicts with bytes keys and uint8
    (N, 3072) data): n_train images per train batch, n_test in the test batch; returns the batch folder."""
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
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 lkey: [int(v) for v in rng.integers(0, k, n)], b"batch_label": name.encode()}
        (d / name).write_bytes(pickle.dumps(batch, protocol=2))
    (d / meta).write_bytes(pickle.dumps({nkey: [f"c{i}".encode() for i in range(k)]}, protocol=2))
    return d
