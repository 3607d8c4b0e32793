"""Activations by name: 'relu', 'leaky_relu', 'elu', 'silu', 'swish', 'mish', 'gelu', 'frelu', 'prelu'."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..name_registry import Registry
from ._checks import check_positive_int
from .activations import GELU, AdaptivePReLU, Mish, Swish
from .frelu import FReLU

ActFactory = Callable[[int | None, bool], nn.Module]
ACTIVATIONS: Registry[ActFactory] = Registry("activation")


def _needs_channels(name: str, channels: int | None) -> int:
    if channels is None:
        raise ValueError(f"activation '{name}' has per-channel parameters: pass channels (a positive integer)")
    return check_positive_int("channels", channels)


@ACTIVATIONS.register("relu")
def _relu(channels: int | None, inplace: bool) -> nn.Module:
    return nn.ReLU(inplace=inplace)


@ACTIVATIONS.register("leaky_relu")
def _leaky_relu(channels: int | None, inplace: bool) -> nn.Module:
    return nn.LeakyReLU(0.01, inplace=inplace)


@ACTIVATIONS.register("elu")
def _elu(channels: int | None, inplace: bool) -> nn.Module:
    return nn.ELU(inplace=inplace)


@ACTIVATIONS.register("silu")
def _silu(channels: int | None, inplace: bool) -> nn.Module:
    return nn.SiLU(inplace=inplace)


@ACTIVATIONS.register("swish")
def _swish(channels: int | None, inplace: bool) -> nn.Module:
    return Swish()


@ACTIVATIONS.register("mish")
def _mish(channels: int | None, inplace: bool) -> nn.Module:
    return Mish()


@ACTIVATIONS.register("gelu")
def _gelu(channels: int | None, inplace: bool) -> nn.Module:
    return GELU()


@ACTIVATIONS.register("frelu")
def _frelu(channels: int | None, inplace: bool) -> nn.Module:
    return FReLU(_needs_channels("frelu", channels))


@ACTIVATIONS.register("prelu")
def _prelu(channels: int | None, inplace: bool) -> nn.Module:
    return AdaptivePReLU(_needs_channels("prelu", channels))


def get_act(name: str, channels: int | None = None, inplace: bool = False) -> nn.Module:
    """An activation module by name; `channels` is required by 'frelu' and 'prelu'."""
    return ACTIVATIONS.get(name)(channels, inplace)
