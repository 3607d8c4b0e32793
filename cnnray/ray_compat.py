"""The one place cnnray relies on Ray internals; each use checks that this Ray is the one it was written for.

Written against Ray 2.60. On another version the helpers here degrade (warn and do without) rather
than guess at internals that may have moved.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("cnnray")

WRITTEN_FOR = (2, 60)
# Ray's switch for "single-node only, bind everything to 127.0.0.1" (its macOS/Windows mode).
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
SNAPSHOT_FILE = "checkpoint_manager_snapshot.json"  # Ray Train V2's checkpoint bookkeeping in the run folder


def ray_minor() -> tuple[int, int]:
    """(major, minor) of the installed Ray."""
    # deferred (heavy import): ray
    import ray

    major, minor = ray.__version__.split(".")[:2]
    return int(major), int(minor)


def is_written_for() -> bool:
    """True when the installed Ray is the minor version these internals were read from."""
    return ray_minor() == WRITTEN_FOR


@contextmanager
def loopback_node() -> Iterator[bool]:
    """While a local node starts inside: it and every process it spawns listen on 127.0.0.1 only.

    Ray takes the node IP from `ray_constants.ENABLE_RAY_CLUSTER` in the driver and from the
    environment in the processes it spawns; both are restored afterwards so that a later
    `ray start` (a real multi-node cluster) is not affected. Yields False where unsupported.
    """
    try:
        # deferred (heavy import): ray
        from ray._private import ray_constants
    except ImportError:
        ray_constants = None
    if not is_written_for() or not hasattr(ray_constants, "ENABLE_RAY_CLUSTER"):
        log.warning("Ray %s is not the version cnnray was written for (%d.%d): the local cluster is not "
                    "restricted to 127.0.0.1", ".".join(map(str, ray_minor())), *WRITTEN_FOR)
        yield False
        return
    old_env, old_flag = os.environ.get(LOOPBACK_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[LOOPBACK_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield True
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = old_flag
        if old_env is None:
            os.environ.pop(LOOPBACK_ENV, None)
        else:
            os.environ[LOOPBACK_ENV] = old_env


def read_checkpoint_snapshot(text: str) -> tuple[list[str], str | None] | None:
    """(checkpoint folder names, oldest report first; the latest one) from Ray Train's snapshot JSON.

    The latest is what Ray hands back through `ray.train.get_checkpoint()` when a run is resumed.
    None when the format is not the one this was written for.
    """
    try:
        snap = json.loads(text)
        results = snap["checkpoint_results"]
        order = snap.get("checkpoint_report_indices") or list(range(len(results)))
        names = [r["checkpoint_dir_name"] for _, r in sorted(zip(order, results), key=lambda p: p[0])]
        latest = (snap.get("latest_checkpoint_result") or {}).get("checkpoint_dir_name")
    except (ValueError, KeyError, TypeError):
        return None
    return names, latest


def require_written_for(what: str) -> None:
    """Fail with a clear message where an internal of Ray is needed and this Ray is another version."""
    if not is_written_for():
        raise RuntimeError(f"cnnray relies on Ray's internal {what}, read from Ray {WRITTEN_FOR[0]}.{WRITTEN_FOR[1]}; "
                           f"this is Ray {'.'.join(map(str, ray_minor()))}. Install "
                           f"'ray[default,train,tune,data]=={WRITTEN_FOR[0]}.{WRITTEN_FOR[1]}.*' (pyproject pins it)")


def controller_callback_base() -> type:
    """Ray Train V2's internal ControllerCallback: the only hook that fires before a run's first report."""
    require_written_for("ray.train.v2._internal...ControllerCallback")
    # deferred (heavy import): ray
    from ray.train.v2._internal.execution.callback import ControllerCallback

    return ControllerCallback


def abort_train_controller(handle, timeout_s: float) -> None:
    """Ask a Train V2 controller actor to abort its run (an internal actor method)."""
    # deferred (heavy import): ray
    import ray

    require_written_for("TrainController.abort")
    ray.get(handle.abort.remote(), timeout=timeout_s)


def add_trainable_mixin(fn, *mixins: type) -> None:
    """Have Tune build a function trainable's class with these mixins (Tune reads `fn.__mixins__`)."""
    require_written_for("the __mixins__ attribute of function trainables")
    fn.__mixins__ = tuple(mixins)


def pin_ray_start_loopback(ip: str = "127.0.0.1") -> None:
    """Have `ray start` in this process keep `ip` (loopback) as its node IP, worker nodes included.

    Ray 2.60 rewrites a loopback `--node-ip-address` / `--address` to the machine's outward IP
    (`services.resolve_ip_for_localhost`), and refuses worker nodes in its single-host mode (LOOPBACK_ENV=0).
    This lifts that guard and pins the IP; used by `cnnray.cluster.ray_node` (one node of `cnnray cluster up`),
    which sets LOOPBACK_ENV=0 in the environment first so every process the node starts binds `ip`.
    """
    require_written_for("`ray start` node-IP resolution (ray_constants.ENABLE_RAY_CLUSTER, services)")
    # deferred (heavy import): ray
    from ray._private import ray_constants, services, worker

    ray_constants.ENABLE_RAY_CLUSTER = True
    outward = services.get_node_ip_address

    def node_ip(address: str | None = None) -> str:
        return ip if worker._global_node is None else outward(address)

    services.get_node_ip_address = node_ip


