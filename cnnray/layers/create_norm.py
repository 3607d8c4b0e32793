"""Normalisation layers by name; every one has a per-channel `weight` (for zero-init of residual branches).

- 'batch': BatchNorm2d (Ioffe & Szegedy 2015, https://arxiv.org/abs/1502.03167).
- 'group': GroupNorm (https://arxiv.org/abs/1803.08494) with num_groups = the largest divisor of channels that
  is <= 32 (override with num_groups=...); 32 groups as in Wu & He 2018 whenever channels allow it.
- 'layer': GroupNorm(1, C), i.e. LayerNorm (Ba et al. 2016, https://arxiv.org/abs/1607.06450) over (C, H, W)
  of each sample, with per-channel affine.
- 'layer_channels': LayerNorm2d, over C only at each position (ConvNeXt style).
- 'instance': InstanceNorm2d(affine=True) (Ulyanov et al. 2016, https://arxiv.org/abs/1607.08022).
- 'switchable': SwitchableNorm2d (Luo et al. 2019, https://arxiv.org/abs/1806.10779).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ..name_registry import Registry
from ._checks import check_positive_int
from .layer_norm import LayerNorm2d
from .switchable_norm import SwitchableNorm2d

NormFactory = Callable[..., nn.Module]
NORMS: Registry[NormFactory] = Registry("normalization layer")


def group_norm_groups(channels: int, max_groups: int = 32) -> int:
    """The largest divisor of `channels` that is <= `max_groups`."""
    channels = check_positive_int("channels", channels)
    return next(g for g in range(min(max_groups, channels), 0, -1) if channels % g == 0)


@NORMS.register("batch")
def _batch(channels: int, **kwargs: Any) -> nn.Module:
    return nn.BatchNorm2d(channels, **kwargs)


@NORMS.register("group")
def _group(channels: int, num_groups: int | None = None, **kwargs: Any) -> nn.Module:
    groups = group_norm_groups(channels) if num_groups is None else check_positive_int("num_groups", num_groups)
    if channels % groups:
        raise ValueError(f"num_groups must divide channels={channels}, got {groups}")
    return nn.GroupNorm(groups, channels, **kwargs)


@NORMS.register("layer")
def _layer(channels: int, **kwargs: Any) -> nn.Module:
    return nn.GroupNorm(1, channels, **kwargs)


@NORMS.register("layer_channels")
def _layer_channels(channels: int, **kwargs: Any) -> nn.Module:
    return LayerNorm2d(channels, **kwargs)


@NORMS.register("instance")
def _instance(channels: int, **kwargs: Any) -> nn.Module:
    kwargs.setdefault("affine", True)
    return nn.InstanceNorm2d(channels, **kwargs)


NORMS.register("switchable", SwitchableNorm2d)


def get_norm(name: str, channels: int, **kwargs: Any) -> nn.Module:
    """A normalisation layer by name over `channels`; extra kwargs go to its constructor."""
    factory = NORMS.get(name)
    return factory(check_positive_int("channels", channels), **kwargs)
