"""Typed config tree, YAML + dotted overrides, validation with key paths in every error.

The tree is `Config`; each of its sections is a `*Section` (`DataSection`, `TrainSection`, ...), not a
`*Config`, which would read like Ray's own `RunConfig` / `ScalingConfig`. The old names stay as aliases."""

from cnnray.config.data import AugmentSection, DataSection
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
    ModelSection,
    OptimSection,
    RegistrySection,
    RunSection,
    ScalingSection,
    ScheduleSection,
    TrackingSection,
    TrainSection,
    TuneSection,
)

__all__ = [
    "AugmentSection", "Config", "DataSection", "ModelSection", "OptimSection", "RegistrySection", "RunSection",
    "ScalingSection", "ScheduleSection", "TrackingSection", "TrainSection", "TuneSection",
    "config_hash", "config_names", "flatten", "load_config", "parse_value", "resolve_config_path", "set_dotted",
    "to_yaml",
]

# The names before the sections were named *Section (kept: scripts import them).
AugmentConfig, DataConfig, ModelConfig, OptimConfig = AugmentSection, DataSection, ModelSection, OptimSection
ScheduleConfig, TrainConfig, TrackingConfig, RegistryConfig = ScheduleSection, TrainSection, TrackingSection, RegistrySection
__all__ += ["AugmentConfig", "DataConfig", "ModelConfig", "OptimConfig", "RegistryConfig", "ScheduleConfig",
            "TrackingConfig", "TrainConfig"]
