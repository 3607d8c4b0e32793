"""DDP for an actor-run trial: the trial's actor is rank 0 and owns `world - 1` rank actors placed in the
trial's own placement group bundles. The group (actors and torch process group) is built once per trial
actor and kept for the next trial that Tune runs in that actor (`reuse_actors`), so a multi-worker trial
no longer pays a Train controller, a worker group and a process group per trial.

Stopping: Tune stops a trial by raising SystemExit in rank 0's `ray.tune.report`. The other ranks are at the
same point of the loop (every rank reports every epoch), so each report ends with one broadcast from rank 0:
"go on" or "stop". A rank that crashes takes the collective ops of the others down with an error; the trial
fails and Tune restarts it from its last checkpoint in a fresh actor. Rank actors are owned by the trial's
actor, so they die with it: a trial actor that Tune discards leaks no CPUs.
"""

from __future__ import annotations

import socket
import warnings
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import ray
import torch
import torch.distributed as dist
from ray.util.placement_group import get_current_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from cnnray.run.loop_config import LoopConfig
from cnnray.run.rank_loop import run_loop

COLLECTIVE_TIMEOUT = timedelta(minutes=10)  # a rank stuck this long (not dead: that errors at once) fails the trial


class StopRank(BaseException):
    """Rank 0 said stop (Tune stopped the trial): leave the loop at this epoch's report."""


def arrays_from_store(arrays: tuple | None) -> tuple | None:
    """Tensors over the object store's numpy arrays (zero-copy, read-only: the loaders only index them)."""
    if arrays is None:
        return None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return tuple(torch.from_numpy(a) for a in arrays)


def broadcast_flag(flag: int, device: torch.device) -> int:
    """Rank 0's flag on every rank."""
    t = torch.tensor([flag], dtype=torch.int32, device=device)
    dist.broadcast(t, src=0)
    return int(t.item())


class RankSession:
    """The loop's view of a rank >= 1: reports go nowhere except rank 0's go-on/stop broadcast."""

    def __init__(self, rank: int, world: int, device: torch.device) -> None:
        self.rank, self.world, self.device = rank, world, device

    def resume_checkpoint(self) -> None:
        return None

    def dataset_shard(self, name: str) -> Any:
        raise RuntimeError("streaming data needs tune.trial_runner=train")

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        if broadcast_flag(0, self.device):
            raise StopRank


@ray.remote
class TrialRank:
    """One rank >= 1 of an actor-run trial; lives as long as the trial actor that created it."""

    def join(self, address: str, rank: int, world: int, backend: str) -> None:
        """Enter the trial's process group (blocks until every rank has)."""
        self.rank, self.world = rank, world
        dist.init_process_group(backend, init_method=address, rank=rank, world_size=world, timeout=COLLECTIVE_TIMEOUT)

    def run(self, plan: LoopConfig, arrays: tuple | None, gpu: bool, start: Any | None = None) -> str:
        """Train this rank's shard of one trial; "done" or "stopped"."""
        device = torch.device("cuda", 0) if gpu and torch.cuda.is_available() else torch.device("cpu")
        try:
            run_loop(plan, RankSession(self.rank, self.world, device), arrays=arrays_from_store(arrays), start=start)
        except StopRank:
            return "stopped"
        return "done"


def _free_address() -> str:
    """A tcp:// rendezvous on this node's Ray address, on a port the OS says is free now."""
    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    return f"tcp://{ray.util.get_node_ip_address()}:{port}"


@dataclass
class TrialGroup:
    """Rank actors 1..world-1 and the process group they share with this (the trial's) actor."""

    ranks: list[Any]
    world: int
    backend: str
    gpu: bool


_GROUP: dict[str, TrialGroup] = {}  # this trial actor's group, kept for the next trial Tune runs here


def _build_group(world: int, cpus: float, gpus: float) -> TrialGroup:
    gpu = gpus > 0 and torch.cuda.is_available()
    backend = "nccl" if gpu else "gloo"
    pg = get_current_placement_group()  # the trial's: bundle 0 holds this actor, bundles 1.. the other ranks
    ranks = [TrialRank.options(num_cpus=cpus, num_gpus=gpus if gpu else 0, scheduling_strategy=(
        PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=i) if pg else None)).remote()
        for i in range(1, world)]
    address = _free_address()
    joined = [r.join.remote(address, i, world, backend) for i, r in enumerate(ranks, start=1)]
    dist.init_process_group(backend, init_method=address, rank=0, world_size=world, timeout=COLLECTIVE_TIMEOUT)
    ray.get(joined)
    return TrialGroup(ranks, world, backend, gpu)


def trial_group(world: int, cpus: float, gpus: float) -> TrialGroup:
    """This actor's group for `world` ranks: the kept one if it fits, else a new one."""
    group = _GROUP.get("group")
    if group is not None and group.world == world:
        return group
    drop_group()
    _GROUP["group"] = _build_group(world, cpus, gpus)
    return _GROUP["group"]


def drop_group() -> None:
    """Forget this actor's group (after a failure its collectives cannot be trusted): kill its rank actors."""
    group = _GROUP.pop("group", None)
    if group is None:
        return
    for r in group.ranks:
        ray.kill(r, no_restart=True)
    if dist.is_initialized():
        dist.destroy_process_group()
