"""Parameter count and FLOPs of every registered model, measured on the meta device (no compute)."""

from __future__ import annotations

from typing import Any

import torch

from cnnray.models.complexity import count_flops, count_params
from cnnray.models.registry import create_model, list_models


def model_cost(name: str, input_size: int, in_chans: int = 3, **options: Any) -> dict[str, Any]:
    """{"name", "params", "flops"} of `create_model(name, in_chans=..., **options)` at `input_size`."""
    with torch.device("meta"):  # shapes only: resnet101 at 224 costs nothing
        model = create_model(name, in_chans=in_chans, **options)
    return {"name": name, "params": count_params(model), "flops": count_flops(model, input_size, in_chans)}


def summarize_models(input_size: int, in_chans: int = 3, **options: Any) -> list[dict[str, Any]]:
    """`model_cost` of every registered model, in name order."""
    return [model_cost(name, input_size, in_chans, **options) for name in list_models()]
