"""What differs between the environment a version was trained in and the replay's: code, packages, device,
workers, host CPU, and the keys the user changed. Reported before training and tagged on the replay's run;
none of it refuses a replay (a different worker count or device makes the verdict `equivalent` at best)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnray.tracking.lineage import HOST_CPU_TAG, git_commit, host_cpu, package_versions


@dataclass(frozen=True)
class Difference:
    """One thing that is not as it was: `key` names it in tags (cnnray.replay_diff.KEY)."""

    key: str
    original: str
    replay: str

    def line(self) -> str:
        """What the console prints."""
        return f"  {self.key:<18} {self.original}  ->  {self.replay}"


def _device_kind(cfg: Any) -> str:
    use_gpu = cfg.scaling.use_gpu
    if use_gpu is None:
        # deferred (heavy import): torch
        import torch

        use_gpu = torch.cuda.is_available()
    return "gpu" if use_gpu else "cpu"


def _workers(cfg: Any) -> str:
    w = cfg.scaling.num_workers
    return f"{w[0]}-{w[1]} (elastic)" if isinstance(w, (list, tuple)) else str(w)


def environment_differences(version: Any, record: Any, prep: Any, opts: Any) -> list[Difference]:
    """Every difference found, in a fixed order."""
    tags, run_tags, cfg = version.tags, record.run_tags, prep.cfg
    out = []
    commit_now = git_commit(Path(__file__).resolve().parent) or git_commit(Path.cwd()) or "none"
    commit_then = tags.get("cnnray.git_commit", "none")
    if commit_now != commit_then:
        out.append(Difference("git_commit", commit_then, commit_now))
    for pkg, now in package_versions().items():
        then = tags.get(f"cnnray.version.{pkg}", "unknown")
        if then != now:
            out.append(Difference(f"version.{pkg}", then, now))
    kind_then = tags.get("cnnray.cost_device_kind") or run_tags.get("cnnray.cost_device_kind") or "unknown"
    kind_now = _device_kind(cfg)
    if kind_then != kind_now:
        out.append(Difference("device", kind_then, kind_now))
    world_then = str(record.world_size) if record.world_size else "unknown"
    if world_then != _workers(cfg):
        out.append(Difference("workers", world_then, _workers(cfg)))
    cpu_then = tags.get(HOST_CPU_TAG) or "unknown"
    if cpu_then != host_cpu():
        out.append(Difference("host_cpu", cpu_then, host_cpu()))
    runner_then = run_tags.get("cnnray.runner")
    for key, value in sorted(opts.keys.items()):
        # Where it runs and is recorded is not a difference in what trains; the worker count is listed above.
        if not key.startswith(("tracking.", "run.", "scaling.storage_path", "scaling.num_workers")):
            out.append(Difference(f"key.{key}", "(saved config)", value))
    if runner_then and cfg.scaling.runner not in ("auto", runner_then):
        out.append(Difference("runner", runner_then, cfg.scaling.runner))
    return out
