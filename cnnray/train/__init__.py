"""Compatibility: the names `cnnray.train` exported before the loop moved to `cnnray.loop` (and one training
run to `cnnray.run`). Kept so that `from cnnray.train import Engine` still works; new code imports cnnray.loop."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    import cnnray.loop  # lazily, as cnnray.loop itself: importing this package must not import torch

    return getattr(cnnray.loop, name)
