"""The typed config tree: one pydantic model per section; unknown keys are refused.

Sections whose natural name is taken by a Ray class used beside them (`RunConfig`, `ScalingConfig`,
`TuneConfig`) are called `...Section` so one file never imports two classes of the same name.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from cnnray.config.base import Strict
from cnnray.config.data import DataSection

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


class ModelSection(Strict):
    """Which registered model, and the options passed to `create_model` (None = the model's default)."""

    name: str = Field(default="cbam_resnet18", description="registered model name (`cnnray models` lists them)")
    num_classes: int | None = Field(default=None, ge=2, description="output classes; None: taken from the data")
    in_chans: int | None = Field(default=None, ge=1, description="input channels; None: taken from the data")
    stem: Literal["imagenet", "cifar"] | None = Field(default="cifar", description=(
        "imagenet: 7x7 stride-2 conv + max pool; cifar: 3x3 stride-1 conv for small images; None: the model's default"))
    width: float | None = Field(default=0.25, gt=0, description=(
        "channel width multiplier (1.0 = the paper's widths); None: the model's default"))
    act: str | None = Field(default=None, description=(
        "activation layer name (cnnray/layers registry); None: the model's default"))
    norm: str | None = Field(default=None, description=(
        "normalization layer name (cnnray/layers registry); None: the model's default"))
    attn: str | None = Field(default=None, description=(
        "attention layer name (cnnray/layers registry); None: the model's default"))
    pool: str | None = Field(default=None, description=(
        "pooling layer name that downsamples stages 2-4 instead of strided convs; None: the model's default"))
    drop_rate: float | None = Field(default=None, ge=0, lt=1, description=(
        "dropout probability on the pooled features before the classifier head, in [0, 1)"))
    drop_path_rate: float | None = Field(default=None, ge=0, lt=1, description=(
        "stochastic depth: drop probability of the last residual branch (rising linearly from 0), in [0, 1)"))
    drop_block: float | None = Field(default=None, ge=0, lt=1, description=(
        "DropBlock drop probability after each norm of the residual branches in stages 3-4, in [0, 1)"))
    drop_block_size: int | None = Field(default=None, ge=1, description=(
        "DropBlock square size in pixels of the feature map"))
    zero_init_residual: bool | None = Field(default=None, description=(
        "zero each residual branch's last norm weight, so every block starts as act(shortcut)"))
    init_from: str | None = Field(default=None, description=(
        "first weights: a state_dict file (.pt/.pth/.safetensors, torchvision or cnnray format), "
        "torchvision:WEIGHTS_NAME (e.g. torchvision:ResNet50_Weights.IMAGENET1K_V2, from TORCH_HOME's cache), "
        "or a registered version models:/NAME@ALIAS | models:/NAME/VERSION; None: random init"))
    init_strict: bool = Field(default=True, description=(
        "with init_from: refuse weights that do not fit (missing, unexpected or mis-shaped keys beyond the head, "
        "input channels and attention modules); false loads what matches and lists what it skipped"))

    @field_validator("init_from")
    @classmethod
    def _init_source(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.strip()
        if not v:
            raise ValueError("empty: give a weights file, torchvision:WEIGHTS_NAME or models:/NAME@ALIAS")
        if v.startswith("torchvision:") and not re.fullmatch(r"torchvision:\w+_Weights\.\w+", v):
            raise ValueError(f"{v!r}: expected torchvision:ARCH_Weights.NAME, e.g. torchvision:ResNet50_Weights.IMAGENET1K_V2")
        if v.startswith("models:/") and not re.fullmatch(r"models:/[^/@]+(@[\w-]+|/\d+)", v):
            raise ValueError(f"{v!r}: expected models:/NAME@ALIAS or models:/NAME/VERSION")
        return v


class OptimSection(Strict):
    """Optimizer and its parameter groups."""

    name: Literal["adamw", "sgd"] = Field(default="adamw", description="optimizer: adamw or sgd")
    lr: float = Field(default=3e-3, gt=0, description="base learning rate; each group uses lr x its multiplier")
    weight_decay: float = Field(default=0.05, ge=0, description=(
        "decoupled weight decay (AdamW) or L2 (SGD) coefficient"))
    momentum: float = Field(default=0.9, ge=0, lt=1, description="sgd only: momentum in [0, 1)")
    nesterov: bool = Field(default=True, description="sgd only: Nesterov momentum (ignored when momentum is 0)")
    betas: tuple[float, float] = Field(default=(0.9, 0.999), description="adamw only: (beta1, beta2), each in [0, 1)")
    no_decay_norm_bias: bool = Field(default=True, description=(
        "no weight decay on norm and bias parameters (ndim <= 1)"))
    head_lr_mult: float = Field(default=1.0, gt=0, description=(
        "lr multiplier for the classifier head (fc/head/classifier)"))
    backbone_lr_mult: float = Field(default=1.0, gt=0, description="lr multiplier for every parameter outside the head")

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in v):
            raise ValueError(f"each beta must be in [0, 1), got {list(v)}")
        return v


class ScheduleSection(Strict):
    """Learning-rate schedule, stepped per iteration."""

    name: Literal["cosine", "step", "multistep", "exponential", "onecycle", "plateau", "constant"] = Field(
        default="cosine", description="lr schedule, stepped per iteration")
    warmup_epochs: float = Field(default=1.0, ge=0, description=(
        "epochs of linear warmup (fractions allowed); not used by onecycle"))
    warmup_start_factor: float = Field(default=0.01, gt=0, le=1, description=(
        "warmup starts at this fraction of the scheduled lr, in (0, 1]"))
    min_lr: float = Field(default=1e-5, ge=0, description=(
        "floor of cosine and plateau (absolute, before the group multipliers)"))
    step_epochs: float = Field(default=10.0, gt=0, description="step: epochs between decays by gamma")
    milestones: list[float] = Field(default_factory=lambda: [0.5, 0.75], description=(
        "multistep: increasing fractions of training in (0, 1) where lr *= gamma"))
    gamma: float = Field(default=0.1, gt=0, le=1, description=(
        "decay factor in (0, 1] for step, multistep, exponential (per epoch)"))
    max_lr: float | None = Field(default=None, gt=0, description="onecycle: peak lr; None: optim.lr")
    pct_start: float = Field(default=0.3, gt=0, lt=1, description=(
        "onecycle: fraction of training spent rising, in (0, 1)"))
    patience: int = Field(default=2, ge=0, description="plateau: epochs without improvement before lr *= factor")
    factor: float = Field(default=0.5, gt=0, lt=1, description="plateau: lr multiplier on a plateau, in (0, 1)")

    @field_validator("milestones")
    @classmethod
    def _milestones_are_fractions(cls, v: list[float]) -> list[float]:
        if not v or any(not 0 < m < 1 for m in v) or v != sorted(v):
            raise ValueError(f"milestones must be increasing fractions of training in (0, 1), got {v}")
        return v


class TrainSection(Strict):
    """The training loop."""

    epochs: int = Field(default=12, ge=1, description="epochs to train (early stopping may end sooner)")
    batch_size: int = Field(default=32, ge=1, description=(
        "images per worker per step; 2 x 32 on digits: 99% val acc by epoch ~5"))
    seed: int = Field(default=0, ge=0, le=SEED_MAX, description="seed of initial weights, data order and augmentation")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(default="auto", description=(
        "auto: bf16 on GPUs that support it, else fp16 with loss scaling; on CPU bf16 only where fast, else fp32"))
    channels_last: bool = Field(default=True, description=(
        "NHWC memory format for the model and batches (faster convs on GPUs)"))
    compile: bool = Field(default=False, description="torch.compile the model")
    label_smoothing: float = Field(default=0.1, ge=0, lt=1, description="cross-entropy label smoothing in [0, 1)")
    grad_clip: float | None = Field(default=None, gt=0, description=(
        "clip the global gradient L2 norm to this; None: no clipping"))
    accum_steps: int = Field(default=1, ge=1, description="micro-batches accumulated per optimizer step")
    ema: bool = Field(default=True, description="keep an exponential moving average of the weights and evaluate it")
    ema_decay: float = Field(default=0.99, gt=0, lt=1, description="EMA decay per optimizer step, in (0, 1)")
    ema_warmup: bool = Field(default=True, description=(
        "decay ramps as min(ema_decay, (1+n)/(10+n)) so early EMA is not the random init"))
    early_stop_patience: int | None = Field(default=None, ge=1, description=(
        "stop after this many epochs without improvement of train.monitor; None: never"))
    early_stop_min_delta: float = Field(default=0.0, ge=0, description=(
        "smallest change of train.monitor that counts as an improvement"))
    monitor: Literal["val_acc", "val_loss", "val_f1_macro"] = Field(default="val_acc", description=(
        "metric that selects the best checkpoint and drives early stopping (val_loss: min, others: max)"))
    checkpoint_every: int = Field(default=1, ge=1, description="epochs between checkpoints")
    resume: bool = Field(default=False, description="continue run.name from its latest (or resume_from) checkpoint")
    resume_from: str | None = Field(default=None, description=(
        "with resume: a checkpoint folder name of the run (default: its latest)"))
    freeze_backbone_epochs: int = Field(default=0, ge=0, description=(
        "fine-tuning: train only the classifier head for this many first epochs, then every layer "
        "(one optimizer throughout, so the head keeps its optimizer state)"))
    freeze_bn: bool = Field(default=True, description=(
        "while the backbone is frozen, its BatchNorm layers also keep their running statistics (eval mode)"))
    stop_after_epochs: int | None = Field(default=None, ge=1, description=(
        "end after this many epochs while the schedule still spans train.epochs (how a Tune trial stopped by its "
        "scheduler trained; `cnnray replay` sets it); None: train.epochs"))
    deterministic: bool = Field(default=False, description=(
        "torch.use_deterministic_algorithms, every random stream (data order, augmentation, dropout, DropBlock, "
        "mixup) reseeded from (seed, epoch, rank) each epoch, no torch.compile: on CPU with the same worker count "
        "a rerun (`cnnray replay`) gives the same weights bit for bit"))
    budget_device_hours: float | None = Field(default=None, gt=0, description=(
        "end the run at the epoch boundary where the next epoch would spend more device-hours (GPU-hours, or "
        "CPU-hours on CPU) than this, with a checkpoint, FINISHED and tag cnnray.end_reason=budget; None: no limit"))

    @property
    def monitor_mode(self) -> str:
        """"min" for a loss, "max" for an accuracy or F1: which way `monitor` gets better."""
        return "min" if self.monitor == "val_loss" else "max"

    @field_validator("resume_from")
    @classmethod
    def _checkpoint_name(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"checkpoint_[0-9A-Za-z_.:-]+", v.rstrip("/").rsplit("/", 1)[-1]):
            raise ValueError("expected a checkpoint folder name of the run, such as checkpoint_2026-11-28_15-54-33.524425")
        return v


class ScalingSection(Strict):
    """Ray Train workers and where their state is kept."""

    num_workers: int | tuple[int, int] = Field(default=2, description=(
        "DDP workers (processes), or [min, max] for elastic training on Ray Train"))
    runner: Literal["auto", "local", "ray"] = Field(default="auto", description=(
        "where the workers run: ray = a Ray Train run (fault-tolerant worker group, any cluster); local = "
        "processes of this machine started by the command, no Ray (DDP over gloo on 127.0.0.1, same loop, "
        "checkpoints, resume and MLflow run); auto = local unless a cluster address is given (run.address, "
        "--address, RAY_ADDRESS), Ray is already up in this process, data streams through Ray Data, or "
        "num_workers is elastic"))
    use_gpu: bool | None = Field(default=None, description="one GPU per worker; None: auto-detect from the cluster")
    cpus_per_worker: float = Field(default=1.0, gt=0, description="CPUs reserved per worker")
    gpus_per_worker: float = Field(default=1.0, gt=0, description=(
        "GPUs reserved per worker when use_gpu (fractions share a GPU)"))
    max_failures: int = Field(default=1, ge=-1, description=(
        "worker-group restarts from the latest checkpoint before the run fails; -1: unlimited"))
    storage_path: str | None = Field(default=None, description=(
        "where runs keep checkpoints and results (path or URI); None: ./ray_results (absolute path)"))
    num_to_keep: int = Field(default=2, ge=1, description=(
        "checkpoints kept per run, ranked by train.monitor"))
    collective_timeout_s: int = Field(default=120, ge=5, description=(
        "seconds a DDP collective may wait before the run fails"))

    @field_validator("num_workers")
    @classmethod
    def _positive_workers(cls, v: int | tuple[int, int]) -> int | tuple[int, int]:
        if isinstance(v, int):
            if v < 1:
                raise ValueError(f"num_workers must be >= 1, got {v}")
        elif not 1 <= v[0] <= v[1]:
            raise ValueError(f"[min, max] workers need 1 <= min <= max, got {list(v)}")
        return v


class RunSection(Strict):
    """The run's identity."""

    name: str | None = Field(default=None, description=(
        "run name (directory, MLflow run name, resume key): 1-128 ASCII letters, digits, '.', '_', '-'; "
        "None: cnnray-<timestamp>"))
    address: str | None = Field(default=None, description="Ray cluster address; None: RAY_ADDRESS or a local cluster")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str | None) -> str | None:
        return None if v is None else check_run_name(v)


