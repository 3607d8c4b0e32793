"""The Tune trial driver: the trial's Config -> a TorchTrainer (V2) -> each epoch relayed to Tune with a checkpoint.

Ray Train V2 under Tune: the trial function builds and fits a TorchTrainer; `ray.train.report`
cannot be called here. Training runs in a helper thread while this (the trial's) thread reports to
Tune, so a scheduler's stop (a SystemExit raised inside `ray.tune.report`) ends the trial here; the
Train controller and workers, owned by this trial's actor, end with it.

A restart (PBT exploit, or a resumed search) starts from `ray.tune.get_checkpoint()`: a fresh Train
run is given that directory as `init_checkpoint`, so Tune's checkpoint, not Train's, is the truth.
"""

from __future__ import annotations

import json
import shutil
import threading
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import ray.tune
from ray.util.queue import Empty, Queue

from cnnray.config import config_hash, to_yaml
from cnnray.ray_compat import add_trainable_mixin
from cnnray.train.trainer import EpochSink, PreparedRun, ReportCallback, build_trainer
from cnnray.tune.abort import AbortTrainOnStop, forget_controller, set_controller
from cnnray.tune.forward import ForwardToTune, ShareController
from cnnray.tune.resolve import sampled_values, trial_config
from cnnray.tune.space import SearchSpace

SOURCE_FILE = "tune_source.json"  # in every Tune checkpoint: which trial and epoch wrote it


@dataclass
class TrialSetup:
    """What every trial needs, validated once on the driver (picklable; passed with tune.with_parameters)."""

    prep: PreparedRun  # prep.cfg is the trials' base config
    space: SearchSpace
    tune_name: str
    experiment_path: str
    tracking_uri: str | None
    parent_run_id: str | None


def child_run_name(tune_name: str, trial_id: str) -> str:
    """The MLflow run name of a trial (also how a resumed search finds it again)."""
    return f"{tune_name}/{trial_id}"


def _checkpoint_uri(checkpoint: Any, experiment_path: str) -> str:
    """A path the Train workers can open: the filesystem path, with the storage's scheme if remote."""
    if "://" in experiment_path:
        return f"{experiment_path.split('://', 1)[0]}://{checkpoint.path}"
    return checkpoint.path


def _source_of(checkpoint: Any) -> dict[str, Any]:
    if checkpoint is None:
        return {}
    with checkpoint.as_directory() as d:
        f = Path(d) / SOURCE_FILE
        return json.loads(f.read_text()) if f.exists() else {}


def _attach_run(setup: TrialSetup, cfg, trial_id: str, restored_from: str | None):
    """Create the trial's child run, or re-attach it (PBT restart, resumed search): never a duplicate."""
    from cnnray import tracking
    from cnnray.tracking.runs import log_text, metric_history, set_tags

    if setup.tracking_uri is None:
        return None, None
    name = child_run_name(setup.tune_name, trial_id)
    ctx = tracking.start_run(cfg, name, uri=setup.tracking_uri, resume=True, parent_run_id=setup.parent_run_id,
                             tags={"cnnray.trial_id": trial_id, "cnnray.tune_run": setup.tune_name,
                                   "cnnray.data_fingerprint": setup.prep.info.fingerprint,
                                   "cnnray.config_hash": config_hash(cfg)})
    if restored_from:
        # PBT changed this trial's config; params are immutable in MLflow, so the new config is an artifact.
        set_tags(ctx, {"cnnray.restored_from": restored_from})
        log_text(ctx, to_yaml(cfg), f"configs/from_{restored_from.replace('@', '_epoch')}.yaml")
    logger = tracking.EpochLogger(ctx.uri, ctx.run_id)
    # Epochs logged before a restart stay as they were: the first value of a step wins.
    logger.logged = {step for step, _ in metric_history(ctx, "train_loss")}
    return ctx, logger


