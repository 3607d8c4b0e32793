"""The per-rank entry: the epoch loop one training process runs, whoever hosts it (a local rank, a Ray Train
worker, a Tune trial's own actor: `local_host.py`, `ray_worker.py`, `cnnray/tune/trial.py`). No Ray import:
the host hands in a `LoopSession` that knows its rank, device, data shards, checkpoints and where reports go.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn

from cnnray.config import Config, to_yaml
from cnnray.data import DatasetInfo, MemoryLoader, MixupCutmix, StreamingLoader, build_transforms, load_arrays
from cnnray.errors import ConfigError, NonFiniteLossError, StorageFullError
from cnnray.loop.determinism import enable_determinism, seed_epoch
from cnnray.loop.engine import Engine
from cnnray.models.from_config import build_model
from cnnray.run.checkpoint_files import BEST_FILE, CONFIG_FILE, HISTORY_KEY, META_FILE, STATE_FILE
from cnnray.run.cost import COST_KEY, CostMeter, CostTotals, over_budget
from cnnray.run.failures import is_storage_full, storage_full_error, tree_bytes
from cnnray.run.init_state import initial_model, teacher_model
from cnnray.run.loop_config import LoopConfig
from cnnray.run.test_hooks import FAIL_AT_EPOCH, FAULT_AT_STEP, NAN_AT_STEP
from cnnray.tracking.epoch_logger import scalar_metrics


class LoopSession(Protocol):
    """What the loop needs from the process that hosts it."""

    rank: int
    world: int
    device: torch.device

    def resume_checkpoint(self) -> Any | None:
        """This run's own latest checkpoint (an object with `as_directory()`), or None."""

    def dataset_shard(self, name: str) -> Any:
        """This process's streaming shard `name` (a Ray Data iterator); only for loader_kind=streaming."""

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        """One epoch's metrics, with the directory of its checkpoint (rank 0, when one was written)."""

    # Optional: `stage_checkpoint() -> Path`, a fresh folder on the checkpoints' own filesystem that the
    # host renames into place on report (else a system temp folder the host copies from), and
    # `latest_checkpoint() -> str | None`, named in a full-disk error.


