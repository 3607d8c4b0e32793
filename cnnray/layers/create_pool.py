"""Downsampling layers by name: 'max', 'avg', 'mixed', 'stochastic', 'learnable', 'attention'.

All use 'same' padding: out = ceil(H / stride) x ceil(W / stride), padding split as in padding.py.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..name_registry import Registry
from ._checks import check_positive_int
from .attention_pool import AttentionPool2d
from .learnable_pool import LearnablePool2d
from .mixed_pool import MixedPool2d
from .pool_same import AvgPool2dSame, MaxPool2dSame
from .stochastic_pool import StochasticPool2d

PoolFactory = Callable[[int, int, int], nn.Module]
POOLS: Registry[PoolFactory] = Registry("pooling layer")


@POOLS.register("max")
def _max(channels: int, kernel_size: int, stride: int) -> nn.Module:
    return MaxPool2dSame(kernel_size, stride)


@POOLS.register("avg")
def _avg(channels: int, kernel_size: int, stride: int) -> nn.Module:
    return AvgPool2dSame(kernel_size, stride)


@POOLS.register("stochastic")
def _stochastic(channels: int, kernel_size: int, stride: int) -> nn.Module:
    return StochasticPool2d(kernel_size, stride)


POOLS.register("mixed", MixedPool2d)
POOLS.register("learnable", LearnablePool2d)
POOLS.register("attention", AttentionPool2d)


def get_pool(name: str, channels: int, kernel_size: int = 2, stride: int = 2) -> nn.Module:
    """A downsampling layer by name; ValueError listing the valid names for an unknown one."""
    factory = POOLS.get(name)
    check_positive_int("channels", channels)
    return factory(channels, kernel_size, stride)
