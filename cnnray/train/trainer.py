"""Driver side of `cnnray train`: validate, start Ray, build the TorchTrainer, track in MLflow, register."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

import ray
import ray.train
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig, UserCallback
from ray.train.torch import TorchConfig, TorchTrainer

from cnnray.config import Config, config_hash
from cnnray.data import build_streaming_datasets
from cnnray.errors import ConfigError
from cnnray.ray_session import GracefulStop, ensure_ray
from cnnray.train import progress
from cnnray.train.build import build_model
from cnnray.train.claim import RunClaim
from cnnray.train.prepare import PreparedRun, prepare_run
from cnnray.train.resume_check import ResumePoint, check_resume
from cnnray.train.test_hooks import read_test_hooks
from cnnray.train.worker import BEST_FILE, META_FILE, train_loop_per_worker

log = logging.getLogger("cnnray")


def use_gpu(cfg: Config) -> bool:
    """Configured, or auto: GPUs present in the cluster."""
    if cfg.scaling.use_gpu is not None:
        return cfg.scaling.use_gpu
    return ray.cluster_resources().get("GPU", 0) > 0


class ReportCallback(UserCallback):
    """Runs in the Ray Train controller: feeds each epoch to `on_epoch` (MLflow, console progress)."""

    def __init__(self, on_epoch: Callable[[dict[str, Any], bool], None]) -> None:
        self.on_epoch = on_epoch

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
        if metrics:
            self.on_epoch(metrics[0], checkpoint is not None)


@dataclass
class EpochSink:
    """Picklable epoch handler: MLflow epoch logger plus a queue the driver reads for progress lines."""

    logger: Any | None
    queue: Any | None
    extra: list[Callable[[dict[str, Any], bool], None]] = field(default_factory=list)

    def __call__(self, metrics: dict[str, Any], checkpointed: bool) -> None:
        # Console first: an MLflow round trip (1-2 s on a local SQLite store) would delay the progress line.
        if self.queue is not None:
            try:
                self.queue.put_nowait(dict(metrics))
            except Exception:  # noqa: BLE001 - progress lines are best effort; a lost report must not fail the run
                pass
        if self.logger is not None:
            self.logger.on_report(metrics, checkpointed)
        for fn in self.extra:
            fn(metrics, checkpointed)


def build_trainer(prep: PreparedRun, callbacks: list[UserCallback], *, threads: int | None = None,
                  extra_loop_config: dict[str, Any] | None = None) -> TorchTrainer:
    """The TorchTrainer for a prepared run (also what each Tune trial builds; it adds init_checkpoint)."""
    cfg = prep.cfg
    gpu = use_gpu(cfg)
    resources = {"CPU": cfg.scaling.cpus_per_worker}
    if gpu:
        resources["GPU"] = cfg.scaling.gpus_per_worker
    workers = cfg.scaling.num_workers
    datasets = build_streaming_datasets(cfg.data, prep.info) if prep.loader_kind == "streaming" else None
    loop_config = {
        "cfg": cfg.model_dump(mode="json"), "info": prep.info.__dict__,
        "loader_kind": prep.loader_kind, "run_dir": prep.run_dir,
        "threads": threads or max(1, int(cfg.scaling.cpus_per_worker)),
        "test_hooks": read_test_hooks(),  # cnnray's own fault injection (env vars), not part of the config
        **(extra_loop_config or {}),
    }
    mode = "min" if cfg.train.monitor == "val_loss" else "max"
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        torch_config=TorchConfig(backend="nccl" if gpu else "gloo", timeout_s=cfg.scaling.collective_timeout_s),
        scaling_config=ScalingConfig(num_workers=tuple(workers) if isinstance(workers, (list, tuple)) else workers,
                                     use_gpu=gpu, resources_per_worker=resources),
        run_config=RunConfig(
            name=prep.run_name, storage_path=prep.storage_path, callbacks=callbacks,
            failure_config=FailureConfig(max_failures=cfg.scaling.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.scaling.num_to_keep,
                                               checkpoint_score_attribute=cfg.train.monitor,
                                               checkpoint_score_order=mode),
            worker_runtime_env={"env_vars": {"OMP_NUM_THREADS": str(loop_config["threads"])}},
        ),
        datasets=datasets,
    )


def load_best(checkpoint_dir: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(best weights, meta) from a checkpoint directory, read with weights_only=True."""
    import torch

    d = Path(checkpoint_dir)
    weights = torch.load(d / BEST_FILE, map_location="cpu", weights_only=True)
    return weights, json.loads((d / META_FILE).read_text())


