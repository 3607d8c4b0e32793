"""What every source shares: path checks, label checks, final resize/convert, info from arrays."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from cnnray.config.data import DataSection
from cnnray.data.convert import channel_stats, resize_uint8, to_channels
from cnnray.data.info import DatasetInfo, SplitArrays, TestArrays
from cnnray.errors import ConfigError, DataError


def require_path(cfg: DataSection) -> str:
    """data.path, which this source needs."""
    if not cfg.path:
        raise ConfigError(f"data.path is required for data.source={cfg.source}: set data.path=<directory or URI>")
    return cfg.path


def check_labels(labels: np.ndarray | torch.Tensor, num_classes: int, where: str) -> None:
    """Refuse labels outside [0, num_classes)."""
    y = torch.as_tensor(labels)
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        bad = y[(y < 0) | (y >= num_classes)][:5].tolist()
        raise DataError(f"{where}: labels must lie in [0, {num_classes}); found {bad}")


def content_fingerprint(tag: str, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> str:
    """sha256 over a tag, images and labels (native bytes): a split's content fingerprint; "" when empty."""
    xs, ys = (np.ascontiguousarray(torch.as_tensor(v).numpy()) for v in (x, y))
    if ys.size == 0:
        return ""
    return hashlib.sha256(tag.encode() + b"\n" + xs.tobytes() + ys.astype(np.int64).tobytes()).hexdigest()


def fix_images(cfg: DataSection, x: torch.Tensor, native_channels: int) -> torch.Tensor:
    """Resize to data.image_size and convert to data.channels (default: the source's own)."""
    return to_channels(resize_uint8(x, cfg.image_size), cfg.channels or native_channels).contiguous()


def held_out_arrays(cfg: DataSection, x: torch.Tensor, y: torch.Tensor, class_names: tuple[str, ...],
                    fingerprint: str, native_channels: int) -> TestArrays | None:
    """The test split at data.image_size/channels; None when it is empty."""
    if y.numel() == 0 or not fingerprint:
        return None
    return TestArrays(fix_images(cfg, x, native_channels), y.to(torch.int64), tuple(class_names), fingerprint)


def finish(cfg: DataSection, train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor,
           val_y: torch.Tensor, class_names: tuple[str, ...], native_channels: int) -> SplitArrays:
    """Resize to data.image_size and convert to data.channels (default: the source's own)."""
    return SplitArrays(fix_images(cfg, train_x, native_channels), train_y.to(torch.int64),
                       fix_images(cfg, val_x, native_channels), val_y.to(torch.int64), class_names)


def info_from_arrays(cfg: DataSection, arrays: SplitArrays, fingerprint: str,
                     stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None, *, num_test: int = 0,
                     test_fingerprint: str = "") -> DatasetInfo:
    """DatasetInfo of loaded arrays; mean/std measured on the train split unless given."""
    n, c, h, w = arrays.train_x.shape
    mean, std = stats or channel_stats(arrays.train_x)
    return DatasetInfo(source=cfg.source, num_classes=len(arrays.class_names), class_names=tuple(arrays.class_names),
                       channels=c, image_size=cfg.image_size, num_train=n, num_val=int(arrays.val_x.shape[0]),
                       fingerprint=fingerprint, mean=tuple(mean), std=tuple(std), nbytes_train=n * c * h * w,
                       num_test=num_test if test_fingerprint else 0, test_fingerprint=test_fingerprint)
