"""The local Ray cluster `cnnray train` / `cnnray tune` start when no address is given.

Bound to 127.0.0.1 (every process: GCS, raylet, agents, workers), with Ray's token authentication
left on (Ray 2.60's default), and ended by a watchdog when the driver dies, SIGKILL included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from cnnray.cluster import watchdog
from cnnray.ray_compat import loopback_node

_STATE: dict[str, Path | None] = {"file": None}


def start_local_ray(**init_kwargs: Any) -> bool:
    """`ray.init` a new local cluster on 127.0.0.1 and start its watchdog; True when loopback-bound."""
    # deferred (heavy import): ray
    import ray

    before = watchdog.children(os.getpid())
    with loopback_node() as bound:
        ray.init(include_dashboard=init_kwargs.pop("include_dashboard", False), **init_kwargs)
    roots = sorted(watchdog.children(os.getpid()) - before)
    _start_watchdog(roots)
    return bound


def start_run_watchdog() -> None:
    """A watchdog for a run without Ray (scaling.runner=local): marks its MLflow run KILLED if this process
    dies, SIGKILL included (its local ranks die with it by themselves: PR_SET_PDEATHSIG)."""
    if _STATE["file"] is None:
        _start_watchdog([], always=True)


def _start_watchdog(roots: list[int], always: bool = False) -> None:
    if not (roots or always) or not Path("/proc/self/stat").exists():
        return
    fd, name = tempfile.mkstemp(prefix="cnnray-watchdog-", suffix=".json")
    os.close(fd)
    _STATE["file"] = Path(name)
    # Its own session: Ctrl-C or a kill of the driver's process group must not take the watchdog along.
    subprocess.Popen([sys.executable, "-m", "cnnray.cluster.watchdog", str(os.getpid()), name, *map(str, roots)],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True, close_fds=True)


def watch_mlflow_run(tracking_uri: str, run_id: str) -> None:
    """Tell the watchdog which MLflow run to mark KILLED if this process dies without closing it."""
    if _STATE["file"] is not None:
        _STATE["file"].write_text(json.dumps({"tracking_uri": tracking_uri, "run_id": run_id}))


def unwatch_mlflow_run() -> None:
    """The run was closed by this process: nothing for the watchdog to mark."""
    if _STATE["file"] is not None:
        _STATE["file"].write_text("{}")