def tune_metrics(metrics: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """A Train report as Tune sees it: scalars and strings; `done` renamed (Tune reserves it)."""
    out = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) and k != "done"}
    out.update(train_done=bool(metrics.get("done")), epochs_done=int(metrics["epoch"]) + 1, **extra)
    return out


def _fit(trainer, box: dict[str, Any]) -> None:
    try:
        box["result"] = trainer.fit()
    except BaseException as e:  # noqa: BLE001 - re-raised in the trial thread
        box["error"] = e


def _relay(queue: Queue, fit_thread: threading.Thread, trial_id: str, extra: dict[str, Any]) -> str | None:
    """Report each epoch to Tune (with its staged checkpoint) until training ends; the run's error, if any."""
    error = None
    while True:
        try:
            item = queue.get(timeout=0.5)
        except Empty:
            if not fit_thread.is_alive() and queue.empty():
                return error
            continue
        if "controller" in item:
            set_controller(item["controller"])
            continue
        metrics, staged = item["metrics"], item["checkpoint_dir"]
        try:
            if metrics.get("error"):
                error = metrics["error"]  # a non-finite loss: no metrics to rank by, the trial fails
                continue
            checkpoint = None
            if staged:
                (Path(staged) / SOURCE_FILE).write_text(json.dumps({"trial_id": trial_id, "epoch": metrics["epoch"]}))
                checkpoint = ray.tune.Checkpoint.from_directory(staged)
            ray.tune.report(tune_metrics(metrics, extra), checkpoint=checkpoint)  # copies the checkpoint
        finally:
            if staged:
                shutil.rmtree(staged, ignore_errors=True)


def run_trial(config: dict[str, Any], setup: TrialSetup) -> None:
    """Tune function trainable: train one trial, report every epoch (and its checkpoint) to Tune."""
    trial_id = ray.tune.get_context().get_trial_id()
    cfg = trial_config(setup.prep.cfg, setup.space, sampled_values(config))
    restore = ray.tune.get_checkpoint()
    source = _source_of(restore)
    other = source.get("trial_id") not in (None, trial_id)
    restored_from = f"{source['trial_id']}@{source['epoch']}" if other else None
    ctx, logger = _attach_run(setup, cfg, trial_id, restored_from)
    if source and int(source["epoch"]) + 1 >= cfg.train.epochs:
        return  # restored at the last epoch (PBT clone, resumed search): nothing left to train
    name = f"{trial_id}-{uuid.uuid4().hex[:6]}"  # a fresh Train run per start: Tune's checkpoint is the state
    storage = f"{setup.experiment_path.rstrip('/')}/train"
    prep = replace(setup.prep, cfg=cfg, run_name=name, storage_path=storage, run_dir=f"{storage}/{name}", resume=False)
    queue = Queue(maxsize=1, actor_options={"num_cpus": 0})
    # MLflow first: a scheduler's stop can kill this trial while ForwardToTune waits on Tune.
    callbacks = [ReportCallback(EpochSink(logger, None))] if logger is not None else []
    callbacks += [ForwardToTune(queue), ShareController(queue)]
    extra_loop = {"init_checkpoint": _checkpoint_uri(restore, setup.experiment_path)} if restore else {}
    trainer = build_trainer(prep, callbacks, extra_loop_config=extra_loop)
    extra: dict[str, Any] = {"mlflow_run_id": ctx.run_id if ctx else ""}
    if restored_from:
        extra["restored_from"] = restored_from
    box: dict[str, Any] = {}
    thread = threading.Thread(target=_fit, args=(trainer, box), daemon=True, name="cnnray-trial-fit")
    thread.start()
    error = _relay(queue, thread, trial_id, extra)
    thread.join()
    forget_controller()
    if "error" in box:
        raise box["error"]
    if error:
        raise RuntimeError(error)


add_trainable_mixin(run_trial, AbortTrainOnStop)  # Tune builds the trainable class with this mixin
