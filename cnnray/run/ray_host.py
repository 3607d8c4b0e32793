"""`cnnray train` as a Ray Train run (scaling.runner=ray): start Ray, build the TorchTrainer, relay its epochs."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

import ray
import ray.train
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig, UserCallback
from ray.train.torch import TorchConfig, TorchTrainer
from ray.util.queue import Queue
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from cnnray import tracking
from cnnray.cluster.ray_session import GracefulStop, ensure_ray
from cnnray.config import Config
from cnnray.data import build_streaming_datasets
from cnnray.run import progress
from cnnray.run.finish import finish_run
from cnnray.run.mlflow_run import open_training_run
from cnnray.run.outcome import outcome_of
from cnnray.run.plan import PreparedRun, make_loop_config
from cnnray.run.ray_worker import train_loop_per_worker
from cnnray.run.resume_check import ResumePoint

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
                  init_checkpoint: str | None = None, skip_checkpoints: tuple[str, ...] = ()) -> TorchTrainer:
    """The TorchTrainer for a prepared run (also what each Tune trial builds; it adds init_checkpoint)."""
    cfg = prep.cfg
    gpu = use_gpu(cfg)
    resources = {"CPU": cfg.scaling.cpus_per_worker}
    if gpu:
        resources["GPU"] = cfg.scaling.gpus_per_worker
    workers = cfg.scaling.num_workers
    datasets = build_streaming_datasets(cfg.data, prep.info) if prep.loader_kind == "streaming" else None
    plan = make_loop_config(prep, threads, init_checkpoint=init_checkpoint, skip_checkpoints=skip_checkpoints)
    mode = cfg.train.monitor_mode
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"plan": plan},  # Ray Train hands a dict to the worker function: the plan rides in it
        torch_config=TorchConfig(backend="nccl" if gpu else "gloo", timeout_s=cfg.scaling.collective_timeout_s),
        scaling_config=ScalingConfig(num_workers=tuple(workers) if isinstance(workers, (list, tuple)) else workers,
                                     use_gpu=gpu, resources_per_worker=resources),
        run_config=RunConfig(
            name=prep.run_name, storage_path=prep.storage_path, callbacks=callbacks,
            failure_config=FailureConfig(max_failures=cfg.scaling.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.scaling.num_to_keep,
                                               checkpoint_score_attribute=cfg.train.monitor,
                                               checkpoint_score_order=mode),
            worker_runtime_env={"env_vars": {"OMP_NUM_THREADS": str(plan.threads)}},
        ),
        datasets=datasets,
    )


def train_on_ray(prep: PreparedRun, point: ResumePoint | None, prior_status: str | None, t0: float,
                 clock: progress.StartupClock, *, verbose: bool, on_line: Callable[[str], None],
                 on_report: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
    """The run as a Ray Train run (scaling.runner=ray): MLflow from the Train controller, progress via a queue."""
    cfg = prep.cfg
    ensure_ray(cfg.run.address, verbose)
    clock.mark("ray_ready")
    ctx = None
    if cfg.tracking.enabled:
        ctx = open_training_run(prep, point, prior_status, "ray")


    # On the driver's node: a queue on a worker node would die with that node and take the run along.
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    queue = Queue(actor_options={"num_cpus": 0, "scheduling_strategy": here})
    sink = EpochSink(tracking.EpochLogger(ctx.uri, ctx.run_id) if ctx else None, queue)
    printer = progress.ProgressPrinter(cfg.train.epochs, on_line)
    handlers = [clock, printer] + ([on_report] if on_report is not None else [])
    reader = progress.QueueReader(queue, progress.tee(*handlers))
    status, error, result, last = "FAILED", None, None, {}
    # Ray hands back its own latest checkpoint; any other start point (train.resume_from, a checkpoint the
    # local runner wrote after Ray's) goes in explicitly, and Ray's is skipped.
    explicit = point is not None and point.checkpoint_dir and not point.ray_latest
    start = {"init_checkpoint": point.checkpoint_dir, "skip_checkpoints": tuple(point.skip)} if explicit else {}
    try:
        with GracefulStop(), reader:
            trainer = build_trainer(prep, [ReportCallback(sink)], **start)
            clock.mark("run_started")
            result = trainer.fit()
        # The queue saw every report (an error report comes without a checkpoint); Result.metrics only those
        # that came with a checkpoint, but it is the run's own record if a progress report was lost.
        queued, recorded = reader.last or {}, result.metrics or {}
        last = recorded if recorded.get("done") and not queued.get("error") else (queued or recorded)
        status, error = outcome_of(last)
    except (KeyboardInterrupt, SystemExit):
        status, error = "KILLED", "interrupted"
    except ray.train.TrainingFailedError as e:
        error = f"training failed: {e}"
    except Exception as e:  # noqa: BLE001 - any failure must still close the MLflow run
        error = f"{type(e).__name__}: {e}"
    finally:
        try:
            queue.shutdown()
        except Exception:  # noqa: BLE001
            pass
    checkpoint = result.checkpoint.path if result is not None and result.checkpoint is not None else None
    return finish_run(prep, ctx, status, error, prior_status, checkpoint, last, clock, t0,
                      verbose=verbose, on_line=on_line)
