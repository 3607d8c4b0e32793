"""Everything that runs for one trial, in its Tune actor. Two ways to train it:

- In the actor (`run_trial_in_actor`, in-memory data): the loop of `cnnray/run/rank_loop.py` runs right here and
  reports each epoch to Tune itself. No controller or worker group to start per trial, so a trial costs about
  its epochs; the actor holds the trial's CPUs/GPUs, and is reused by the next trial. With
  tune.trial_workers > 1 it is DDP rank 0 of a group of rank actors it keeps across trials (`trial_group.py`).
  The data set is put in the object store once by the driver; every trial and rank maps it from there.
- As a Ray Train run (`run_trial`, any number of DDP workers, streaming data): below.

The trial's Config -> a TorchTrainer (V2) -> each epoch relayed to Tune with a checkpoint; and the Train
run aborted when Tune stops the trial.

Ray Train V2 under Tune: the trial function builds and fits a TorchTrainer; `ray.train.report`
cannot be called here. Training runs in a helper thread while this (the trial's) thread reports to
Tune, so a scheduler's stop (a SystemExit raised inside `ray.tune.report`) ends the trial here; the
Train controller and workers, owned by this trial's actor, end with it.

A restart (PBT exploit, or a resumed search) starts from `ray.tune.get_checkpoint()`: a fresh Train
run is given that directory as `init_checkpoint`, so Tune's checkpoint, not Train's, is the truth.

Train -> Tune handoff (`ForwardToTune`): why not only `TuneReportCallback`: it forwards metrics (and
the checkpoint *path*) but no Tune checkpoint, and PBT can only clone a trial that reported one. So the
trial function itself calls `ray.tune.report(metrics, checkpoint=...)`. The copy is made inside the
Train controller's report handling, because Train may delete that checkpoint (num_to_keep) as soon as
the next report arrives; the controller runs on the trial's node, so a local temporary directory is
visible to both.

Abort on stop (`AbortTrainOnStop`): Tune ends a trial (scheduler stop, PBT pause, Ctrl+C) by calling
the trainable's `stop()` and then removing its actor. The Train controller is owned by that actor and
dies with it, but the placement group holding the Train workers' CPUs/GPUs outlives it (Train's
detached cleaner needs the dashboard's state API); each stop would leak a worker's resources until the
search starves. So the trainable's cleanup, which Tune waits for, first aborts the Train run: workers
stop and their group is removed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import ray
import ray.tune
import torch
from ray.train import UserCallback
from ray.util.queue import Empty, Queue

from cnnray.data import load_arrays
from cnnray.data.uri import path_exists
from cnnray.ray_compat import abort_train_controller, add_trainable_mixin, controller_callback_base, require_written_for
from cnnray.run.loop_config import LoopConfig
from cnnray.run.plan import PreparedRun, make_loop_config
from cnnray.run.rank_loop import run_loop
from cnnray.run.ray_host import EpochSink, ReportCallback, build_trainer
from cnnray.tune.runs import attach_child_run
from cnnray.tune.space import SearchSpace, sampled_values, trial_config
from cnnray.tune.trial_group import arrays_from_store, broadcast_flag, drop_group, trial_group

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
    runner: str = "train"  # "actor": the loop runs in the trial's actor (run_trial_in_actor); "train": a Train run
    test_hooks: dict[str, int] = field(default_factory=dict)  # read on the driver (actors do not see its env)
    shared_data: Any = None  # actor trials: the data set in the object store (share_data), or None
    budget_marker: str | None = None  # with tune.budget_device_hours: the file that says it is spent
    experiment_id: str | None = None  # the MLflow experiment of the parent run (no lookup per trial)
    resumed: bool = False  # a resumed search: a trial's child run may exist already


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


# --- Train -> Tune: runs in the Train controller.


class ForwardToTune(UserCallback):
    """Runs in the Train controller: puts {"metrics", "checkpoint_dir"} on the trial's queue (size 1: backpressure)."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
        if not metrics:
            return
        staged = None
        if checkpoint is not None:
            staged = tempfile.mkdtemp(prefix="cnnray-tune-ckpt-")
            checkpoint.to_directory(staged)
        self.queue.put({"metrics": dict(metrics[0]), "checkpoint_dir": staged})


class ShareController(controller_callback_base()):
    """Runs in the Train controller as it starts: hands its actor handle to the trial (see abort_train_run).

    An internal Ray Train hook (RunConfig accepts any RayTrainCallback): no public callback fires before
    the first report, and a trial can be stopped before it reports.
    """

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def after_controller_start(self, train_run_context) -> None:
        self.queue.put({"controller": ray.get_runtime_context().current_actor})


