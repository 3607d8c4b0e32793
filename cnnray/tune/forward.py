"""Train -> Tune handoff: each epoch's report, with a private copy of its checkpoint, for the trial function.

Why not only `TuneReportCallback`: it forwards metrics (and the checkpoint *path*) but no Tune
checkpoint, and PBT can only clone a trial that reported one. So the trial function itself calls
`ray.tune.report(metrics, checkpoint=...)`. The copy is made here, inside the Train controller's
report handling, because Train may delete that checkpoint (num_to_keep) as soon as the next report
arrives; the controller runs on the trial's node, so a local temporary directory is visible to both.
"""

from __future__ import annotations

import tempfile
from typing import Any

from ray.train import UserCallback

from cnnray.ray_compat import controller_callback_base


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
    """Runs in the Train controller as it starts: hands its actor handle to the trial (see cnnray.tune.abort).

    An internal Ray Train hook (RunConfig accepts any RayTrainCallback): no public callback fires before
    the first report, and a trial can be stopped before it reports.
    """

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def after_controller_start(self, train_run_context) -> None:
        import ray

        self.queue.put({"controller": ray.get_runtime_context().current_actor})
