"""The options of `cnnray replay`, validated without MLflow or Ray (bad input exits 2 fast)."""

from __future__ import annotations

from dataclasses import dataclass, field

from cnnray.config import load_config
from cnnray.errors import ConfigError, UserInputError
from cnnray.tracking.runs import resolve_tracking_uri
from cnnray.tracking.uri import FORMS, ModelRef, parse_model_uri

# What a replay may change: where it runs and is recorded, and where its data lives (checked by fingerprint).
# Anything else would train something other than the version, which is not a replay.
CHANGEABLE = ("scaling.", "run.name", "run.address", "tracking.uri", "tracking.experiment",
              "tracking.price_per_device_hour.", "data.path")
REFUSED = {"train.resume": "a replay trains from the start; it cannot continue a run (drop train.resume)",
           "train.resume_from": "a replay trains from the start; it cannot continue a run (drop train.resume_from)"}


@dataclass(frozen=True)
class ReplayOptions:
    """`cnnray replay MODEL [key=value ...] [--address A] [--register]`."""

    model: str
    overrides: tuple[str, ...] = ()
    address: str | None = None
    register: bool = False
    alpha: float = 0.05  # two-sided level of the paired test behind `equivalent`
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> ModelRef:
        """The parsed model URI (UserInputError naming the forms)."""
        try:
            return parse_model_uri(self.model)
        except UserInputError:
            raise UserInputError(f"replay {self.model!r}: not a model URI; use {FORMS}") from None

    @property
    def tracking_uri(self) -> str:
        """Where the version is looked up (tracking.uri, else MLFLOW_TRACKING_URI, else ./mlflow.db)."""
        return resolve_tracking_uri(self.keys.get("tracking.uri"))

    @property
    def experiment(self) -> str:
        """The MLflow experiment of the replay's run (the original's unless tracking.experiment says)."""
        return self.keys.get("tracking.experiment", "")

    def validate(self) -> ReplayOptions:
        """UserInputError for a malformed URI, a key a replay may not change, or a bad value; returns the
        options with `keys` parsed."""
        _ = self.ref
        keys: dict[str, str] = {}
        for o in self.overrides:
            if "=" not in o:
                raise ConfigError(f"expected key=value, got {o!r}")
            key, value = o.split("=", 1)
            if key in REFUSED:
                raise ConfigError(f"{key}: {REFUSED[key]}")
            if not any(key == c or (c.endswith(".") and key.startswith(c)) for c in CHANGEABLE):
                raise ConfigError(f"key {key!r} cannot change in a replay (it would train something else); keys a "
                                  f"replay may change: scaling.*, run.name, run.address, tracking.uri, "
                                  f"tracking.experiment, tracking.price_per_device_hour.*, data.path")
            keys[key] = value
        if self.address:
            keys["run.address"] = self.address
        load_config(overrides=[f"{k}={v}" for k, v in keys.items()])  # values checked with their key path
        if not 0 < self.alpha < 0.5:
            raise UserInputError(f"--alpha must lie in (0, 0.5), got {self.alpha}")
        return ReplayOptions(self.model, self.overrides, self.address, self.register, self.alpha, keys)