# --- Abort the Train run when Tune stops the trial.

_ACTIVE: dict[str, Any] = {}  # this trial actor's running Train controller (one trial per actor)


def set_controller(handle: Any) -> None:
    """Remember the Train controller of the trial running in this process."""
    _ACTIVE["controller"] = handle


def forget_controller() -> None:
    """The Train run ended by itself: nothing to abort."""
    _ACTIVE.pop("controller", None)


def abort_train_run(timeout_s: float = 60.0) -> None:
    """Abort the remembered Train run, if any (a finished run ignores it)."""
    handle = _ACTIVE.pop("controller", None)
    if handle is None:
        return
    require_written_for("TrainController.abort")  # outside the try: a version mismatch must not pass silently
    try:
        abort_train_controller(handle, timeout_s)
    except Exception:  # noqa: BLE001 - the controller exits inside abort(); a dead one raises here
        pass


class AbortTrainOnStop:
    """Mixin for Tune's function trainable (via `fn.__mixins__`): abort the Train run, then Tune's cleanup."""

    def cleanup(self) -> None:
        abort_train_run()
        super().cleanup()  # type: ignore[misc]


# --- The trial function.


def tune_metrics(metrics: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """A Train report as Tune sees it: scalars and strings; `done` renamed (Tune reserves it)."""
    out = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) and k != "done"}
    out.update(train_done=bool(metrics.get("done")), epochs_done=int(metrics["epoch"]) + 1, **extra)
    return out


def report_to_tune(metrics: dict[str, Any], extra: dict[str, Any], trial_id: str, checkpoint_dir: Path | None) -> None:
    """One epoch to Tune, with its checkpoint directory (tagged with the trial and epoch that wrote it)."""
    checkpoint = None
    if checkpoint_dir is not None:
        (checkpoint_dir / SOURCE_FILE).write_text(json.dumps({"trial_id": trial_id, "epoch": metrics["epoch"]}))
        checkpoint = ray.tune.Checkpoint.from_directory(checkpoint_dir)
    ray.tune.report(tune_metrics(metrics, extra), checkpoint=checkpoint)  # copies the checkpoint


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
            report_to_tune(metrics, extra, trial_id, Path(staged) if staged else None)
        finally:
            if staged:
                shutil.rmtree(staged, ignore_errors=True)


@dataclass
class TrialStart:
    """One start of a trial in its actor: its config, where it starts from, its MLflow child run."""

    trial_id: str
    cfg: Any
    restore: Any  # Tune's checkpoint to start from, or None
    logger: Any  # the child run's EpochLogger, or None when tracking is off
    extra: dict[str, Any]  # added to every Tune report (mlflow_run_id, restored_from)
    nothing_left: bool  # restored at the last epoch (PBT clone, resumed search)
    child: DeferredChild | None = None  # the child run still being opened (actor trials), or None


class DeferredChild:
    """The trial's child run opened on a thread while the trial loads its data and builds its model: MLflow's
    round trips (create the run, log its params and config) are not on the critical path of a trial's start.
    The first epoch's report waits for it (and fails the trial if the store refused)."""

    def __init__(self, open_run: Callable[[], tuple[Any, Any]]) -> None:
        self._box: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._open, args=(open_run,), daemon=True, name="cnnray-child-run")
        self._thread.start()

    def _open(self, open_run: Callable[[], tuple[Any, Any]]) -> None:
        try:
            self._box["value"] = open_run()
        except BaseException as e:  # noqa: BLE001 - re-raised at the first report
            self._box["error"] = e

    def get(self) -> tuple[Any, Any]:
        """(context, epoch logger), once the run is open."""
        self._thread.join()
        if "error" in self._box:
            raise self._box["error"]
        return self._box["value"]


class DeferredLogger:
    """An EpochLogger that waits for its DeferredChild's run at its first report."""

    def __init__(self, child: DeferredChild) -> None:
        self.child = child

    def on_report(self, metrics: dict[str, Any], checkpointed: bool) -> list[int]:
        return self.child.get()[1].on_report(metrics, checkpointed)


BUDGET_WAIT_S = 900  # a trial started after the budget was spent waits this long at most for Tune to end it


