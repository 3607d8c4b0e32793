"""A watchdog that ends a local Ray cluster when the driver that started it dies, SIGKILL included.

`ray.init()` ties the GCS and raylet to the driver's life, but the dashboard agent, the runtime-env
agent and idle workers outlive a SIGKILLed driver by half a minute or more. This process watches
the driver and remembers the process trees of the Ray processes it started (the driver's children
that `ray.init` created, and everything below them; pid + start time, so a reused pid is never
hit). When the driver is gone it terminates whatever of those trees is left, then marks the
driver's MLflow run KILLED (a dead driver cannot say so itself). Other children of the driver
are never touched. Linux only (/proc); elsewhere it exits.

Run as `python -m cnnray.cluster.watchdog DRIVER_PID STATE_FILE ROOT_PID...`. The driver writes JSON into
STATE_FILE (`{"tracking_uri": ..., "run_id": ...}` while an MLflow run is open) and deletes the
file when it ends the run itself; no Ray import here.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

POLL_S = 0.2  # how often the driver's liveness is checked
SNAPSHOT_S = 1.0  # how often the Ray process trees are re-read
GRACE_S = 2.0  # SIGTERM, then SIGKILL after this long


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (None when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _parents() -> dict[int, int]:
    out: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                out[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return out


def children(pid: int) -> set[int]:
    """Direct children of `pid` (from /proc/PID/task/*/children: no scan of every process)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return set()
    out: set[int] = set()
    for tid in tasks:
        try:
            out.update(int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split())
        except OSError:  # kernel without CONFIG_PROC_CHILDREN: scan every process instead
            return {child for child, parent in _parents().items() if parent == pid}
    return out


def descendants(root: int) -> dict[int, int]:
    """pid -> start time of every live descendant of `root`."""
    out: dict[int, int] = {}
    todo = list(children(root))
    while todo:
        pid = todo.pop()
        st = start_time(pid)
        if st is not None and pid not in out:
            out[pid] = st
            todo += children(pid)
    return out


def _alive(known: dict[int, int]) -> dict[int, int]:
    return {pid: st for pid, st in known.items() if start_time(pid) == st}


def terminate(known: dict[int, int], grace_s: float = GRACE_S) -> int:
    """SIGTERM the processes still alive (same pid and start time), SIGKILL stragglers; returns how many."""
    # Orphans re-parent to init, but their own children still hang below them: take those too.
    for pid in list(_alive(known)):
        known.update(descendants(pid))
    alive = _alive(known)
    for pid in alive:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + grace_s
    while _alive(alive) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in _alive(alive):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return len(alive)


def _mark_killed(state_file: Path) -> None:
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        state = {}
    try:
        if state.get("tracking_uri") and state.get("run_id"):
            from cnnray.tracking.runs import mark_killed_if_running

            mark_killed_if_running(state["tracking_uri"], state["run_id"])
    finally:
        state_file.unlink(missing_ok=True)


def watch(driver: int, roots: list[int], state_file: Path) -> None:
    """Block until `driver` exits; then end what is left of the process trees under `roots`."""
    driver_start = start_time(driver)
    known: dict[int, int] = {pid: st for pid in roots if (st := start_time(pid)) is not None}
    last_snapshot = 0.0
    while driver_start is not None and start_time(driver) == driver_start:
        now = time.monotonic()
        if now - last_snapshot >= SNAPSHOT_S:
            for root in list(_alive(known)):
                known.update(descendants(root))
            last_snapshot = now
        time.sleep(POLL_S)
    terminate(known)
    _mark_killed(state_file)


def main(argv: list[str]) -> int:
    """Entry point: `python -m cnnray.cluster.watchdog DRIVER_PID STATE_FILE ROOT_PID...`."""
    if not Path("/proc/self/stat").exists():
        return 0
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the driver's process group, not us
    watch(int(argv[0]), [int(p) for p in argv[2:]], Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
