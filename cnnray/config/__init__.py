"""Typed config tree, YAML + dotted overrides, validation with key paths in every error."""

from cnnray.config.data import AugmentConfig, DataConfig
from cnnray.config.loader import config_hash, flatten, load_config, parse_value, set_dotted, to_yaml
from cnnray.config.schema import (
    Config,
    ModelConfig,
    OptimConfig,
    RegistryConfig,
    RunSection,
    ScalingConfig,
    ScheduleConfig,
    TrackingConfig,
    TrainConfig,
    TuneConfig,
)

__all__ = [
    "AugmentConfig", "Config", "DataConfig", "ModelConfig", "OptimConfig", "RegistryConfig", "RunSection",
    "ScalingConfig", "ScheduleConfig", "TrackingConfig", "TrainConfig", "TuneConfig",
    "config_hash", "flatten", "load_config", "parse_value", "set_dotted", "to_yaml",
]
