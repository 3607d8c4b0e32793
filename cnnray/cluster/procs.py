"""Processes by id: start times, session members, and stopping exactly the ones a command started (Linux /proc)."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot; None when it is gone (or a zombie)."""
    fields = _stat(pid)
    if fields is None or fields[0] == "Z":
        return None
    return int(fields[19])


def is_same(pid: int, started: int | None) -> bool:
    """True when pid is alive and is the process that started at `started` (not a reused pid)."""
    now = start_time(pid)
    return now is not None and (started is None or now == started)


def session_members(sid: int) -> list[int]:
    """Live processes whose session id is sid (a node started with start_new_session keeps its tree there)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None and fields[0] != "Z" and int(fields[3]) == sid:
                out.append(int(entry))
    return out


def signal_all(pids: list[int], sig: int) -> None:
    """Send sig to each pid, ignoring ones already gone."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def stop_sessions(sids: list[int], grace_s: float = 10.0) -> int:
    """SIGTERM every process of these sessions, SIGKILL what is left after grace_s; returns how many there were."""
    members = {pid for sid in sids for pid in session_members(sid)}
    signal_all(sorted(members), signal.SIGTERM)
    deadline = time.time() + grace_s
    while time.time() < deadline:
        if not any(session_members(sid) for sid in sids):
            return len(members)
        time.sleep(0.2)
    left = [pid for sid in sids for pid in session_members(sid)]
    signal_all(left, signal.SIGKILL)
    deadline = time.time() + 5
    while time.time() < deadline and any(session_members(sid) for sid in sids):
        time.sleep(0.1)
    return len(members | set(left))


def free_port(preferred: int | None = None) -> int:
    """A TCP port free on 127.0.0.1: `preferred` when it is free, else one the kernel picks."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise OSError("no free TCP port on 127.0.0.1")
