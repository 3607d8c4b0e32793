"""`train_loop_per_worker`: what each Ray Train worker runs — the loop of `loop.py` with DDP ranks, Ray Data
shards, Ray Train's checkpoints and `ray.train.report`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ray.train
import ray.train.torch
import torch

from cnnray.errors import UserInputError
from cnnray.run.loop_config import LoopConfig
from cnnray.run.rank_loop import run_loop

__all__ = ["TrainWorkerSession", "train_loop_per_worker"]


class TrainWorkerSession:
    """The loop's view of a Ray Train worker."""

    def __init__(self, skip_checkpoints: set[str]) -> None:
        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        self.device: torch.device = ray.train.torch.get_device()
        self.skip = skip_checkpoints

    def resume_checkpoint(self) -> Any | None:
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is not None and Path(checkpoint.path).name in self.skip:
            return None  # train.resume_from chose an earlier checkpoint than Ray's latest
        return checkpoint

    def dataset_shard(self, name: str) -> Any:
        return ray.train.get_dataset_shard(name)

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir is not None else None
        ray.train.report(metrics, checkpoint=checkpoint)


def train_loop_per_worker(config: dict[str, LoopConfig]) -> None:
    """Train on this worker's shard (`config["plan"]`); rank 0 writes checkpoints, every rank reports each epoch."""
    lc = config["plan"]
    session = TrainWorkerSession(set(lc.skip_checkpoints))
    try:
        # A path from the driver (train.resume_from, a Tune checkpoint): opened as a Checkpoint here, on the worker.
        run_loop(lc, session, start=ray.train.Checkpoint(lc.init_checkpoint) if lc.init_checkpoint else None)
    except UserInputError as e:
        # Bad input found inside a worker (every rank finds it alike): Ray Train would retry it
        # scaling.max_failures times for nothing, so the run ends with it as its last report instead.
        ray.train.report({"epoch": -1, "error": f"{type(e).__name__}: {e}", "done": True, "fatal": True})
