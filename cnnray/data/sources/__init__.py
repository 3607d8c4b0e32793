"""Data sources: each module offers `describe(cfg) -> DatasetInfo` (cheap) and `load(cfg) -> SplitArrays`."""

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