def wait_for_the_search_to_end(timeout_s: float = BUDGET_WAIT_S) -> None:
    """A trial that never reported cannot just return (Tune requires its metric in a final result): it waits,
    spending nothing, until the search's budget stopper ends it with the search; an error after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(0.5)
    raise RuntimeError("tune.budget_device_hours is spent: this trial was not started, and the search did not end")


def start_trial(config: dict[str, Any], setup: TrialSetup, *, defer_run: bool = False) -> TrialStart:
    """The trial's config from Tune's sample, its checkpoint (own or another trial's), its child run (opened on
    a thread with `defer_run`: see DeferredChild)."""
    trial_id = ray.tune.get_context().get_trial_id()
    cfg = trial_config(setup.prep.cfg, setup.space, sampled_values(config))
    if setup.budget_marker and path_exists(setup.budget_marker, key="scaling.storage_path"):
        # Started after tune.budget_device_hours was spent: no MLflow run, no epoch (see cnnray/tune/budget.py).
        if ray.tune.get_checkpoint() is not None:
            return TrialStart(trial_id, cfg, None, None, {}, nothing_left=True)  # Tune keeps its last report
        wait_for_the_search_to_end()
    restore = ray.tune.get_checkpoint()
    source = _source_of(restore)
    other = source.get("trial_id") not in (None, trial_id)
    restored_from = f"{source['trial_id']}@{source['epoch']}" if other else None
    nothing_left = bool(source) and int(source["epoch"]) + 1 >= cfg.train.epochs
    extra: dict[str, Any] = {"restored_from": restored_from} if restored_from else {}
    open_run = partial(attach_child_run, setup, cfg, trial_id, restored_from,
                       maybe_exists=restore is not None or setup.resumed,
                       trial_dir=ray.tune.get_context().get_trial_dir())
    if defer_run and setup.tracking_uri is not None and not nothing_left:
        child = DeferredChild(open_run)
        return TrialStart(trial_id, cfg, restore, DeferredLogger(child), extra, nothing_left, child)
    ctx, logger = open_run()
    extra["mlflow_run_id"] = ctx.run_id if ctx else ""
    return TrialStart(trial_id, cfg, restore, logger, extra, nothing_left)


def run_trial(config: dict[str, Any], setup: TrialSetup) -> None:
    """Tune function trainable: train one trial, report every epoch (and its checkpoint) to Tune."""
    start = start_trial(config, setup)
    if start.nothing_left:
        return
    trial_id, cfg, restore, logger, extra = start.trial_id, start.cfg, start.restore, start.logger, start.extra
    name = f"{trial_id}-{uuid.uuid4().hex[:6]}"  # a fresh Train run per start: Tune's checkpoint is the state
    storage = f"{setup.experiment_path.rstrip('/')}/train"
    prep = replace(setup.prep, cfg=cfg, run_name=name, storage_path=storage, run_dir=f"{storage}/{name}", resume=False)
    queue = Queue(maxsize=1, actor_options={"num_cpus": 0})
    # MLflow first: a scheduler's stop can kill this trial while ForwardToTune waits on Tune.
    callbacks = [ReportCallback(EpochSink(logger, None))] if logger is not None else []
    callbacks += [ForwardToTune(queue), ShareController(queue)]
    trainer = build_trainer(prep, callbacks,
                            init_checkpoint=_checkpoint_uri(restore, setup.experiment_path) if restore else None)
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


# --- The trial in its own actor: no Train run.

_ARRAYS: dict[str, tuple] = {}  # data set in memory, by data config: loaded once per actor, reused by later trials


def share_data(cfg: Any, space: SearchSpace) -> Any:
    """The search's data set in the object store, once for every trial and rank (None when a trial's data
    differs: a searched data key other than augmentation)."""
    if any(k.startswith("data.") and not k.startswith("data.augment.") for k in space.params):
        return None

    return ray.put(tuple(t.numpy() for t in load_arrays(cfg.data)))


def _arrays_for(cfg: Any, shared: Any) -> tuple:
    if shared is not None:
        return arrays_from_store(ray.get(shared))

    key = json.dumps(cfg.data.model_dump(mode="json", exclude={"augment"}), sort_keys=True)
    if key not in _ARRAYS:
        _ARRAYS.clear()  # one data set at a time (a searched image size would otherwise pile them up)
        _ARRAYS[key] = load_arrays(cfg.data)
    return _ARRAYS[key]


class ActorTrialSession:
    """The loop's view of a trial's actor: rank 0; each epoch to MLflow, then to Tune with its checkpoint.
    With other ranks (world > 1), each report ends with rank 0's go-on/stop broadcast (see trial_group)."""

    rank = 0

    def __init__(self, device: Any, trial_id: str, sink: EpochSink | None, extra: dict[str, Any],
                 world: int = 1, child: DeferredChild | None = None, experiment_path: str = "") -> None:
        self.device, self.trial_id, self.sink, self.extra, self.world = device, trial_id, sink, extra, world
        self.experiment_path = experiment_path
        self.child = child  # the child run still being opened: its id joins the reports once it is
        self.error: str | None = None

    def resume_checkpoint(self) -> None:
        return None  # Tune's checkpoint comes in as init_checkpoint: Tune, not a Train run, holds the state

    def checkpoint_destination(self) -> str:
        """Where ray.tune.report copies a checkpoint to: this trial's folder on the search's storage (named in a
        full-disk error)."""
        return f"{self.experiment_path.rstrip('/')}/{self.trial_id}"

    def dataset_shard(self, name: str) -> Any:
        raise RuntimeError("streaming data needs tune.trial_runner=train")  # refused before the search starts

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        try:
            self._report(metrics, checkpoint_dir)
        except BaseException:
            if self.world > 1:
                broadcast_flag(1, self.device)  # Tune stopped the trial (SystemExit): the other ranks stop too
            raise
        if self.world > 1:
            broadcast_flag(0, self.device)

    def _report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        if self.sink is not None:  # MLflow first: a scheduler's stop may end this trial inside ray.tune.report
            self.sink(metrics, checkpoint_dir is not None)
        if self.child is not None and "mlflow_run_id" not in self.extra:
            ctx, _ = self.child.get()
            self.extra["mlflow_run_id"] = ctx.run_id if ctx else ""
        if metrics.get("error"):
            self.error = metrics["error"]  # a non-finite loss: no metrics to rank by, the trial fails
            return
        report_to_tune(metrics, self.extra, self.trial_id, checkpoint_dir)


