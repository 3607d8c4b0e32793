"""Write small sample image folders (the synthetic images as PNG files) for tests, benchmarks and demos."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from cnnray.data.sources.synthetic import generate


def write_image_folder(root: str | Path, num_classes: int = 3, per_class: int = 10, size: int = 16,
                       channels: int = 3, val_per_class: int = 0, seed: int = 0, fmt: str = "png") -> Path:
    """root/train/class_k/NNNNN.png (and root/val/... when val_per_class > 0); returns root."""
    root = Path(root)
    x, y = generate(num_classes, per_class + val_per_class, size, channels, seed)
    arr = x.permute(0, 2, 3, 1).numpy()
    for i in range(len(y)):
        k = int(y[i])
        j = i - k * (per_class + val_per_class)
        split = "train" if j < per_class else "val"
        d = root / split / f"class_{k}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr[i, :, :, 0] if channels == 1 else arr[i]).save(d / f"{j:05d}.{fmt}")
    return root
