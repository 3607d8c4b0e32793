"""Build a validated Config from YAML files and dotted `key.sub=value` overrides."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from cnnray.config.schema import Config
from cnnray.errors import ConfigError


def _allowed(model: type[BaseModel], path: list[str]) -> str:
    """Describe what the field at `path` accepts, for error messages."""
    cls: Any = model
    field = None
    for part in path:
        fields = getattr(cls, "model_fields", None)
        if not fields or part not in fields:
            return ""
        field = fields[part]
        cls = field.annotation
    if field is None:
        return ""
    ann = field.annotation
    literals = _literal_values(ann)
    if literals:
        return "allowed values: " + ", ".join(map(str, literals))
    constraints = [str(m) for m in field.metadata]
    text = f"expected {getattr(ann, '__name__', str(ann)).replace('typing.', '')}"
    return text + (f" ({', '.join(constraints)})" if constraints else "")


def _literal_values(ann: Any) -> list[Any]:
    if typing.get_origin(ann) is typing.Literal:
        return list(typing.get_args(ann))
    out: list[Any] = []
    for arg in typing.get_args(ann):
        out += _literal_values(arg)
    return out


def _keys_of(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


def _format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        path = [str(p) for p in e["loc"]]
        key = ".".join(path)
        if e["type"] == "extra_forbidden":
            parent = _section_model(path[:-1])
            valid = ", ".join(_keys_of(parent)) if parent else ""
            lines.append(f"unknown config key '{key}'" + (f"; valid keys here: {valid}" if valid else ""))
        else:
            hint = _allowed(Config, [p for p in path if not p.isdigit()])
            got = e.get("input")
            lines.append(f"invalid value for '{key}': {got!r}: {e['msg']}" + (f"; {hint}" if hint else ""))
    return "\n".join(lines)


def _section_model(path: list[str]) -> type[BaseModel] | None:
    cls: Any = Config
    for part in path:
        fields = getattr(cls, "model_fields", None)
        if not fields or part not in fields:
            return None
        cls = fields[part].annotation
    return cls if isinstance(cls, type) and issubclass(cls, BaseModel) else None


def parse_value(text: str) -> Any:
    """Parse an override value as YAML so `5`, `1e-3`, `true`, `[1,2]` and `null` get their types."""
    try:
        return yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set `a.b.c=value` inside a nested dict, creating levels as needed."""
    parts = key.split(".")
    if not all(parts):
        raise ConfigError(f"malformed config key '{key}': expected dotted names like train.epochs")
    node = tree
    for part in parts[:-1]:
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"config key '{key}': '{part}' is a value, not a section")
        node = nxt
    node[parts[-1]] = value


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v
    return base


def configs_dir() -> Path:
    """Where the named configs live: workflows/configs (inside the installed package)."""
    spec = importlib.util.find_spec("workflows")
    if spec is None or not spec.submodule_search_locations:
        return Path(__file__).resolve().parents[2] / "workflows" / "configs"
    return Path(list(spec.submodule_search_locations)[0]) / "configs"


def config_names() -> list[str]:
    """Names of the built-in configs (`--config NAME`)."""
    return sorted(p.stem for p in configs_dir().glob("*.yaml"))


def resolve_named_file(ref: str | Path, folder: Path, what: str) -> Path:
    """A YAML file from a path, or from a bare name of a built-in one (`folder`/NAME.yaml).

    Anything that looks like a path is one: a .yaml/.yml suffix, a directory part, or a file that exists.
    `what` names the kind in errors ("config", "search space").
    """
    path, text = Path(ref), str(ref)
    if path.is_file() or path.suffix in (".yaml", ".yml") or "/" in text or "\\" in text:
        if not path.is_file():
            raise ConfigError(f"{what} file not found: {path}")
        return path
    builtin = folder / f"{text}.yaml"
    if not builtin.is_file():
        names = sorted(p.stem for p in folder.glob("*.yaml"))
        raise ConfigError(f"unknown {what} '{text}': not a file, and not a built-in one; built-in {what}s: "
                          f"{', '.join(names) or '(none)'} (or pass a path to a .yaml file)")
    return builtin


def resolve_config_path(ref: str | Path) -> Path:
    """A config file from a path, or from a bare name of a built-in config (workflows/configs/NAME.yaml)."""
    return resolve_named_file(ref, configs_dir(), "config")


def load_config(
    files: list[str | Path] | str | Path | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
) -> Config:
    """Load YAML file(s) (paths or built-in names) in order, then `key=value` overrides, and validate.

    Later sources win: defaults < first file < later files < overrides (in their order).
    """
    tree: dict[str, Any] = {}
    if files is not None:
        for f in [files] if isinstance(files, (str, Path)) else files:
            path = resolve_config_path(f)
            try:
                loaded = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError as e:
                raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
            if not isinstance(loaded, dict):
                raise ConfigError(f"config file {path} must hold a mapping of sections, got {type(loaded).__name__}")
            _merge(tree, loaded)
    items = overrides.items() if isinstance(overrides, dict) else [_split_override(o) for o in overrides or []]
    for key, value in items:
        set_dotted(tree, key, value)
    try:
        return Config.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e)) from None


def _split_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not of the form key.sub=value (e.g. train.epochs=5)")
    key, value = text.split("=", 1)
    return key.strip(), parse_value(value)


def flatten(cfg: Config | dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten the config tree to dotted keys (for MLflow params)."""
    tree = cfg.model_dump(mode="json") if isinstance(cfg, BaseModel) else cfg
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_hash(cfg: Config) -> str:
    """A stable short hash of what determines the trained model (run identity and tracking excluded)."""
    tree = cfg.model_dump(mode="json", exclude={"run", "tracking", "registry", "tune", "scaling"})
    tree["train"].pop("resume", None)
    blob = json.dumps(tree, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def to_yaml(cfg: Config) -> str:
    """The resolved config as YAML (saved with every run)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
