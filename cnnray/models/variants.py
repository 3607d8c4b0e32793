"""The named ResNet configurations in the model registry (depths from He et al. 2016)."""

from __future__ import annotations

from functools import partial
from typing import Any

from cnnray.models.blocks import BasicBlock, Bottleneck
from cnnray.models.registry import register_model
from cnnray.models.resnet import ResNet

# name -> (block, blocks per stage, option defaults). A partial keeps ResNet's signature, so
# create_model can check option names, and it stays picklable.
VARIANTS: dict[str, tuple[type, tuple[int, int, int, int], dict[str, Any]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2), {}),
    "resnet34": (BasicBlock, (3, 4, 6, 3), {}),
    "resnet50": (Bottleneck, (3, 4, 6, 3), {}),
    "resnet101": (Bottleneck, (3, 4, 23, 3), {}),
    "cbam_resnet18": (BasicBlock, (2, 2, 2, 2), {"attn": "cbam"}),  # Woo et al. 2018
    "cbam_resnet34": (BasicBlock, (3, 4, 6, 3), {"attn": "cbam"}),
    "cbam_resnet50": (Bottleneck, (3, 4, 6, 3), {"attn": "cbam"}),
    "se_resnet18": (BasicBlock, (2, 2, 2, 2), {"attn": "se"}),  # Hu et al. 2018
    "se_resnet50": (Bottleneck, (3, 4, 6, 3), {"attn": "se"}),
}

for _name, (_block, _layers, _defaults) in VARIANTS.items():
    register_model(_name, partial(ResNet, _block, _layers, **_defaults))