def _actor_device(gpus: float) -> Any:
    if gpus > 0 and torch.cuda.is_available():
        return torch.device("cuda", 0)  # Ray set CUDA_VISIBLE_DEVICES to this trial's GPU
    return torch.device("cpu")


def _run_ranks(plan: LoopConfig, session: ActorTrialSession, arrays: tuple, shared: Any,
               cpus: float, gpus: float, start: Any | None) -> None:
    """Rank 0 here, ranks 1.. in the kept group's actors; a failure drops the group (the next trial builds one)."""
    group = trial_group(session.world, cpus, gpus)
    if shared is None:  # the data of this trial only: into the object store once for all its ranks
        shared = ray.put(tuple(t.numpy() for t in arrays))
    runs = [r.run.remote(plan, shared, group.gpu, start) for r in group.ranks]
    try:
        run_loop(plan, session, arrays=arrays, start=start)
        ray.get(runs)
    except SystemExit:
        try:
            ray.get(runs, timeout=60)  # told to stop at this report: they leave the loop too
        except Exception:  # noqa: BLE001 - a rank that did not stop cleanly: its group cannot be reused
            drop_group()
        raise
    except BaseException:
        drop_group()  # ranks may be blocked in a collective that rank 0 left: kill them
        raise


def run_trial_in_actor(config: dict[str, Any], setup: TrialSetup) -> None:
    """Tune function trainable: the training loop in this actor (and its rank actors for DDP), each epoch (and
    checkpoint) reported to Tune."""
    start = start_trial(config, setup, defer_run=True)
    if start.nothing_left:
        return
    cfg, logger = start.cfg, start.logger
    scaling = cfg.scaling
    gpus = scaling.gpus_per_worker if scaling.use_gpu else 0
    world = int(scaling.num_workers)  # the search's tune.trial_workers (an int, never elastic)
    session = ActorTrialSession(_actor_device(gpus), start.trial_id,
                                EpochSink(logger, None) if logger is not None else None, start.extra, world=world,
                                child=start.child, experiment_path=setup.experiment_path)
    trial_run = replace(setup.prep, cfg=cfg, loader_kind="memory", run_dir=ray.tune.get_context().get_trial_dir())
    plan = make_loop_config(trial_run, test_hooks=setup.test_hooks)
    arrays = _arrays_for(cfg, setup.shared_data)
    if world == 1:
        run_loop(plan, session, arrays=arrays, start=start.restore)
    else:
        _run_ranks(plan, session, arrays, setup.shared_data, scaling.cpus_per_worker, gpus, start.restore)
    if session.error:
        raise RuntimeError(session.error)
