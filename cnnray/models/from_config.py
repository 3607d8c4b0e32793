"""Build the configured model for a data set (shared by workers, the driver and registration)."""

from __future__ import annotations

from typing import Any

from torch import nn

from cnnray.config import Config
from cnnray.models import create_model


def model_kwargs(cfg: Config, num_classes: int, in_chans: int) -> dict[str, Any]:
    """The `create_model` keyword arguments from the model section (None means the model's default)."""
    # init_from/init_strict say where the first weights come from, not how the model is shaped.
    kw = cfg.model.model_dump(exclude={"name", "init_from", "init_strict"})
    kw["num_classes"] = kw["num_classes"] or num_classes
    kw["in_chans"] = kw["in_chans"] or in_chans
    return kw


def build_model(cfg: Config, num_classes: int, in_chans: int) -> nn.Module:
    """The configured model sized for the data."""
    return create_model(cfg.model.name, **model_kwargs(cfg, num_classes, in_chans))
