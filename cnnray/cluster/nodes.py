"""`cnnray cluster up|status|down`: a real multi-node Ray cluster on one machine, every node a `ray start`.

Each node is its own `ray start --block` process tree (head first, then N-1 workers) in its own
session, bound to 127.0.0.1 (`cnnray.cluster.ray_node`), with token authentication on and a token made
for this cluster. What `up` started (pids, start times, ports, temp dir, token file) is written to
a state file, so `down` stops exactly those processes and `up` refuses to start over a live cluster.
The state lives in `$CNNRAY_CLUSTER_DIR` (default `~/.cnnray/cluster`).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cnnray.cluster import auth, procs
from cnnray.errors import UserInputError
from cnnray.ray_compat import LOOPBACK_ENV

STATE_DIR_ENV = "CNNRAY_CLUSTER_DIR"
STATE_FILE = "cluster.json"
TOKEN_FILE = "auth_token"
WORKER_PORT_BASE, WORKER_PORTS_PER_NODE = 20000, 500  # below the ephemeral range, above Ray's 10002-19999 default
DEFAULT_DASHBOARD_PORT = 8265
MAX_NODES = 16


class ClusterRunning(UserInputError):
    """`cluster up` over a cluster that is already running."""


class ClusterError(RuntimeError):
    """A node failed to start or join."""


@dataclass
class Node:
    """One `ray start` process (the leader of its session: everything the node starts stays in it)."""

    role: str  # head | worker
    pid: int
    started: int | None  # /proc start time: a reused pid is never taken for this node
    log: str
    ports: dict[str, int]


@dataclass
class ClusterState:
    """What `up` started; enough for clients to connect and for `down` to stop it."""

    gcs_address: str
    dashboard_url: str
    temp_dir: str
    token_file: str
    cpus_per_node: float
    gpus_per_node: float
    created: float
    nodes: list[Node] = field(default_factory=list)

    @property
    def head(self) -> Node:
        return self.nodes[0]

    def is_running(self) -> bool:
        """The head's `ray start` is alive (the cluster lives and dies with it)."""
        return bool(self.nodes) and procs.is_same(self.head.pid, self.head.started)

    def token(self) -> str | None:
        return auth.read_token(self.token_file)

    def summary(self) -> dict[str, Any]:
        """The public part: addresses, how to authenticate, nodes."""
        return {"address": self.gcs_address, "dashboard": self.dashboard_url, "token_file": self.token_file,
                "nodes": [{"role": n.role, "pid": n.pid, "log": n.log} for n in self.nodes],
                "client_env": client_env(self)}


def client_env(state: ClusterState) -> dict[str, str]:
    """Environment a client needs: drivers (`ray.init`, `cnnray train`) use RAY_ADDRESS, job clients
    (`ray job submit`, `cnnray submit`) RAY_API_SERVER_ADDRESS; both present the token. The loopback
    switch keeps a driver's 127.0.0.1 from being rewritten to the machine's IP, where nothing listens."""
    return {"RAY_ADDRESS": state.gcs_address, "RAY_API_SERVER_ADDRESS": state.dashboard_url, auth.MODE_ENV: "token",
            auth.TOKEN_PATH_ENV: state.token_file, LOOPBACK_ENV: "0"}


def state_dir() -> Path:
    """Where the state of the cluster `cnnray cluster up` started is kept."""
    return Path(os.environ.get(STATE_DIR_ENV) or Path.home() / ".cnnray" / "cluster").expanduser()


def load_cluster_state(directory: Path | None = None) -> ClusterState | None:
    """The recorded cluster, running or not (None when there is no record)."""
    path = (directory or state_dir()) / STATE_FILE
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    nodes = [Node(**n) for n in raw.pop("nodes", [])]
    return ClusterState(**raw, nodes=nodes)


def _save(state: ClusterState, directory: Path) -> None:
    tmp = directory / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=1))
    os.replace(tmp, directory / STATE_FILE)


