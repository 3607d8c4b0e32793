"""Weight initialization for the ResNet family (as torchvision: He-normal convs, unit norms, small classifier).

Only modules the model builds from torch itself are touched (its convs, torch norm layers, the
classifier); layers from `cnnray.layers` (attention, learnable pooling, FReLU, custom norms) keep the
initialization they define, since some of it is deliberate (e.g. a learnable pool that starts as an average).
"""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn

_TORCH_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def _own_modules(module: nn.Module) -> Iterator[nn.Module]:
    for child in module.children():
        if type(child).__module__.startswith("cnnray.layers"):
            continue  # the layer owns its initialization
        yield child
        yield from _own_modules(child)


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal (fan_out, relu) convs with zero bias; norm weight 1, bias 0."""
    for m in _own_modules(model):
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, _TORCH_NORMS) and getattr(m, "weight", None) is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def init_classifier(fc: nn.Linear) -> None:
    """Classifier weight ~ N(0, 0.01), bias 0: near-uniform initial predictions."""
    nn.init.normal_(fc.weight, 0.0, 0.01)
    nn.init.zeros_(fc.bias)


def zero_init_last_norms(model: nn.Module) -> None:
    """Zero the last norm weight of every residual branch, so each block starts as act(shortcut)."""
    for m in model.modules():
        zero_last = getattr(m, "zero_init_last", None)
        if callable(zero_last):
            zero_last()