def _fail_once(batches: Iterable, marker: Path, rank: int) -> Iterator:
    """Test hook (CNNRAY_TEST_FAIL_AT_EPOCH): the process dies half-way through the epoch, once per run (a real crash)."""
    items = list(batches) if not hasattr(batches, "__len__") else batches
    half = max(1, len(items) // 2)
    for i, item in enumerate(items):
        if i == half and not marker.exists():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(f"rank {rank} killed itself at batch {i}\n")
            os._exit(1)
        yield item


def _fault_at_step(batches: Iterable, engine: Engine, spec: str, marker: Path) -> Iterator:
    """Test hook (CNNRAY_TEST_FAULT_AT_STEP=KIND@STEP, rank 1): at global step STEP this process is SIGKILLed on
    every attempt (the out-of-memory killer's way), aborts natively once, or raises a ConfigError every time."""
    kind, step = spec.split("@")[0], int(spec.split("@")[1])
    for item in batches:
        if engine.global_step >= step:
            if kind == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            elif kind == "config":
                raise ConfigError("model.test_fault: injected bad input found inside a worker")
            elif not marker.exists():
                marker.write_text("aborted\n")
                os.abort()
        yield item


def _save_checkpoint(directory: Path, state: dict[str, Any], best: dict[str, Any] | None, meta: dict[str, Any],
                     cfg: Config) -> None:
    # Through file objects we open: torch's own writer turns ENOSPC into an "unexpected pos" RuntimeError,
    # Python's file keeps the OSError (as the error's context) that says the disk is full.
    with open(directory / STATE_FILE, "wb") as f:
        torch.save(state, f)
    if best is not None:
        with open(directory / BEST_FILE, "wb") as f:
            torch.save(best, f)
    (directory / META_FILE).write_text(json.dumps(meta))
    (directory / CONFIG_FILE).write_text(to_yaml(cfg))


def _load_checkpoint(d: Path, engine: Engine, device: torch.device) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    # The driver checked this checkpoint before starting; a failure here still names the file.
    path = d / STATE_FILE
    try:
        engine.load_state_dict(torch.load(path, map_location=device, weights_only=True))
        path = d / BEST_FILE
        best = torch.load(path, map_location="cpu", weights_only=True) if path.exists() else None
        path = d / META_FILE
        return best, json.loads(path.read_text())
    except Exception as e:  # noqa: BLE001
        raise RuntimeError(f"cannot resume from {path}: {type(e).__name__}: {e}") from e


def _write_checkpoint(session: LoopSession, engine: Engine, best: dict[str, Any] | None, meta: dict[str, Any],
                      cfg: Config, metrics: dict[str, Any]) -> StorageFullError | None:
    """Write rank 0's checkpoint and report it; a full disk is returned (the partial folder removed), not raised."""
    state = engine.state_dict()
    stage = getattr(session, "stage_checkpoint", None)
    directory = stage() if stage is not None else Path(tempfile.mkdtemp(prefix="cnnray-ckpt-"))
    try:
        _save_checkpoint(directory, state, best, meta, cfg)
        session.report(metrics, directory)
    except Exception as e:
        if not is_storage_full(e):
            raise
        latest = getattr(session, "latest_checkpoint", lambda: None)()
        # Where the report copies the checkpoint to (a Tune trial's storage folder), when not the staged folder.
        destination = getattr(session, "checkpoint_destination", None)
        target = Path(destination()) / "checkpoint" if destination is not None else directory
        return storage_full_error(target, tree_bytes(state) + tree_bytes(best), latest)
    finally:
        shutil.rmtree(directory, ignore_errors=True)  # a staged folder is renamed away on report; a partial one goes
    return None


def _agree(failure: Exception | None, rank: int, world: int, device: torch.device) -> str | None:
    """Rank 0's checkpoint failure, made known to every rank so that all of them end the run together (a
    rank left waiting in the next epoch's all-reduce would look like a hang, then a fault to retry)."""
    if world == 1:
        return str(failure) if failure is not None else None

    flag = torch.tensor([1 if failure is not None else 0], device=device)
    dist.broadcast(flag, src=0)
    if not int(flag.item()):
        return None
    return str(failure) if rank == 0 else "rank 0 could not write its checkpoint"


def _sum_over_ranks(device: torch.device) -> Any:
    """A list of floats summed over every rank (one small all-reduce; gloo on CPU, nccl on a GPU)."""

    def reduce(values: list[float]) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()

    return reduce


def _apply_optim_config(optimizer: torch.optim.Optimizer, cfg: Config) -> None:
    """Weight decay and momentum from this run's config: a loaded optimizer state carries the source run's
    (PBT perturbs them); the lr needs nothing, the schedule recomputes it from optim.lr."""
    for group in optimizer.param_groups:
        if not str(group.get("name", "")).endswith("_no_decay"):
            group["weight_decay"] = cfg.optim.weight_decay
        if "momentum" in group and cfg.optim.name == "sgd":
            group["momentum"] = cfg.optim.momentum


def _loaders(cfg: Config, info: DatasetInfo, loader_kind: str, session: LoopSession,
             arrays: tuple | None) -> tuple[Any, Any, int]:
    train_tf, eval_tf = build_transforms(cfg.data, info)
    bs, rank, world, device = cfg.train.batch_size, session.rank, session.world, session.device
    if loader_kind == "memory":
        train_x, train_y, val_x, val_y = arrays if arrays is not None else load_arrays(cfg.data)
        train = MemoryLoader(train_x, train_y, bs, rank=rank, world_size=world, seed=cfg.train.seed,
                             shuffle=True, drop_last=True, device=device, transform=train_tf)
        val = MemoryLoader(val_x, val_y, bs * 2, rank=rank, world_size=world, shuffle=False,
                           drop_last=False, device=device, transform=eval_tf)
        return train, val, len(train)
    train = StreamingLoader(session.dataset_shard("train"), bs, device=device, transform=train_tf, drop_last=True)
    val = StreamingLoader(session.dataset_shard("val"), bs * 2, device=device, transform=eval_tf, drop_last=False)
    return train, val, max(1, info.num_train // (bs * world))


def _build_engine(lc: LoopConfig, session: LoopSession, steps_per_epoch: int) -> Engine:
    """The model as the plan says (reshaped, initial weights, QAT), wrapped for DDP, with its teacher if any."""
    cfg, info, world, device = lc.cfg, lc.info, session.world, session.device
    aug = cfg.data.augment
    mix = MixupCutmix(aug.mixup_alpha, aug.cutmix_alpha, aug.mix_prob, info.num_classes,
                      label_smoothing=cfg.train.label_smoothing)

    def wrap(m: nn.Module) -> nn.Module:
        if world == 1:
            return m
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(m, device_ids=ids)

    model = initial_model(build_model(cfg, info.num_classes, info.channels), lc.init, info.class_names)
    engine = Engine(model, cfg, steps_per_epoch=steps_per_epoch, num_classes=info.num_classes, device=device,
                    wrap=wrap, mixup=mix if mix.active else None, nan_at_step=lc.test_hooks.get(NAN_AT_STEP))
    engine.on_first_step = getattr(session, "on_first_step", None)
    if hasattr(session, "engine"):  # a local host reads the step a rank failed at (see failures.py)
        session.engine = engine
    teacher = teacher_model(lc.init, device)
    if teacher is not None:
        engine.teacher, engine.distill_temperature, engine.distill_alpha = teacher
    return engine


def _restore(engine: Engine, session: LoopSession, start: Any | None, cfg: Config) -> tuple[dict | None, dict]:
    """(best weights, meta) of the checkpoint this rank continues from: the run's own latest (Ray Train's
    resume), else `start` (train.resume_from, a Tune restore: its state, this run's config); none: (None, {})."""
    checkpoint = session.resume_checkpoint()
    from_start = checkpoint is None and start is not None
    checkpoint = start if from_start else checkpoint
    if checkpoint is None:
        return None, {}
    with checkpoint.as_directory() as d:
        best, meta = _load_checkpoint(Path(d), engine, session.device)
    if from_start:
        _apply_optim_config(engine.optimizer, cfg)
    return best, meta


def _epoch_batches(lc: LoopConfig, engine: Engine, loader: Any, epoch: int, rank: int, world: int) -> Iterable:
    """This epoch's batches, with cnnray's own fault injection wrapped around them when a test asks for it."""
    hooks, marker = lc.test_hooks, Path(lc.run_dir) / ".fail_marker"
    batches: Iterable = loader
    if hooks.get(FAIL_AT_EPOCH) == epoch and rank == min(1, world - 1):
        batches = _fail_once(loader, marker, rank)
    if hooks.get(FAULT_AT_STEP) and rank == 1:
        batches = _fault_at_step(batches, engine, str(hooks[FAULT_AT_STEP]), marker.with_name(".abort_marker"))
    return batches


def _best_of(engine: Engine, val: dict[str, Any], metrics: dict[str, Any], epoch: int, rank: int,
             best: dict | None, meta: dict) -> tuple[dict | None, dict]:
    """(best weights, meta) after this epoch: replaced when it is the best so far (weights on rank 0 only)."""
    if not val.get("is_best"):
        return best, meta
    meta = {"best_epoch": epoch, "best_metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
            "confusion_matrix": val.get("confusion_matrix"), "weights": val.get("weights", "raw")}
    if rank == 0:
        best = {k: v.detach().cpu().clone() for k, v in engine.weights_state(val.get("weights", "raw")).items()}
        if hasattr(engine.module, "plain_state"):  # QAT: the best model is the architecture's fp32 weights
            best = engine.module.plain_state(best)
    return best, meta


def run_loop(lc: LoopConfig, session: LoopSession, *, arrays: tuple | None = None, start: Any | None = None) -> None:
    """Train as `lc` says: rank 0 writes checkpoints, every rank reports each epoch. `arrays`: the data set
    already in memory (train_x, train_y, val_x, val_y), so that a host running many trials loads it once;
    `start`: the checkpoint (an object with `as_directory()`) the host opened from `lc.init_checkpoint`."""
    started = time.time()
    cfg, rank, world, device = lc.cfg, session.rank, session.world, session.device
    # What the run uses from here on (CPU-seconds of this process, or wall x GPUs), on top of its checkpoint's.
    meter = CostMeter(CostTotals(), float(cfg.scaling.gpus_per_worker) if device.type == "cuda" else 0.0)
    if lc.threads:
        torch.set_num_threads(int(lc.threads))
    if cfg.train.deterministic:
        enable_determinism()
    torch.manual_seed(cfg.train.seed)  # same initial weights on every rank (DDP also broadcasts)
    train_loader, val_loader, steps_per_epoch = _loaders(cfg, lc.info, lc.loader_kind, session, arrays)
    data_ready = time.time()
    engine = _build_engine(lc, session, steps_per_epoch)
    model_ready = time.time()
    best, meta = _restore(engine, session, start, cfg)
    # Every epoch's scalars so far, in each checkpoint: the driver is killed between a checkpoint landing and
    # MLflow logging its epochs at times, and a resume logs from here what MLflow never received.
    history: dict[str, dict[str, float]] = dict(meta.pop(HISTORY_KEY, None) or {})
    meter.prior = CostTotals.from_meta(meta.pop(COST_KEY, None))  # earlier attempts' (the same on every rank)
    reduce = _sum_over_ranks(device)
    startup_sent, epochs = False, cfg.train.epochs
    for epoch in range(engine.epoch, epochs):
        train_loader.set_epoch(epoch)
        meter.training_starts()
        if cfg.train.deterministic:
            seed_epoch(cfg.train.seed, epoch, rank)
        try:
            with meter.timing("train_s"):
                train_metrics = engine.train_epoch(_epoch_batches(lc, engine, train_loader, epoch, rank, world))
        except NonFiniteLossError as e:
            # Deterministic: retrying would fail the same way, so end the run instead of raising into
            # the host's failure policy; no checkpoint is written from these weights.
            session.report({"epoch": epoch, "error": str(e), "done": True}, None)
            return
        val_start = time.perf_counter()
        with meter.timing("val_s"):
            val = engine.validate_and_select(lambda: val_loader)
        val["val_time_s"] = time.perf_counter() - val_start
        stop = engine.should_stop
        meter.add("images", round(train_metrics.get("images_per_s", 0.0) * train_metrics.get("epoch_time_s", 0.0)))
        totals = meter.epoch_end(reduce, world)  # all-reduced: every rank takes the same budget decision
        budget_stop = over_budget(totals, cfg.train.budget_device_hours) and not stop and epoch + 1 < epochs
        done = stop or budget_stop or epoch + 1 == epochs or epoch + 1 == cfg.train.stop_after_epochs
        skip = {"confusion_matrix", "epoch", "should_stop", "best_epoch", "is_best"}
        metrics = {**train_metrics, **{k: v for k, v in val.items() if k not in skip}, "epoch": epoch,
                   "images_per_s": train_metrics.get("images_per_s", 0.0) * world, "world_size": world, "done": done,
                   "stopped_early": bool(stop and epoch + 1 < epochs)}
        if engine.first_step_at is not None and not startup_sent:
            # Wall clock (the driver's clock too, on one machine) of this process's start-up phases, once.
            metrics["startup"] = {"worker_loop": started, "data": data_ready, "model": model_ready,
                                  "first_step": engine.first_step_at}
            startup_sent = True
        best, meta = _best_of(engine, val, metrics, epoch, rank, best, meta)
        metrics.update(totals.metrics())  # after the best epoch's metrics: cost says nothing about the model
        if budget_stop:
            metrics["end_reason"] = "budget"
        history[str(epoch)] = scalar_metrics(metrics)
        write = done or (epoch + 1) % cfg.train.checkpoint_every == 0
        checkpoint_start = time.perf_counter()
        failure = None
        if write and rank == 0:
            failure = _write_checkpoint(session, engine, best, {**meta, "epoch": epoch, HISTORY_KEY: history,
                                                                   COST_KEY: totals.to_meta(meter.kind)}, cfg,
                                        metrics)
        else:
            session.report(metrics, None)
        fatal = _agree(failure, rank, world, device) if write else None
        if write:  # rank 0 writing, the others waiting for it: counted in the next epoch's totals
            meter.add("checkpoint_s", time.perf_counter() - checkpoint_start)
        if fatal is not None:
            # Not a worker fault: a restart would fill the same disk. The run ends FAILED now, keeping the
            # checkpoints that were written whole.
            session.report({"epoch": epoch, "error": fatal, "done": True, "fatal": True}, None)
            return
        if done:  # early stopping, or train.stop_after_epochs
            break
