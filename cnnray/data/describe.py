"""The data set facade: describe (cheap), pick a loader kind, load decoded arrays."""

from __future__ import annotations

import torch

from cnnray.config.data import DataSection
from cnnray.data.info import DatasetInfo
from cnnray.data.sources import get_source

MB = 1 << 20


def describe_dataset(cfg: DataSection) -> DatasetInfo:
    """Validate data.path/source and return counts, classes, stats and fingerprint (DataError on bad input)."""
    return get_source(cfg.source).describe(cfg)


def resolve_loader_kind(cfg: DataSection, info: DatasetInfo) -> str:
    """'memory' or 'streaming'; 'auto' is memory when decoded uint8 train+val fit data.memory_budget_mb."""
    if cfg.loader != "auto":
        return cfg.loader
    per_image = info.channels * info.image_size * info.image_size
    return "memory" if (info.num_train + info.num_val) * per_image <= cfg.memory_budget_mb * MB else "streaming"


def load_arrays(cfg: DataSection) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train_x, train_y, val_x, val_y): uint8 [N,C,S,S] at data.image_size/channels, int64 labels."""
    a = get_source(cfg.source).load(cfg)
    return a.train_x, a.train_y, a.val_x, a.val_y