def _check_resume(prep: PreparedRun) -> ResumePoint:
    """The checkpoint this resume will load, opened and checked now (ConfigError names a bad file)."""
    model = build_model(prep.cfg, prep.info.num_classes, prep.info.channels)
    return check_resume(prep.run_dir, prep.cfg.train.resume_from, model)


def _prior_run(prep: PreparedRun, point: ResumePoint | None) -> tuple[str | None, str | None]:
    """(MLflow run id, status) of the run a resume continues; refuses to resume a FINISHED run for nothing."""
    from cnnray import tracking

    cfg = prep.cfg
    if not (prep.resume and cfg.tracking.enabled):
        return None, None
    uri = tracking.resolve_tracking_uri(cfg.tracking.uri)
    run_id = tracking.find_run_by_name(uri, cfg.tracking.experiment, prep.run_name)
    status = tracking.runs.run_status(uri, run_id) if run_id else None
    done = point.epochs_done if point else 0
    if status == "FINISHED" and done >= cfg.train.epochs:
        raise ConfigError(f"run '{prep.run_name}' FINISHED all its {done} epochs; to train it further, resume "
                          f"with train.epochs above {done}")
    return run_id, status


def run_training(cfg: Config, *, verbose: bool = False, on_line: Callable[[str], None] = print,
                 on_report: Callable[[dict[str, Any]], None] | None = None,
                 prepared: PreparedRun | None = None) -> dict[str, Any]:
    """Run `cnnray train` end to end; returns the result object (raises UserInputError on bad input).

    `prepared`: the result of `prepare_run(cfg)` when the caller already checked the input (the
    command does, before importing Ray, so that bad input exits 2 without paying for it).
    """
    t0 = time.time()
    clock = progress.StartupClock()
    prep = prepared or prepare_run(cfg)
    # Claimed before any work and held until the end: a second start under this name exits 2.
    claim = RunClaim(prep.run_dir).acquire(new=not prep.resume)
    try:
        point = _check_resume(prep) if prep.resume else None
        prior_status = _prior_run(prep, point)[1]
        ensure_ray(cfg.run.address, verbose)
        clock.mark("ray_ready")
        return _train(prep, point, prior_status, t0, clock, verbose=verbose, on_line=on_line, on_report=on_report)
    finally:
        claim.release(remove_if_unused=True)


