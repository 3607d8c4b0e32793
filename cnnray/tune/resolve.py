"""From a trial's sampled values to its training Config: drop inactive conditionals, clamp, validate."""

from __future__ import annotations

import copy
import json
from typing import Any

from pydantic import ValidationError

from cnnray.config import Config, set_dotted
from cnnray.errors import ConfigError
from cnnray.tune.space import Param, SearchSpace

GRID_KEY = "point"  # grid search samples whole points (dicts) under this key, deduplicated


def is_primitive(value: Any) -> bool:
    """Values a search library can hold as a categorical (lists are encoded as JSON strings)."""
    return value is None or isinstance(value, (bool, int, float, str))


def encode_choice(value: Any) -> Any:
    """A choice value as the search library sees it."""
    return value if is_primitive(value) else json.dumps(value)


def decode_choice(param: Param, value: Any) -> Any:
    """Back from `encode_choice`; values that are not choices (e.g. None for inactive) pass through."""
    for v in param.values:
        if not is_primitive(v) and json.dumps(v) == value:
            return v
    return value


def sampled_values(config: dict[str, Any]) -> dict[str, Any]:
    """The sampled key -> value mapping from a Tune trial config (grid points are nested)."""
    point = config.get(GRID_KEY)
    return dict(point) if isinstance(point, dict) else {k: v for k, v in config.items() if k != GRID_KEY}


def active_values(space: SearchSpace, sampled: dict[str, Any]) -> dict[str, Any]:
    """The values a trial really uses: conditionals whose parent does not match are dropped."""
    out: dict[str, Any] = {}
    for key, p in space.params.items():  # parents come first
        if key not in sampled:
            continue
        if any(out.get(parent, _MISSING) not in allowed for parent, allowed in p.when.items()):
            continue
        value = sampled[key]
        out[key] = decode_choice(p, value) if p.kind == "choice" else p.clamp(value)
    return out


_MISSING = object()


def trial_config(base: Config, space: SearchSpace, sampled: dict[str, Any]) -> Config:
    """The base config with the space's fixed values and the trial's active values applied."""
    tree = copy.deepcopy(base.model_dump(mode="json"))
    for key, value in {**space.fixed, **active_values(space, sampled)}.items():
        set_dotted(tree, key, value)
    try:
        return Config.model_validate(tree)
    except ValidationError as e:
        err = e.errors()[0]
        raise ConfigError(f"trial config invalid at {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
