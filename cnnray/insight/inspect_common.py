"""What the inspect figures share: display images, module lookups, one class's label."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


def display_image(x: Tensor) -> Any:
    """A uint8 (C, H, W) image as a numpy array imshow draws: (H, W) for one channel, (H, W, C) for three."""
    img = x.detach().cpu()
    return img[0].numpy() if img.shape[0] == 1 else img[:3].permute(1, 2, 0).numpy()


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    """(name, module) of the first Conv2d in definition order: the stem that sees pixels."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module
    raise ValueError("the model has no Conv2d layer")


def capture_outputs(model: nn.Module, names: list[str], x: Tensor) -> tuple[dict[str, Tensor], Tensor]:
    """({name: output of that module}, logits) for one forward pass of `x`, through forward hooks."""
    modules = dict(model.named_modules())
    outputs: dict[str, Tensor] = {}
    handles = [modules[n].register_forward_hook(lambda _m, _i, out, n=n: outputs.__setitem__(n, out.detach()))
               for n in names]
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        for h in handles:
            h.remove()
    return outputs, logits


def last_spatial_child(model: nn.Module, x: Tensor) -> str:
    """The last top-level child whose output is 4-D (N, C, H, W): the last conv stage before pooling."""
    names = [n for n, _ in model.named_children()]
    outputs, _ = capture_outputs(model, names, x[:1])
    spatial = [n for n in names if n in outputs and isinstance(outputs[n], Tensor) and outputs[n].dim() == 4]
    if not spatial:
        raise ValueError("no module of the model returns a 4-D feature map")
    # Global pooling also returns (N, C, 1, 1): a map with one position says nothing about where.
    wide = [n for n in spatial if outputs[n].shape[-2] * outputs[n].shape[-1] > 1]
    return (wide or spatial)[-1]


def class_label(names: tuple[str, ...] | list[str], index: int) -> str:
    """The class name for `index`, or the index when the card has no names."""
    return str(names[index]) if 0 <= index < len(names) else str(index)
