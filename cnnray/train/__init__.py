"""The training loop and its parts, plain PyTorch (worker.py/trainer.py import Ray and are not re-exported here)."""

from cnnray.train.early_stop import EarlyStopping
from cnnray.train.ema import ModelEma, unwrap
from cnnray.train.engine import Engine, rng_state, set_rng_state
from cnnray.errors import NonFiniteLossError
from cnnray.train.losses import SoftTargetCrossEntropy, build_loss
from cnnray.train.metrics import MetricAccumulator
from cnnray.train.optim import build_optimizer, param_groups
from cnnray.train.precision import Precision, resolve_precision
from cnnray.train.schedules import Schedule, build_scheduler

__all__ = [
    "EarlyStopping", "Engine", "MetricAccumulator", "ModelEma", "NonFiniteLossError", "Precision", "Schedule",
    "SoftTargetCrossEntropy", "build_loss", "build_optimizer", "build_scheduler", "param_groups",
    "resolve_precision", "rng_state", "set_rng_state", "unwrap",
]
