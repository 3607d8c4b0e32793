"""The plan of one training run: everything `cnnray train` checks before any work starts (no Ray or MLflow
import, so bad input exits 2 fast), and the LoopConfig its ranks get (`make_loop_config`, the one maker)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cnnray.config import Config
from cnnray.data import DatasetInfo, absolute_data_path, check_num_classes, describe_dataset, resolve_loader_kind
from cnnray.data.uri import path_exists
from cnnray.errors import ConfigError
from cnnray.models.from_config import build_model
from cnnray.run.claim import refuse_if_in_use
from cnnray.run.init_from import InitSource, resolve_init_source
from cnnray.run.loop_config import InitState, LoopConfig
from cnnray.run.test_hooks import read_test_hooks


@dataclass
class PreparedRun:
    """Everything checked before any work starts (bad input here exits 2)."""

    cfg: Config
    info: DatasetInfo
    loader_kind: str
    run_name: str
    storage_path: str
    run_dir: str
    resume: bool
    # Set by `cnnray compress` (prune's fine-tune, distill, QAT): what the ranks start from (`init_state.py`)
    # and the compression entry of the registered model's card (its weights fit that structure).
    init: InitState = field(default_factory=InitState)
    card_compression: dict = field(default_factory=dict)
    # model.init_from, resolved and checked (`init_from.py`); its tensors are dropped once staged (`stage.py`).
    init_source: InitSource | None = None
    # Driver-side tensors of `cnnray compress`, staged as files before the ranks start (then None).
    init_weights: dict[str, Any] | None = None
    teacher_weights: dict[str, Any] | None = None
    # Tags of the run and of the version it registers that its caller adds (`cnnray replay`: what it replays).
    lineage_tags: dict[str, str] = field(default_factory=dict)


def make_loop_config(prep: PreparedRun, threads: int | None = None, *, init_checkpoint: str | None = None,
                     skip_checkpoints: tuple[str, ...] = (), test_hooks: dict | None = None) -> LoopConfig:
    """The LoopConfig every rank of this run gets (local rank processes, Ray Train workers, Tune trials).
    `test_hooks`: cnnray's own fault injection when read elsewhere (a Tune trial actor does not see the
    driver's environment); by default read from this process's environment variables, never the config."""
    return LoopConfig(cfg=prep.cfg, info=prep.info, loader_kind=prep.loader_kind, run_dir=prep.run_dir,
                      threads=threads or max(1, int(prep.cfg.scaling.cpus_per_worker)),
                      test_hooks=read_test_hooks() if test_hooks is None else dict(test_hooks),
                      init_checkpoint=init_checkpoint, skip_checkpoints=tuple(skip_checkpoints), init=prep.init)


def storage_root(cfg: Config) -> str:
    """scaling.storage_path (default ./ray_results), absolute when local: where runs and searches live."""
    path = cfg.scaling.storage_path or "ray_results"
    return path if "://" in path else str(Path(path).resolve())


def prepare_run(cfg: Config) -> PreparedRun:
    """Validate data, model and run identity; raise ConfigError/DataError before any work."""
    # Workers run in other directories: a relative data.path must mean what it means here.
    cfg = cfg.model_copy(update={"data": absolute_data_path(cfg.data)})
    info = describe_dataset(cfg.data)
    if cfg.model.num_classes is not None:
        check_num_classes(info, cfg.model.num_classes)
    try:
        build_model(cfg, info.num_classes, info.channels)
    except ValueError as e:
        raise ConfigError(f"model: {e}") from None
    kind = resolve_loader_kind(cfg.data, info)
    check_steps_per_epoch(cfg, info)
    if cfg.train.deterministic and cfg.train.compile:
        raise ConfigError("train.deterministic=true with train.compile=true: torch.compile's generated kernels are "
                          "outside torch.use_deterministic_algorithms; set train.compile=false")
    resume = cfg.train.resume
    if resume and not cfg.run.name:
        raise ConfigError("train.resume=true needs run.name: the name of the run to continue")
    if cfg.train.resume_from and not resume:
        raise ConfigError("train.resume_from needs train.resume=true (and the run.name it belongs to)")
    if resume and cfg.model.init_from:
        raise ConfigError("model.init_from with train.resume=true: a resume continues from its own checkpoint's "
                          "weights; drop model.init_from")
    name = cfg.run.name or datetime.now().strftime("cnnray-%Y%m%d-%H%M%S")
    storage = storage_root(cfg)
    run_dir = f"{storage.rstrip('/')}/{name}"
    exists = path_exists(run_dir, key="scaling.storage_path")
    if exists:
        refuse_if_in_use(run_dir)
    if exists and not resume:
        raise ConfigError(f"run.name '{name}' already exists at {run_dir}; pass train.resume=true to continue "
                          "it, or choose another run.name")
    if resume and not exists:
        raise ConfigError(f"train.resume=true but no run named '{name}' exists at {run_dir}")
    # Last: the weights are read and fitted to the model only when everything cheaper was right.
    return PreparedRun(cfg, info, kind, name, storage, run_dir, resume, init_source=resolve_init_source(cfg, info))


def check_steps_per_epoch(cfg: Config, info: DatasetInfo) -> None:
    """Refuse a run whose epochs would take no optimizer step (fewer images per worker than a batch)."""
    workers = cfg.scaling.num_workers
    most = max(workers) if isinstance(workers, (list, tuple)) else workers
    per_worker = info.num_train // most  # each epoch's order is cut to a multiple of the world size
    bs = cfg.train.batch_size
    if per_worker < bs:
        raise ConfigError(
            f"data: {info.num_train} training images over {most} worker(s) is {per_worker} per worker, fewer than "
            f"train.batch_size={bs}: no optimizer step could be taken. Lower train.batch_size to at most "
            f"{max(1, per_worker)} or scaling.num_workers, or use more data")
