"""The MLflow run of a training run or of a search, opened one way whoever opens it (the local host, the Ray
Train host, `cnnray tune`): started (or re-attached on resume) with its tags, watched at once (a SIGKILL of
this process from then on marks it KILLED), then the slower parts (config params, resume tags)."""

from __future__ import annotations

from typing import Any

from cnnray import tracking
from cnnray.cluster.local_ray import watch_mlflow_run
from cnnray.config import Config, config_hash
from cnnray.run.outcome import resume_tags
from cnnray.run.plan import PreparedRun
from cnnray.run.resume_check import ResumePoint, epoch_history
from cnnray.tracking.epoch_logger import log_missing_epochs


def open_watched_run(cfg: Config, name: str, *, resume: bool, tags: dict[str, str]) -> Any:
    """Start or re-attach run `name`, watch it, and log the config as params when the run is new."""
    uri = tracking.resolve_tracking_uri(cfg.tracking.uri)
    ctx = tracking.start_run(cfg, name, uri=uri, resume=resume, log_config=False, tags=tags)
    watch_mlflow_run(ctx.uri, ctx.run_id)  # before anything slower
    if ctx.created:  # a resume re-attaches to the params it logged
        tracking.runs.log_config_params(ctx, cfg)
    return ctx


def open_training_run(prep: PreparedRun, point: ResumePoint | None, prior_status: str | None, runner: str) -> Any:
    """The MLflow run of one training run (`runner`: local or ray, recorded as tag cnnray.runner)."""
    cfg = prep.cfg
    ctx = open_watched_run(cfg, prep.run_name, resume=prep.resume, tags={"cnnray.data_fingerprint": prep.info.fingerprint,
                                 "cnnray.config_hash": config_hash(cfg), "cnnray.runner": runner,
                                 **(prep.init_source.tags() if prep.init_source is not None else {}),
                                 **prep.lineage_tags})
    if point is not None:
        tracking.runs.set_tags(ctx, resume_tags(point, prior_status, cfg.train.epochs))
        if point.checkpoint_dir:  # epochs checkpointed but never logged: the driver was killed between, or
            # tracking was off then; the run's curve is whole either way
            log_missing_epochs(ctx.uri, ctx.run_id, epoch_history(point.checkpoint_dir))
    return ctx