def _node_dir(state: ClusterState, index: int) -> str:
    """A node's own Ray temp dir: nodes sharing one would share (and garbage-collect) each other's runtime envs."""
    path = Path(state.temp_dir) / f"n{index}"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def _node_args(state: ClusterState, index: int, cpus: float, gpus: float, object_store_mb: int) -> tuple[list[str], dict]:
    low = WORKER_PORT_BASE + index * WORKER_PORTS_PER_NODE
    ports = {"dashboard_agent": procs.free_port(), "metrics": procs.free_port(), "min_worker": low,
             "max_worker": low + WORKER_PORTS_PER_NODE - 1}
    args = ["--block", "--node-ip-address=127.0.0.1", f"--num-cpus={int(cpus)}", f"--num-gpus={int(gpus)}",
            f"--temp-dir={_node_dir(state, index)}", f"--object-store-memory={object_store_mb * 1024 * 1024}",
            f"--dashboard-agent-listen-port={ports['dashboard_agent']}", f"--metrics-export-port={ports['metrics']}",
            f"--min-worker-port={ports['min_worker']}", f"--max-worker-port={ports['max_worker']}",
            "--disable-usage-stats"]
    if index == 0:
        gcs, dash = int(state.gcs_address.rsplit(":", 1)[1]), int(state.dashboard_url.rsplit(":", 1)[1])
        ports.update(gcs=gcs, dashboard=dash, client_server=procs.free_port())
        args = ["--head", f"--port={gcs}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                f"--dashboard-port={dash}", f"--ray-client-server-port={ports['client_server']}", *args]
    else:
        args = [f"--address={state.gcs_address}", *args]
    return args, ports


def _node_env(state: ClusterState) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", auth.TOKEN_ENV)}
    # A job's `python` is this interpreter: the one with cnnray's dependencies installed.
    path = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update({auth.MODE_ENV: "token", auth.TOKEN_PATH_ENV: state.token_file, "RAY_USAGE_STATS_ENABLED": "0",
                "PYTHONUNBUFFERED": "1", "PATH": path})
    return env


def _available_memory() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * 2**30


def _start_node(state: ClusterState, index: int, cpus: float, gpus: float, object_store_mb: int, memory: int) -> Node:
    args, ports = _node_args(state, index, cpus, gpus, object_store_mb)
    args.append(f"--memory={memory}")
    role = "head" if index == 0 else "worker"
    log = Path(state.temp_dir) / f"node-{index}-{role}.log"
    with open(log, "w") as out:
        # Own session: `down` finds the node's whole tree by session id; the node's cwd is its temp dir,
        # which holds only Ray's session folders (a job without a working_dir runs there).
        proc = subprocess.Popen([sys.executable, "-m", "cnnray.cluster.ray_node", *args], cwd=_node_dir(state, index),
                                env=_node_env(state), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    return Node(role, proc.pid, procs.start_time(proc.pid), str(log), ports)


def _tail(path: str, n: int = 15) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def alive_nodes(state: ClusterState, timeout: float = 5.0) -> list[dict[str, Any]] | None:
    """The cluster's ALIVE nodes from its state API (None when the dashboard does not answer yet)."""
    # deferred (heavy import): requests
    import requests

    try:
        r = requests.get(f"{state.dashboard_url}/api/v0/nodes", params={"limit": 1000, "detail": 1},
                         headers=auth.bearer(state.token()), timeout=timeout)
        if r.status_code != 200:
            return None
        rows = r.json()["data"]["result"]["result"]
    except (requests.RequestException, ValueError, KeyError, TypeError):
        return None
    return [row for row in rows if row.get("state") == "ALIVE"]


def _wait_nodes(state: ClusterState, want: int, deadline: float, restart=None) -> None:
    retried: set[int] = set()
    while time.time() < deadline:
        for i, node in enumerate(state.nodes):
            if procs.is_same(node.pid, node.started):
                continue
            # Ray gives a raylet 30 s to register; on a busy machine a worker node can miss that once.
            if restart is not None and node.role == "worker" and i not in retried:
                retried.add(i)
                procs.stop_sessions([node.pid], grace_s=2)
                state.nodes[i] = restart(i)
                continue
            raise ClusterError(f"the {node.role} node (pid {node.pid}) exited while starting; its log "
                               f"{node.log}:\n{_tail(node.log)}")
        nodes = alive_nodes(state)
        if nodes is not None and len(nodes) >= want:
            return
        time.sleep(0.5)
    raise ClusterError(f"{want} node(s) did not come up in time; logs: {', '.join(n.log for n in state.nodes)}")


def up(nodes: int = 2, cpus_per_node: float = 1, gpus_per_node: float = 0, *, object_store_mb: int = 256,
       dashboard_port: int | None = None, timeout_s: float = 120) -> ClusterState:
    """Start a head and nodes-1 worker nodes on 127.0.0.1; raises ClusterRunning over a live cluster."""
    if not 1 <= nodes <= MAX_NODES:
        raise UserInputError(f"--nodes must be between 1 and {MAX_NODES}, got {nodes}")
    if cpus_per_node < 0 or gpus_per_node < 0 or int(cpus_per_node) != cpus_per_node or int(gpus_per_node) != gpus_per_node:
        raise UserInputError("--cpus-per-node and --gpus-per-node must be whole numbers >= 0")
    if object_store_mb < 80:
        raise UserInputError("--object-store-mb must be at least 80 (Ray's minimum object store)")
    directory = state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    with open(directory / ".lock", "w") as lock:
        try:  # two `up`s at once: the second is refused like an `up` over a running cluster
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ClusterRunning(f"another `cnnray cluster up` is starting a cluster in {directory}") from None
        return _up_locked(directory, nodes, cpus_per_node, gpus_per_node, object_store_mb, dashboard_port, timeout_s)


def _up_locked(directory: Path, nodes: int, cpus_per_node: float, gpus_per_node: float, object_store_mb: int,
               dashboard_port: int | None, timeout_s: float) -> ClusterState:
    old = load_cluster_state(directory)
    if old is not None and old.is_running():
        raise ClusterRunning(f"a cluster is already running (started by `cnnray cluster up`): address "
                             f"{old.gcs_address}, dashboard {old.dashboard_url}; stop it with `cnnray cluster down`")
    if old is not None:
        down(quiet=True)  # a stale record: whatever is left of it goes first
    token_file = directory / TOKEN_FILE
    auth.write_new_token(token_file)
    # Short path in /tmp: Ray's unix sockets live under it and a socket path is limited to 107 bytes.
    temp_dir = tempfile.mkdtemp(prefix="cnnray-ray-")
    dash = dashboard_port or procs.free_port(DEFAULT_DASHBOARD_PORT)
    state = ClusterState(gcs_address=f"127.0.0.1:{procs.free_port()}", dashboard_url=f"http://127.0.0.1:{dash}",
                         temp_dir=temp_dir, token_file=str(token_file), cpus_per_node=cpus_per_node,
                         gpus_per_node=gpus_per_node, created=time.time())
    # Every node would otherwise offer the whole machine's memory to the scheduler.
    memory = int(_available_memory() * 0.8 / nodes)
    deadline = time.time() + timeout_s
    try:
        state.nodes.append(_start_node(state, 0, cpus_per_node, gpus_per_node, object_store_mb, memory))
        _save(state, directory)  # recorded at once: a failure from here on is still cleaned up by `down`
        _wait_nodes(state, 1, deadline)

        def start(i: int) -> Node:
            node = _start_node(state, i, cpus_per_node, gpus_per_node, object_store_mb, memory)
            if i < len(state.nodes):
                state.nodes[i] = node
            else:
                state.nodes.append(node)
            _save(state, directory)
            return node

        for i in range(1, nodes):
            start(i)
        _wait_nodes(state, nodes, deadline, restart=start)
    except BaseException:
        down(quiet=True)
        raise
    return state


def down(quiet: bool = False) -> dict[str, Any]:
    """Stop what `up` started (workers first, then the head), by session of the recorded pids; forget it."""
    directory = state_dir()
    state = load_cluster_state(directory)
    if state is None:
        if quiet:
            return {"stopped": 0}
        raise UserInputError(f"no cluster started by `cnnray cluster up` is recorded in {directory}")
    stopped = 0
    for node in reversed(state.nodes):
        # The session id of a node is its `ray start` pid; only sessions whose leader is still ours, or
        # already gone (its members orphaned, still in the session), are stopped.
        if procs.is_same(node.pid, node.started) or procs.start_time(node.pid) is None:
            stopped += procs.stop_sessions([node.pid], grace_s=10 if node.role == "head" else 5)
    shutil.rmtree(state.temp_dir, ignore_errors=True)
    for name in (STATE_FILE, TOKEN_FILE):
        (directory / name).unlink(missing_ok=True)
    return {"stopped": stopped, "address": state.gcs_address}