class PriceSection(Strict):
    """What one device-hour costs, per device kind; unset: no money is shown, only device-hours."""

    cpu: float | None = Field(default=None, ge=0, description="price of one CPU core-hour (any currency)")
    gpu: float | None = Field(default=None, ge=0, description="price of one GPU-hour (same currency)")


class TrackingSection(Strict):
    """MLflow tracking."""

    uri: str | None = Field(default=None, description=(
        "MLflow tracking URI; None: MLFLOW_TRACKING_URI or sqlite:///mlflow.db"))
    experiment: str = Field(default="cnnray", description="MLflow experiment name")
    enabled: bool = Field(default=True, description="log runs to MLflow")
    price_per_device_hour: PriceSection = Field(default_factory=PriceSection, description=(
        "optional prices that turn device-hours into money in cost summaries"))


class RegistrySection(Strict):
    """Model registration at the end of a run."""

    name: str = Field(default="cnnray", description="registered model name in MLflow")
    alias: str | None = Field(default="challenger", description="alias set on the new version; None: none")
    enabled: bool = Field(default=True, description="register a model version at the end of a run")
    promote: bool = Field(default=False, description=(
        "run the promotion gate (`cnnray promote`) on the new version right after registration"))
    promote_floor: float = Field(default=0.0, ge=0, le=1, description=(
        "with no champion yet: minimum val accuracy in [0, 1] to become one"))


