"""Data sources: each module offers `describe(cfg) -> DatasetInfo` (cheap), `load(cfg) -> SplitArrays` (train and
val: what training reads) and `load_test(cfg) -> TestArrays | None` (the held-out test split, None when there is
none), which only `cnnray.data.test_split.load_test_split` calls."""

from __future__ import annotations

import importlib
from types import ModuleType

from cnnray.errors import ConfigError

SOURCES: dict[str, str] = {
    "digits": "cnnray.data.sources.digits",
    "synthetic": "cnnray.data.sources.synthetic",
    "cifar10": "cnnray.data.sources.cifar",
    "cifar100": "cnnray.data.sources.cifar",
    "imagefolder": "cnnray.data.sources.imagefolder",
    "parquet": "cnnray.data.sources.parquet",
}


def get_source(name: str) -> ModuleType:
    """The module implementing data.source `name`."""
    if name not in SOURCES:
        raise ConfigError(f"unknown data.source '{name}'; valid sources: {', '.join(SOURCES)}")
    return importlib.import_module(SOURCES[name])
