"""Model registry: `register_model`, `create_model(name, **kwargs)`, `list_models()`."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from cnnray.name_registry import Registry

ModelFactory = Callable[..., nn.Module]

MODELS: Registry[ModelFactory] = Registry("model")


def register_model(name: str, factory: ModelFactory | None = None) -> Any:
    """Register `factory` as `name` (or decorate a factory); duplicate names raise ValueError."""
    return MODELS.register(name, factory)


def list_models() -> list[str]:
    """Names of the registered models, sorted."""
    return MODELS.names()


def model_options(name: str) -> dict[str, Any] | None:
    """Keyword options of model `name` with their defaults; None when the factory takes **kwargs."""
    params = inspect.signature(MODELS.get(name)).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name: p.default for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build model `name`; None values mean "the model's default", unknown options raise ValueError."""
    factory = MODELS.get(name)
    # Config sections use None for "not set", so a None must not override the model's own default.
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    options = model_options(name)
    unknown = sorted(set(kwargs) - set(options)) if options is not None else []
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for model '{name}'; "
                         f"valid options: {', '.join(options)}")
    return factory(**kwargs)
