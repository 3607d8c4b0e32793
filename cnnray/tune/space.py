"""Search spaces: YAML files of dotted config keys -> distributions, parsed and checked for shape.

A space file:

    description: what this space searches
    fixed:                     # set on every trial (optional)
      optim.nesterov: true
    params:
      optim.lr: {type: loguniform, low: 1.0e-4, high: 1.0e-2}
      optim.name: [adamw, sgd]                  # shorthand for {type: choice, values: [...]}
      schedule.warmup_epochs: {type: uniform, low: 0, high: 2, when: {schedule.name: cosine}}

Types: choice (values), uniform / loguniform (low, high), int (low, high, both inclusive).
`when` makes a parameter conditional: it is used only while its parent choice has one of the
given values.

Also here: a trial's sampled values -> its training Config (`trial_config`), and the check of a
space against the config tree (`check_space`). No Ray import, so a bad space is refused (exit 2) in a
fraction of a second.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from cnnray.config import Config, set_dotted
from cnnray.config.loader import configs_dir, resolve_named_file
from cnnray.errors import ConfigError

KINDS = ("choice", "uniform", "loguniform", "int")


@dataclass(frozen=True)
class Param:
    """One searched config key: its distribution and, if conditional, the parent values it needs."""

    key: str
    kind: str
    values: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    when: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def edges(self) -> list[Any]:
        """Every choice, or both bounds: the values to type-check against the config."""
        return list(self.values) if self.kind == "choice" else [self.low, self.high]

    def clamp(self, value: Any) -> Any:
        """Bring a (PBT-perturbed) value back into the declared range."""
        if self.kind == "choice":
            return value
        value = min(max(value, self.low), self.high)
        return int(round(value)) if self.kind == "int" else float(value)


@dataclass(frozen=True)
class SearchSpace:
    """A named, shape-checked search space (parents before their conditional children)."""

    name: str
    params: dict[str, Param]
    fixed: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    source: str = ""


def spaces_dir() -> Path:
    """Where the named spaces live: workflows/configs/spaces (inside the installed package)."""
    return configs_dir() / "spaces"


def space_names() -> list[str]:
    """Names of the built-in spaces."""
    return sorted(p.stem for p in spaces_dir().glob("*.yaml"))


def resolve_space_path(ref: str) -> Path:
    """A space file path from a built-in name or a path to a user file."""
    return resolve_named_file(ref, spaces_dir(), "search space")


def load_space(ref: str) -> SearchSpace:
    """Read and shape-check a space by name or path (type checks against the config come later)."""
    path = resolve_space_path(ref)
    name = path.stem
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"search space {path} is not valid YAML: {e}") from None
    return parse_space(data, name, source=str(path))


def _number(name: str, key: str, what: str, value: Any) -> float:
    # PyYAML reads `1e-4` (no dot) as a string; accept it as the number it looks like.
    try:
        if isinstance(value, bool):
            raise ValueError
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"search space '{name}': {key}: '{what}' must be a number, got {value!r}") from None


def _parse_param(name: str, key: str, spec: Any) -> Param:
    where = f"search space '{name}': {key}"
    if isinstance(spec, list):
        spec = {"type": "choice", "values": spec}
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a list of choices or a mapping with 'type', got {spec!r}")
    unknown = set(spec) - {"type", "values", "low", "high", "when"}
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}; "
                          "allowed: type, values, low, high, when")
    kind = spec.get("type", "choice" if "values" in spec else None)
    if kind not in KINDS:
        raise ConfigError(f"{where}: unknown type {kind!r}; allowed types: {', '.join(KINDS)}")
    when = _parse_when(where, spec.get("when"))
    if kind == "choice":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: a choice needs a non-empty list of values")
        return Param(key, kind, values=tuple(values), when=when)
    if "low" not in spec or "high" not in spec:
        raise ConfigError(f"{where}: type {kind} needs 'low' and 'high'")
    low, high = _number(name, key, "low", spec["low"]), _number(name, key, "high", spec["high"])
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"{where}: loguniform bounds must be > 0, got low={low:g}")
    if low >= high:
        raise ConfigError(f"{where}: low must be < high, got low={low:g} high={high:g}")
    if kind == "int":
        if low != int(low) or high != int(high):
            raise ConfigError(f"{where}: int bounds must be whole numbers, got low={low:g} high={high:g}")
        low, high = int(low), int(high)
    return Param(key, kind, low=low, high=high, when=when)


def _parse_when(where: str, when: Any) -> dict[str, tuple[Any, ...]]:
    if when is None:
        return {}
    if not isinstance(when, dict) or not when:
        raise ConfigError(f"{where}: 'when' must map a parent key to its value(s), e.g. {{schedule.name: cosine}}")
    return {str(k): tuple(v) if isinstance(v, list) else (v,) for k, v in when.items()}


def _check_conditions(name: str, params: dict[str, Param]) -> dict[str, Param]:
    """Refuse conditions on missing or non-choice parents and cycles; order parents before children."""
    for p in params.values():
        for parent, allowed in p.when.items():
            where = f"search space '{name}': {p.key}"
            if parent == p.key:
                raise ConfigError(f"{where}: a parameter cannot be conditional on itself")
            if parent not in params:
                raise ConfigError(f"{where}: conditional on '{parent}', which is not a parameter of this space "
                                  "(add the parent as a choice)")
            parent_p = params[parent]
            if parent_p.kind != "choice":
                raise ConfigError(f"{where}: parent '{parent}' must be a choice, it is {parent_p.kind}")
            missing = [v for v in allowed if v not in parent_p.values]
            if missing:
                raise ConfigError(f"{where}: 'when' value(s) {missing} are not choices of '{parent}' "
                                  f"(choices: {list(parent_p.values)})")
    ordered: dict[str, Param] = {}
    visiting: set[str] = set()

    def visit(key: str) -> None:
        if key in ordered:
            return
        if key in visiting:
            raise ConfigError(f"search space '{name}': conditions form a cycle through '{key}'")
        visiting.add(key)
        for parent in params[key].when:
            visit(parent)
        visiting.discard(key)
        ordered[key] = params[key]

    for key in params:
        visit(key)
    return ordered


def parse_space(data: Any, name: str, source: str = "") -> SearchSpace:
    """A SearchSpace from the parsed YAML mapping; ConfigError naming the key on any shape error."""
    if not isinstance(data, dict):
        raise ConfigError(f"search space '{name}' must be a mapping with 'params', got {type(data).__name__}")
    unknown = set(data) - {"description", "params", "fixed"}
    if unknown:
        raise ConfigError(f"search space '{name}': unknown section(s) {', '.join(sorted(unknown))}; "
                          "allowed: description, params, fixed")
    raw = data.get("params")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"search space '{name}': 'params' must be a non-empty mapping of config keys")
    params = {str(k): _parse_param(name, str(k), v) for k, v in raw.items()}
    fixed = data.get("fixed") or {}
    if not isinstance(fixed, dict):
        raise ConfigError(f"search space '{name}': 'fixed' must be a mapping of config keys to values")
    clash = sorted(set(fixed) & set(params))
    if clash:
        raise ConfigError(f"search space '{name}': {clash[0]} is both fixed and searched")
    return SearchSpace(name, _check_conditions(name, params), {str(k): v for k, v in fixed.items()},
                       str(data.get("description") or ""), source)


# --- A trial's sampled values -> its training Config: drop inactive conditionals, clamp, validate.

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


# --- A space against the config tree: keys exist, and every edge value type-checks.

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
