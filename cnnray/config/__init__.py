"""Typed config tree, YAML + dotted overrides, validation with key paths in every error."""

from cnnray.config.data import AugmentConfig, DataConfig
from cnnray.config.loader import (
    config_hash,
    config_names,
    flatten,
    load_config,
    parse_value,
    resolve_config_path,
    set_dotted,
    to_yaml,
)
from cnnray.config.schema import (
    Config,
    ModelConfig,
    OptimConfig,
    RegistryConfig,
    RunSection,
    ScalingSection,
    ScheduleConfig,
    TrackingConfig,
    TrainConfig,
    TuneSection,
)

__all__ = [
    "AugmentConfig", "Config", "DataConfig", "ModelConfig", "OptimConfig", "RegistryConfig", "RunSection",
    "ScalingSection", "ScheduleConfig", "TrackingConfig", "TrainConfig", "TuneSection",
    "config_hash", "config_names", "flatten", "load_config", "parse_value", "resolve_config_path", "set_dotted",
    "to_yaml",
]
