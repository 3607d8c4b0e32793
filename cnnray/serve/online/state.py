"""The local record of running `cnnray serve` apps: one JSON file per app name under the state directory
(`CNNRAY_SERVE_DIR`, default ~/.cnnray/serve). `status`, `stop` and the promote/rollback notification read it.

A record whose serving process is gone (SIGKILL, reboot) is stale: `running()` skips it and `claim()`
replaces it, so a crash never blocks the next `cnnray serve` with the same name.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from cnnray.errors import UserInputError
from cnnray.serve.online.options import check_app_name


@dataclass(frozen=True)
class AppRecord:
    """Where a served app answers and what it follows; `pid` is the foreground process (None on a cluster)."""

    name: str
    url: str
    model: str
    tracking_uri: str
    pid: int | None
    address: str | None
    started: float

    @property
    def model_name(self) -> str:
        """The registered model's name in `model` (models:/NAME@ALIAS or models:/NAME/VERSION)."""
        return self.model.split(":/", 1)[-1].split("@", 1)[0].split("/", 1)[0]


def state_dir() -> Path:
    """The directory of app records (created on first use)."""
    d = Path(os.environ.get("CNNRAY_SERVE_DIR") or Path.home() / ".cnnray" / "serve")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _path(name: str) -> Path:
    return state_dir() / f"{check_app_name(name)}.json"


def alive(pid: int | None) -> bool:
    """Whether the serving process `pid` still runs (None: an app on a cluster, which lives without us;
    a zombie, e.g. a test's unreaped child, counts as gone)."""
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def read(name: str) -> AppRecord | None:
    """The record of app `name` if its process is alive; None when there is none or it is stale."""
    p = _path(name)
    try:
        rec = AppRecord(**json.loads(p.read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):  # a truncated or foreign file: not a running app
        return None
    return rec if alive(rec.pid) else None


def running() -> list[AppRecord]:
    """Every live app record."""
    out = []
    for p in sorted(state_dir().glob("*.json")):
        rec = read(p.stem) if _is_app_name(p.stem) else None
        if rec:
            out.append(rec)
    return out


def _is_app_name(stem: str) -> bool:
    try:
        check_app_name(stem)
    except UserInputError:
        return False
    return True


def claim(rec: AppRecord) -> None:
    """Write `rec` unless a live app already holds the name (UserInputError naming it and its URL).

    O_EXCL on a lock file makes two `cnnray serve --name X` started at once end with one owner."""
    lock = _path(rec.name).with_suffix(".lock")
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        raise UserInputError(f"--name {rec.name}: another `cnnray serve` is starting with this name right now "
                             f"(lock {lock}); wait, or remove the lock if no such process runs") from None
    try:
        os.write(fd, str(os.getpid()).encode())
        held = read(rec.name)
        if held and held.pid != os.getpid():
            raise UserInputError(f"--name {rec.name}: already served at {held.url} (pid {held.pid}, model "
                                 f"{held.model}); `cnnray serve stop --name {rec.name}` first, or pick another --name")
        write(rec)
    finally:
        os.close(fd)
        lock.unlink(missing_ok=True)


def write(rec: AppRecord) -> None:
    """Write the record atomically (a reader never sees half a file)."""
    p = _path(rec.name)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{rec.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(rec), f)
    os.replace(tmp, p)


def remove(name: str, pid: int | None = None) -> None:
    """Drop the record of `name` (only if it is still `pid`'s, when given)."""
    p = _path(name)
    try:
        if pid is not None and json.loads(p.read_text()).get("pid") != pid:
            return
    except (FileNotFoundError, ValueError):
        pass
    p.unlink(missing_ok=True)
