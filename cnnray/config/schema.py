"""The typed config tree: one pydantic model per section; unknown keys are refused."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cnnray.config.data import DataConfig

# A run name becomes a directory under scaling.storage_path, an MLflow run name and a Ray metrics tag:
# a name, never a path, and only characters all three carry (Ray's metric tags are ASCII-only).
RUN_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
RUN_NAME_RULE = ("a run name is a name, not a path: 1-128 ASCII letters, digits, '.', '_' or '-', "
                 "starting with a letter or digit (no '/', '\\', '..', spaces or other characters)")
SEED_MAX = 2**32 - 1  # numpy's default_rng and torch.manual_seed both take this range


def check_run_name(name: str) -> str:
    """The name itself if it is a safe run name, else ValueError naming the rule."""
    if not RUN_NAME_RE.fullmatch(name) or ".." in name:
        raise ValueError(RUN_NAME_RULE)
    return name


class _Strict(BaseModel):
    # Infinite or NaN floats are never a sensible setting (optim.lr=.inf would fail at the first step).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class ModelConfig(_Strict):
    """Which registered model, and the options passed to `create_model` (None = the model's default)."""

    name: str = "cbam_resnet18"
    num_classes: int | None = Field(default=None, ge=2)  # None: taken from the data
    in_chans: int | None = Field(default=None, ge=1)  # None: taken from the data
    stem: Literal["imagenet", "cifar"] | None = "cifar"
    width: float | None = Field(default=0.25, gt=0)
    act: str | None = None
    norm: str | None = None
    attn: str | None = None
    pool: str | None = None
    drop_rate: float | None = Field(default=None, ge=0, lt=1)
    drop_path_rate: float | None = Field(default=None, ge=0, lt=1)
    drop_block: float | None = Field(default=None, ge=0, lt=1)
    drop_block_size: int | None = Field(default=None, ge=1)
    zero_init_residual: bool | None = None


class OptimConfig(_Strict):
    """Optimizer and its parameter groups."""

    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(default=3e-3, gt=0)
    weight_decay: float = Field(default=0.05, ge=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    nesterov: bool = True
    betas: tuple[float, float] = (0.9, 0.999)  # each in [0, 1)
    no_decay_norm_bias: bool = True  # no weight decay on norm and bias parameters
    head_lr_mult: float = Field(default=1.0, gt=0)  # lr multiplier for the classifier head
    backbone_lr_mult: float = Field(default=1.0, gt=0)

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in v):
            raise ValueError(f"each beta must be in [0, 1), got {list(v)}")
        return v


class ScheduleConfig(_Strict):
    """Learning-rate schedule, stepped per iteration."""

    name: Literal["cosine", "step", "multistep", "exponential", "onecycle", "plateau", "constant"] = "cosine"
    warmup_epochs: float = Field(default=1.0, ge=0)
    warmup_start_factor: float = Field(default=0.01, gt=0, le=1)
    min_lr: float = Field(default=1e-5, ge=0)
    step_epochs: float = Field(default=10.0, gt=0)  # step
    milestones: list[float] = Field(default_factory=lambda: [0.5, 0.75])  # multistep: fractions of training
    gamma: float = Field(default=0.1, gt=0, le=1)  # step, multistep, exponential (per epoch)
    max_lr: float | None = Field(default=None, gt=0)  # onecycle; None = optim.lr
    pct_start: float = Field(default=0.3, gt=0, lt=1)  # onecycle
    patience: int = Field(default=2, ge=0)  # plateau, in epochs
    factor: float = Field(default=0.5, gt=0, lt=1)  # plateau

    @field_validator("milestones")
    @classmethod
    def _milestones_are_fractions(cls, v: list[float]) -> list[float]:
        if not v or any(not 0 < m < 1 for m in v) or v != sorted(v):
            raise ValueError(f"milestones must be increasing fractions of training in (0, 1), got {v}")
        return v


class TrainConfig(_Strict):
    """The training loop."""

    epochs: int = Field(default=12, ge=1)
    batch_size: int = Field(default=32, ge=1)  # per worker; 2 x 32 on digits: 99% val acc by epoch ~5
    seed: int = Field(default=0, ge=0, le=SEED_MAX)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    channels_last: bool = True
    compile: bool = False
    label_smoothing: float = Field(default=0.1, ge=0, lt=1)
    grad_clip: float | None = Field(default=None, gt=0)
    accum_steps: int = Field(default=1, ge=1)
    ema: bool = True
    ema_decay: float = Field(default=0.99, gt=0, lt=1)
    ema_warmup: bool = True  # decay ramps as min(ema_decay, (1+n)/(10+n)) so early EMA is not the random init
    early_stop_patience: int | None = Field(default=None, ge=1)
    early_stop_min_delta: float = Field(default=0.0, ge=0)
    monitor: Literal["val_acc", "val_loss", "val_f1_macro"] = "val_acc"
    checkpoint_every: int = Field(default=1, ge=1)  # epochs
    resume: bool = False
    resume_from: str | None = None  # with resume: a checkpoint folder name of the run (default: its latest)
    inject_nan_at_step: int | None = Field(default=None, ge=0)  # testing hook: make the loss NaN at this global step
    fail_at_epoch: int | None = Field(default=None, ge=0)  # testing hook: rank 1 dies once at this epoch

    @field_validator("resume_from")
    @classmethod
    def _checkpoint_name(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"checkpoint_[0-9A-Za-z_.:-]+", v.rstrip("/").rsplit("/", 1)[-1]):
            raise ValueError("expected a checkpoint folder name of the run, such as checkpoint_2026-11-28_15-54-33.524425")
        return v


class ScalingConfig(_Strict):
    """Ray Train workers and where their state is kept."""

    num_workers: int | tuple[int, int] = 2  # or [min, max] for elastic training
    use_gpu: bool | None = None  # None: auto-detect from the cluster
    cpus_per_worker: float = Field(default=1.0, gt=0)
    gpus_per_worker: float = Field(default=1.0, gt=0)
    max_failures: int = Field(default=1, ge=-1)
    storage_path: str | None = None  # None: ./ray_results (absolute path)
    num_to_keep: int = Field(default=2, ge=1)
    collective_timeout_s: int = Field(default=120, ge=5)

    @field_validator("num_workers")
    @classmethod
    def _positive_workers(cls, v: int | tuple[int, int]) -> int | tuple[int, int]:
        if isinstance(v, int):
            if v < 1:
                raise ValueError(f"num_workers must be >= 1, got {v}")
        elif not 1 <= v[0] <= v[1]:
            raise ValueError(f"[min, max] workers need 1 <= min <= max, got {list(v)}")
        return v


class RunSection(_Strict):
    """The run's identity."""

    name: str | None = None  # None: cnnray-<timestamp>; see RUN_NAME_RULE
    address: str | None = None  # Ray cluster address; None: RAY_ADDRESS or a local cluster

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str | None) -> str | None:
        return None if v is None else check_run_name(v)


