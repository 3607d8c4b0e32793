"""Command-line pieces the registry commands share, checked without importing MLflow or Ray."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from cnnray.config import load_config
from cnnray.errors import ConfigError
from cnnray.tracking.runs import resolve_tracking_uri
from cnnray.tracking.uri import ModelRef, parse_model_uri

ALLOWED = ("data.*", "tracking.uri", "tracking.experiment")


@dataclass
class CommandKeys:
    """`key=value` arguments split into data overrides and the tracking location."""

    data: list[str] = field(default_factory=list)
    tracking_uri: str = ""
    experiment: str = "cnnray"


def split_keys(overrides: list[str]) -> CommandKeys:
    """Validate `data.*` / `tracking.*` overrides with the config schema; ConfigError naming a bad key."""
    data, tracking = [], []
    for o in overrides:
        key = o.split("=", 1)[0]
        if "=" not in o:
            raise ConfigError(f"expected key=value, got {o!r}")
        if key.startswith("data."):
            data.append(o)
        elif key in ("tracking.uri", "tracking.experiment"):
            tracking.append(o)
        else:
            raise ConfigError(f"key {key!r} is not accepted here; accepted keys: {', '.join(ALLOWED)}")
    cfg = load_config(overrides=data + tracking)  # refuses unknown data keys and bad values with their path
    return CommandKeys(data, resolve_tracking_uri(cfg.tracking.uri), cfg.tracking.experiment)


class VersionCommand:
    """What the commands that take --model and key=value arguments share: both parsed once, on first use.
    A subclass (a frozen dataclass with a `model` field) says which arguments are keys (`key_args`)."""

    model: str

    def key_args(self) -> list[str]:
        """The `key=value` arguments of this command."""
        raise NotImplementedError

    @cached_property
    def ref(self) -> ModelRef:
        """The parsed --model; UserInputError for a malformed URI."""
        return parse_model_uri(self.model)

    @cached_property
    def keys(self) -> CommandKeys:
        """The data.* / tracking.* keys, checked against the config schema."""
        return split_keys(self.key_args())