class TuneSection(Strict):
    """Ray Tune search settings (`cnnray tune`)."""

    space: str = Field(default="default", description="a built-in space (workflows/configs/spaces) or a YAML file")
    num_samples: int = Field(default=4, ge=1, description="trials to sample (grid search: every point once)")
    max_concurrent_trials: int = Field(default=2, ge=1, description="trials running at once")
    trial_workers: int = Field(default=1, ge=1, description="DDP workers per trial")
    trial_runner: Literal["auto", "actor", "train"] = Field(default="auto", description=(
        "where a trial trains: actor (in the trial's own actor, plus rank actors kept across trials for "
        "trial_workers > 1; no Ray Train run: starts in ~1 s; in-memory data only), train (a Ray Train run per "
        "trial), auto (actor when the data is in memory)"))
    trial_cpus: float = Field(default=1.0, gt=0, description="CPUs per worker of a trial")
    trial_gpus: float = Field(default=0.0, ge=0, description=(
        "GPUs per worker of a trial; fractions share a GPU between trials"))
    metric: str = Field(default="val_acc", description=(
        "val_acc, val_top5, val_f1_macro (max) or val_loss, train_loss (min)"))
    mode: Literal["max", "min"] = Field(default="max", description="max or min: the direction of tune.metric")
    scheduler: Literal["asha", "hyperband", "median", "pbt", "fifo"] = Field(default="asha", description=(
        "trial scheduler: asha, hyperband, median (early stopping), pbt (population based), fifo (none)"))
    search: Literal["random", "grid", "optuna", "hyperopt"] = Field(default="random", description=(
        "search algorithm: random, grid, optuna or hyperopt"))
    max_epochs: int = Field(default=4, ge=1, description="every trial's train.epochs")
    grace_period: int = Field(default=1, ge=1, description="epochs before asha/median may stop a trial")
    reduction_factor: float = Field(default=2.0, gt=1, description=(
        "asha/hyperband: keep 1/reduction_factor of trials per rung, > 1"))
    perturbation_interval: int = Field(default=1, ge=1, description="pbt: epochs between perturbations")
    time_budget_s: float | None = Field(default=None, gt=0, description=(
        "seconds; stop the search after this long; None: no limit"))
    budget_device_hours: float | None = Field(default=None, gt=0, description=(
        "stop starting trials once the search's spent device-hours plus one more trial-epoch would exceed this; "
        "running trials finish their current epoch and the search ends FINISHED; None: no limit"))
    keep_checkpoints_top_k: int = Field(default=5, ge=1, description=(
        "checkpoints kept on disk: those of the K best ended trials by tune.metric (the best one that did not fail "
        "always), plus every running trial's; an ended trial outside the K loses its checkpoints then; pbt: at "
        "least its upper quantile, ceil(num_samples/4)"))
    table_top: int = Field(default=20, ge=1, description=(
        "trials in the console table, trials.txt and the highlighted plots, best first (trials.csv keeps all)"))
    seed: int = Field(default=0, ge=0, le=SEED_MAX, description="seed of the searcher and PBT draws")
    resume: bool = Field(default=False, description="continue the search run.name (`--resume NAME`)")


class Config(Strict):
    """The whole resolved config of a run."""

    data: DataSection = Field(default_factory=DataSection, description="data source, split, loader and augmentation")
    model: ModelSection = Field(default_factory=ModelSection, description="which registered model and its options")
    optim: OptimSection = Field(default_factory=OptimSection, description="optimizer and parameter groups")
    schedule: ScheduleSection = Field(default_factory=ScheduleSection, description="learning-rate schedule")
    train: TrainSection = Field(default_factory=TrainSection, description="the training loop")
    scaling: ScalingSection = Field(default_factory=ScalingSection, description="Ray Train workers and storage")
    run: RunSection = Field(default_factory=RunSection, description="the run's identity")
    tracking: TrackingSection = Field(default_factory=TrackingSection, description="MLflow tracking")
    registry: RegistrySection = Field(default_factory=RegistrySection, description="model registration")
    tune: TuneSection = Field(default_factory=TuneSection, description="Ray Tune search")