class TrackingConfig(_Strict):
    """MLflow tracking."""

    uri: str | None = None  # None: MLFLOW_TRACKING_URI or sqlite:///mlflow.db
    experiment: str = "cnnray"
    enabled: bool = True


class RegistryConfig(_Strict):
    """Model registration at the end of a run."""

    name: str = "cnnray"
    alias: str | None = "challenger"
    enabled: bool = True  # register a model version at the end of a run
    promote: bool = False  # run the promotion gate (`cnnray promote`) on the new version right after registration
    promote_floor: float = Field(default=0.0, ge=0, le=1)  # with no champion yet: minimum val accuracy to become one


class TuneConfig(_Strict):
    """Ray Tune search settings (`cnnray tune`)."""

    space: str = "default"  # a built-in space (workflows/configs/spaces) or a YAML file
    num_samples: int = Field(default=4, ge=1)  # trials to sample (grid search: every point once)
    max_concurrent_trials: int = Field(default=2, ge=1)
    trial_workers: int = Field(default=1, ge=1)  # DDP workers per trial
    trial_cpus: float = Field(default=1.0, gt=0)  # per worker
    trial_gpus: float = Field(default=0.0, ge=0)  # per worker; fractions share a GPU between trials
    metric: str = "val_acc"  # val_acc, val_top5, val_f1_macro (max) or val_loss, train_loss (min)
    mode: Literal["max", "min"] = "max"
    scheduler: Literal["asha", "hyperband", "median", "pbt", "fifo"] = "asha"
    search: Literal["random", "grid", "optuna", "hyperopt"] = "random"
    max_epochs: int = Field(default=4, ge=1)  # every trial's train.epochs
    grace_period: int = Field(default=1, ge=1)  # epochs before asha/median may stop a trial
    reduction_factor: float = Field(default=2.0, gt=1)  # asha/hyperband
    perturbation_interval: int = Field(default=1, ge=1)  # pbt, in epochs
    time_budget_s: float | None = Field(default=None, gt=0)  # stop the search after this long
    seed: int = Field(default=0, ge=0, le=SEED_MAX)  # searcher and PBT draws
    resume: bool = False  # continue the search run.name (`--resume NAME`)


class Config(_Strict):
    """The whole resolved config of a run."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    scaling: ScalingConfig = Field(default_factory=ScalingConfig)
    run: RunSection = Field(default_factory=RunSection)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
