"""The training loop and its parts, plain PyTorch: no Ray, no MLflow, no files beyond state dicts.

Names load on first use (PEP 562): `cnnray train` imports `cnnray.run.local_host` to start its rank
processes before torch is imported, and importing this package must not import torch for it.
"""

from __future__ import annotations

import importlib
from typing import Any

from cnnray.errors import NonFiniteLossError

_WHERE = {
    "EarlyStopping": "early_stop", "ModelEma": "ema", "unwrap": "ema", "Engine": "engine", "rng_state": "engine",
    "set_rng_state": "engine", "HEAD_NAMES": "freeze", "backbone_norms": "freeze", "backbone_parameters": "freeze",
    "drop_grads": "freeze", "hold_running_stats": "freeze", "is_head": "freeze", "SoftTargetCrossEntropy": "losses",
    "build_loss": "losses",
    "MetricAccumulator": "metrics", "build_optimizer": "optim", "param_groups": "optim", "Precision": "precision",
    "resolve_precision": "precision", "Schedule": "schedules", "build_scheduler": "schedules",
}
__all__ = sorted([*_WHERE, "NonFiniteLossError"])


def __getattr__(name: str) -> Any:
    if name == "NonFiniteLossError":
        return NonFiniteLossError
    if name in _WHERE:
        return getattr(importlib.import_module(f"cnnray.loop.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'cnnray.loop' has no attribute {name!r}")
