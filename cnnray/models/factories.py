"""Turn a layer name or class into a factory `channels -> nn.Module`, so blocks accept either."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Union

from torch import nn

from cnnray.layers import get_act, get_attn, get_norm, get_pool

# A layer given by registry name, or by a class / callable (see each factory for its call signature).
LayerSpec = Union[str, Callable[..., nn.Module], None]
LayerFactory = Callable[[int], nn.Module]


def _named(arg: str, getter: Callable[..., nn.Module], name: str, **kwargs: Any) -> LayerFactory:
    def make(channels: int) -> nn.Module:
        try:
            return getter(name, channels, **kwargs)
        except ValueError as e:  # name the model option the bad value came from
            raise ValueError(f"{arg}: {e}") from None

    return make


def _check(arg: str, spec: LayerSpec) -> None:
    if not (isinstance(spec, str) or callable(spec)):
        raise ValueError(f"{arg}: expected a layer name or a class/callable, got {spec!r}")


def norm_factory(norm: LayerSpec) -> LayerFactory:
    """Norm layers: a `get_norm` name, or a class/callable taking the channel count."""
    _check("norm", norm)
    return _named("norm", get_norm, norm) if isinstance(norm, str) else norm  # type: ignore[return-value]


def act_factory(act: LayerSpec) -> LayerFactory:
    """Activations: a `get_act` name (in place where possible), or a class/callable taking no arguments."""
    _check("act", act)
    if isinstance(act, str):
        return _named("act", get_act, act, inplace=True)
    return lambda channels: act()  # type: ignore[misc,operator]


def attn_factory(attn: LayerSpec) -> LayerFactory:
    """Attention on a residual branch: a `get_attn` name, None / 'none' for identity, or a class taking channels."""
    if attn is None:
        return lambda channels: nn.Identity()
    _check("attn", attn)
    return _named("attn", get_attn, attn) if isinstance(attn, str) else attn  # type: ignore[return-value]


def pool_factory(pool: LayerSpec) -> LayerFactory | None:
    """Stride-2 downsampling: a `get_pool` name, a class taking channels, or None for a strided conv."""
    if pool is None:
        return None
    _check("pool", pool)
    return _named("pool", get_pool, pool) if isinstance(pool, str) else pool  # type: ignore[return-value]