def _train(prep: PreparedRun, point: ResumePoint | None, prior_status: str | None, t0: float,
           clock: progress.StartupClock, *, verbose: bool, on_line: Callable[[str], None],
           on_report: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
    from cnnray import tracking
    from cnnray.jobs.local import unwatch_mlflow_run, watch_mlflow_run
    from cnnray.serve.card import card_for_training
    from cnnray.tracking.finish import finish_training_run

    cfg = prep.cfg
    ctx = None
    if cfg.tracking.enabled:
        uri = tracking.resolve_tracking_uri(cfg.tracking.uri)
        ctx = tracking.start_run(cfg, prep.run_name, uri=uri, resume=prep.resume,
                                 tags={"cnnray.data_fingerprint": prep.info.fingerprint,
                                       "cnnray.config_hash": config_hash(cfg)})
        watch_mlflow_run(ctx.uri, ctx.run_id)
        if point is not None:
            tracking.runs.set_tags(ctx, _resume_tags(point, prior_status, cfg.train.epochs))
    from ray.util.queue import Queue

    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    # On the driver's node: a queue on a worker node would die with that node and take the run along.
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    queue = Queue(actor_options={"num_cpus": 0, "scheduling_strategy": here})
    sink = EpochSink(tracking.EpochLogger(ctx.uri, ctx.run_id) if ctx else None, queue)
    printer = progress.ProgressPrinter(cfg.train.epochs, on_line)
    handlers = [clock, printer] + ([on_report] if on_report is not None else [])
    reader = progress.QueueReader(queue, progress.tee(*handlers))
    status, error, result = "FAILED", None, None
    extra = ({"init_checkpoint": point.checkpoint_dir, "skip_checkpoints": point.skip}
             if point is not None and point.explicit else None)
    interrupt = GracefulStop()
    try:
        with interrupt, reader:
            trainer = build_trainer(prep, [ReportCallback(sink)], extra_loop_config=extra)
            clock.mark("run_started")
            result = trainer.fit()
        # The queue saw every report (an error report comes without a checkpoint); Result.metrics only those
        # that came with a checkpoint, but it is the run's own record if a progress report was lost.
        queued, recorded = reader.last or {}, result.metrics or {}
        last = recorded if recorded.get("done") and not queued.get("error") else (queued or recorded)
        if last.get("error"):
            error = last["error"]
        elif last.get("done") and not last.get("global_step"):
            # Second guard behind check_steps_per_epoch: a model that took no optimizer step is never registered.
            error = "no optimizer step was taken (no full batch on some worker): nothing to register"
        elif last.get("done"):
            status = "FINISHED"
        else:
            status, error = "KILLED", "interrupted"
    except (KeyboardInterrupt, SystemExit):
        status, error = "KILLED", "interrupted"
    except ray.train.TrainingFailedError as e:
        error = f"training failed: {e}"
    except Exception as e:  # noqa: BLE001 - any failure must still close the MLflow run
        error = f"{type(e).__name__}: {e}"
    finally:
        if ctx is not None and status != "FINISHED":
            _close_unfinished(ctx, status, error, prior_status)
            unwatch_mlflow_run()
        try:
            queue.shutdown()
        except Exception:  # noqa: BLE001
            pass
    out: dict[str, Any] = {"status": status, "run_name": prep.run_name, "experiment": cfg.tracking.experiment,
                           "run_id": ctx.run_id if ctx else None, "run_dir": prep.run_dir,
                           "loader": prep.loader_kind, "data_fingerprint": prep.info.fingerprint,
                           "startup_s": clock.seconds()}
    if verbose:
        on_line(clock.line())
    if status != "FINISHED":
        out.update(error=error, wall_seconds=round(time.time() - t0, 1))
        return out
    assert result is not None and result.checkpoint is not None
    with result.checkpoint.as_directory() as d:
        weights, meta = load_best(d)
    out.update(best_epoch=meta.get("best_epoch"), best_metrics=meta.get("best_metrics", {}),
               weights=meta.get("weights"), checkpoint=result.checkpoint.path,
               epochs_run=int((result.metrics or {}).get("epoch", -1)) + 1,
               stopped_early=bool((result.metrics or {}).get("stopped_early")))
    if ctx is not None:
        try:
            out.update(finish_training_run(ctx, cfg, prep, weights, meta,
                                           make_card=partial(card_for_training, cfg, prep.info)))
            tracking.end_run(ctx, "FINISHED")
        except BaseException:
            tracking.end_run(ctx, "FAILED")
            raise
        finally:
            unwatch_mlflow_run()
    out["wall_seconds"] = round(time.time() - t0, 1)
    return out


def _resume_tags(point: ResumePoint, prior_status: str | None, epochs: int) -> dict[str, str]:
    tags = {"cnnray.resumed_from": f"{(point.checkpoint_dir or 'start').rsplit('/', 1)[-1]} (after epoch "
                                   f"{point.epochs_done})"}
    if prior_status == "FINISHED":
        tags["cnnray.resumed_after_finish"] = f"training {point.epochs_done} -> {epochs} epochs"
    return tags


def _close_unfinished(ctx: Any, status: str, error: str | None, prior_status: str | None) -> None:
    """End the run FAILED/KILLED; a run that had FINISHED before this resume keeps FINISHED (its model stands)."""
    from cnnray import tracking

    if prior_status == "FINISHED":
        tracking.runs.set_tags(ctx, {"cnnray.resume_failed": f"{status}: {error}"[:5000]})
        tracking.end_run(ctx, "FINISHED")
    else:
        tracking.end_run(ctx, status)


def format_train_summary(r: dict[str, Any]) -> str:
    """What a person reads after `cnnray train`: status, best epoch and metrics, where the model went."""
    if r["status"] != "FINISHED":
        return f"training {r['status']}: {r.get('error')}  (run {r['run_name']}, MLflow run {r.get('run_id')})"
    m = r.get("best_metrics", {})
    lines = [
        f"training FINISHED in {r['wall_seconds']:.0f}s: best epoch {int(r['best_epoch']) + 1} "
        f"val_acc {100 * m.get('val_acc', 0):.2f}% val_loss {m.get('val_loss', float('nan')):.4f} "
        f"({r.get('weights', 'raw')} weights)",
        f"run {r['run_name']}  MLflow run {r.get('run_id')}  checkpoint {r.get('checkpoint')}",
    ]
    if r.get("version"):
        lines.append(f"registered {r['registered_name']} version {r['version']}"
                     + (f" as @{r['alias']}" if r.get("alias") else "") + f"  ({r['model_uri']})")
    return "\n".join(lines)
