"""Check a search space against the config tree: keys exist, and every edge value type-checks."""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel, ValidationError

from cnnray.config import Config, set_dotted
from cnnray.errors import ConfigError
from cnnray.tune.space import SearchSpace

# Sections a trial may not change: the search's own settings, identity, tracking and resources.
NOT_SEARCHABLE = ("tune", "run", "tracking", "registry", "scaling")
SET_BY_TUNE = {"train.epochs": "tune.max_epochs", "train.resume": "tune.resume",
               "train.checkpoint_every": "the search (every epoch is checkpointed)"}


def _leaf(key: str) -> None:
    """Refuse a key that is not a value of the config tree, listing what is valid at that level."""
    cls: Any = Config
    parts = key.split(".")
    for i, part in enumerate(parts):
        fields = getattr(cls, "model_fields", None)
        if not fields or part not in fields:
            prefix = ".".join(parts[:i])
            valid = ", ".join(fields) if fields else ""
            raise ConfigError(f"unknown config key '{key}'"
                              + (f"; valid keys under '{prefix or '(top)'}': {valid}" if valid else ""))
        cls = fields[part].annotation
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        raise ConfigError(f"'{key}' is a config section, not a value; searched keys must be values "
                          f"(e.g. {key}.{next(iter(cls.model_fields))})")


def _first_error(err: ValidationError) -> str:
    e = err.errors()[0]
    return e["msg"]


def _try(base: dict[str, Any], key: str, value: Any) -> str | None:
    tree = copy.deepcopy(base)
    set_dotted(tree, key, value)
    try:
        Config.model_validate(tree)
    except ValidationError as e:
        return _first_error(e)
    return None


def check_space(space: SearchSpace, base: Config) -> None:
    """ConfigError naming the key for unknown or unsearchable keys and values the config refuses."""
    tree = base.model_dump(mode="json")
    for key in [*space.fixed, *space.params]:
        where = f"search space '{space.name}': {key}"
        try:
            _leaf(key)
        except ConfigError as e:
            raise ConfigError(f"search space '{space.name}': {e}") from None
        if key.split(".")[0] in NOT_SEARCHABLE:
            raise ConfigError(f"{where}: the '{key.split('.')[0]}' section cannot be searched "
                              f"(not searchable: {', '.join(NOT_SEARCHABLE)})")
        if key in SET_BY_TUNE:
            raise ConfigError(f"{where}: set by {SET_BY_TUNE[key]}, not searchable")
    for key, value in space.fixed.items():
        msg = _try(tree, key, value)
        if msg:
            raise ConfigError(f"search space '{space.name}': fixed {key}={value!r} is invalid: {msg}")
    for p in space.params.values():
        # A midpoint too: a uniform range over an int field fails only between its (whole) bounds.
        mid = [] if p.kind in ("choice", "int") else [
            (p.low * p.high) ** 0.5 if p.kind == "loguniform" else (p.low + p.high) / 2]
        for value in [*p.edges(), *mid]:
            msg = _try(tree, p.key, value)
            if msg:
                raise ConfigError(f"search space '{space.name}': {p.key}: value {value!r} is invalid: {msg}")
