"""Attention modules by name: 'none' (also None), 'se', 'cbam', 'channel', 'spatial'."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ..name_registry import Registry
from ._checks import check_positive_int
from .cbam import CBAM, ChannelAttention, SpatialAttention
from .squeeze_excite import SqueezeExcite

AttnFactory = Callable[..., nn.Module]
ATTENTIONS: Registry[AttnFactory] = Registry("attention")


@ATTENTIONS.register("none")
def _none(channels: int, **kwargs: Any) -> nn.Module:
    return nn.Identity()


@ATTENTIONS.register("spatial")
def _spatial(channels: int, **kwargs: Any) -> nn.Module:
    # Spatial attention pools channels away, so it has no use for their number.
    return SpatialAttention(**kwargs)


ATTENTIONS.register("se", SqueezeExcite)
ATTENTIONS.register("cbam", CBAM)
ATTENTIONS.register("channel", ChannelAttention)


def get_attn(name: str | None, channels: int, **kwargs: Any) -> nn.Module:
    """An attention module by name (None means 'none'); kwargs go to its constructor."""
    factory = ATTENTIONS.get("none" if name is None else name)
    return factory(check_positive_int("channels", channels), **kwargs)