def trial_checkpoints(trial) -> list:
    """Every Tune checkpoint a trial's bookkeeping still holds (its kept ones and its latest): Checkpoint objects."""
    require_written_for("Trial.run_metadata.checkpoint_manager (_checkpoint_results)")
    cpm = trial.run_metadata.checkpoint_manager
    results = list(cpm._checkpoint_results)
    if cpm.latest_checkpoint_result is not None:
        results.append(cpm.latest_checkpoint_result)
    seen, out = set(), []
    for r in results:
        if r.checkpoint is not None and r.checkpoint.path not in seen:
            seen.add(r.checkpoint.path)
            out.append(r.checkpoint)
    return out


def forget_trial_checkpoints(trial) -> None:
    """Drop a trial's checkpoints from Tune's bookkeeping (their folders were deleted): a restart of the trial
    then starts from scratch instead of failing in Trainable.restore on a missing folder."""
    require_written_for("Trial.run_metadata.checkpoint_manager (_latest_checkpoint_result)")
    cpm = trial.run_metadata.checkpoint_manager
    cpm._checkpoint_results = []
    cpm._latest_checkpoint_result = None
    trial.run_metadata.invalidate_cache()  # the trial's JSON state is cached; the next experiment save must see this


def drop_older_checkpoints(trial, newest: str) -> list:
    """Remove every checkpoint but the one at `newest` from a trial's bookkeeping; returns the removed
    Checkpoints (their folders are the caller's to delete). Tune's on_checkpoint callbacks run before the new
    checkpoint is registered: at that point every registered one is older."""
    require_written_for("Trial.run_metadata.checkpoint_manager (_checkpoint_results)")
    cpm = trial.run_metadata.checkpoint_manager
    older = [c for c in trial_checkpoints(trial) if c.path != newest]
    cpm._checkpoint_results = [r for r in cpm._checkpoint_results if r.checkpoint is not None and r.checkpoint.path == newest]
    latest = cpm.latest_checkpoint_result
    if latest is not None and (latest.checkpoint is None or latest.checkpoint.path != newest):
        cpm._latest_checkpoint_result = None  # registered again in a moment: the new one
    trial.run_metadata.invalidate_cache()
    return older


def point_trial_at_checkpoint(trial, path: str, filesystem) -> None:
    """Make `path` (a checkpoint folder on the trial's storage) the trial's latest checkpoint: a resumed trial
    restarts from it (its metrics are unknown here: the trial reads its epoch from the checkpoint itself)."""
    require_written_for("Trial.run_metadata.checkpoint_manager (_latest_checkpoint_result)")
    # deferred (heavy import): ray
    from ray.train._internal.session import _TrainingResult
    from ray.tune import Checkpoint

    result = _TrainingResult(checkpoint=Checkpoint(path, filesystem=filesystem), metrics={})
    cpm = trial.run_metadata.checkpoint_manager
    cpm._checkpoint_results = [result]
    cpm._latest_checkpoint_result = result
    trial.run_metadata.invalidate_cache()


def slim_ended_trial(trial, metric: str, keep_keys: frozenset[str], keep_prefixes: tuple[str, ...] = ()) -> None:
    """Shrink what Tune's driver keeps of a trial that ended: its per-metric statistics and its last result are
    reduced to the search metric and `keep_keys`/`keep_prefixes`. Tune holds every trial for the whole search
    (in memory and in its experiment state): at thousands of trials, those statistics of ~30 metrics are what
    grows. A trial that runs again (resumed) rebuilds statistics for the metrics it reports."""
    require_written_for("Trial.run_metadata (metric_analysis, metric_n_steps, last_result)")
    meta = trial.run_metadata
    meta.metric_analysis = {k: v for k, v in meta.metric_analysis.items() if k == metric}
    meta.metric_n_steps = {k: v for k, v in meta.metric_n_steps.items() if k == metric}
    last = meta.last_result or {}
    meta.last_result = {k: v for k, v in last.items() if k in keep_keys or k == metric or k.startswith(keep_prefixes)}
    meta.invalidate_cache()


def upload_trial_file(trial, name: str) -> bool:
    """Copy a trial's driver-side file (`result.json`) to its folder on storage now; False if it has none.

    Tune writes a trial's result.json in a driver staging folder and uploads it with its experiment state
    (every >= 10 s). A trial that restarts (after a failure, a lost node, a PBT pause) has its result.json
    downloaded from storage again first (JsonLoggerCallback._restore_from_remote), so reports not uploaded yet
    would be lost; uploading just before the restart keeps them."""
    require_written_for("Trial.local_path / Trial.storage (StorageContext) of the driver staging folder")
    # deferred (heavy import): pyarrow
    import pyarrow.fs as pafs

    local = Path(trial.local_path or "", name)
    if not trial.local_path or not local.is_file():
        return False
    pafs.copy_files(local.as_posix(), Path(trial.storage.trial_fs_path, name).as_posix(),
                    destination_filesystem=trial.storage.storage_filesystem)
    return True
