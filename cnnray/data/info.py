"""The data layer's value types: what a data set is (DatasetInfo) and what a source loads (SplitArrays)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from cnnray.errors import ConfigError


@dataclass(frozen=True)
class DatasetInfo:
    """Cheap facts about a configured data set; plain fields so `DatasetInfo(**info.__dict__)` round-trips."""

    source: str
    num_classes: int
    class_names: tuple[str, ...]
    channels: int
    image_size: int  # what every loader yields (data.image_size), not the stored size
    num_train: int
    num_val: int
    fingerprint: str  # sha256 hex of the source's content (for parquet: the manifest's fingerprint)
    mean: tuple[float, ...]  # per channel, 0-1 scale, of the train split (or the source's known constants)
    std: tuple[float, ...]
    nbytes_train: int  # decoded uint8 train split at image_size and channels
    num_test: int = 0  # the held-out test split (defaults: infos serialized before test splits still load)
    test_fingerprint: str = ""  # sha256 hex of the test split's content; "" when there is no test split


class SplitArrays(NamedTuple):
    """Decoded uint8 images [N,C,H,W] and int64 labels of both splits, plus the class names."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    class_names: tuple[str, ...]


@dataclass(frozen=True)
class TestArrays:
    """uint8 test images [N,C,S,S] at data.image_size/channels, int64 labels, class names, the test fingerprint."""

    __test__ = False  # not a pytest test class
    x: torch.Tensor
    y: torch.Tensor
    class_names: tuple[str, ...]
    fingerprint: str


def check_num_classes(info: DatasetInfo, num_classes: int) -> None:
    """Refuse a model.num_classes that disagrees with the data (ConfigError naming the key)."""
    if num_classes != info.num_classes:
        raise ConfigError(
            f"model.num_classes={num_classes} disagrees with the data: source '{info.source}' has "
            f"{info.num_classes} classes; remove model.num_classes or set it to {info.num_classes}")
