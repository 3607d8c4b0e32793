"""Claim a run's folder (`scaling.storage_path/NAME`) for this process before any work starts.

Of two commands started at once with one name, exactly one may run: the other exits 2 naming the
holder. On a local or mounted file system the folder is created with `mkdir` (atomic: exactly one
creator wins) and held with an exclusive `flock` on `NAME/.cnnray.lock` for the life of the
process; the kernel drops the lock when the process dies, SIGKILL included, so a dead run never
blocks its own resume. Object stores (`s3://`, `gs://`) have no atomic create: there the claim
is a marker written and read back with a unique token, serialised on this host by a local lock;
two hosts starting the same name within the same second may both pass (documented limit).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from cnnray.errors import ConfigError

LOCK_FILE = ".cnnray.lock"


def _holder() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "token": uuid.uuid4().hex}


def _describe(holder: dict[str, Any]) -> str:
    return f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('since')}"


class RunClaim:
    """Exclusive ownership of one run folder; `release()` (or process exit) gives it up."""

    def __init__(self, run_dir: str, what: str = "run") -> None:
        self.run_dir = run_dir
        self.what = what  # "run" or "search", for messages
        self.created = False
        self._fd: int | None = None
        self._remote = "://" in run_dir

    def acquire(self, *, new: bool, key: str = "run.name") -> "RunClaim":
        """Claim the folder: create it (new) or lock the existing one (resume); ConfigError if taken."""
        if self._remote:
            self._acquire_remote(new=new, key=key)
            return self
        path = Path(self.run_dir)
        if new:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                path.mkdir()
                self.created = True
            except FileExistsError:
                self._refuse_existing(key)
        elif not path.is_dir():
            raise ConfigError(f"no {self.what} named '{path.name}' at {path}")
        self._lock(path / LOCK_FILE, key)
        return self

    def _lock(self, lock_path: Path, key: str) -> None:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise ConfigError(f"{key} '{Path(self.run_dir).name}': the {self.what} is in use by another cnnray "
                              f"process ({_describe(_read_holder(lock_path))}); wait for it to end, stop it, "
                              f"or choose another {key}") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(_holder()).encode())
        os.fsync(fd)
        self._fd = fd

    def _refuse_existing(self, key: str) -> None:
        lock_path = Path(self.run_dir) / LOCK_FILE
        # A concurrent start may have created the folder a moment ago and not yet locked it: wait briefly
        # so that the message says "in use" rather than "already exists".
        deadline = time.monotonic() + 2.0
        while not self._remote and not lock_path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if lock_path.exists() and _is_locked(lock_path):
            raise ConfigError(f"{key} '{Path(self.run_dir).name}': the {self.what} is in use by another cnnray "
                              f"process ({_describe(_read_holder(lock_path))}); choose another {key}")
        resume = "train.resume=true" if self.what == "run" else f"--resume {Path(self.run_dir).name}"
        raise ConfigError(f"{key} '{Path(self.run_dir).name}' already exists at {self.run_dir}; continue it "
                          f"with {resume}, or choose another {key}")

    def _acquire_remote(self, *, new: bool, key: str) -> None:
        # deferred (heavy import): pyarrow
        import pyarrow.fs as pafs

        # Same-host starts are serialised by a local lock keyed by the URI.
        local = Path.home() / ".cache" / "cnnray" / "locks"
        local.mkdir(parents=True, exist_ok=True)
        self._lock(local / (hashlib.sha256(self.run_dir.encode()).hexdigest()[:24] + ".lock"), key)
        fs, path = pafs.FileSystem.from_uri(self.run_dir)
        marker = f"{path}/{LOCK_FILE}"
        exists = fs.get_file_info(path).type != pafs.FileType.NotFound
        if new and exists:
            self.release()
            self._refuse_existing(key)
        me = _holder()
        fs.create_dir(path, recursive=True)
        with fs.open_output_stream(marker) as f:
            f.write(json.dumps(me).encode())
        time.sleep(1.0)  # a concurrent writer on another host would have overwritten it by now
        with fs.open_input_stream(marker) as f:
            seen = json.loads(f.read().decode() or "{}")
        if seen.get("token") != me["token"]:
            self.release()
            raise ConfigError(f"{key} '{path.rsplit('/', 1)[-1]}' was claimed at the same time by "
                              f"{_describe(seen)}; choose another {key}")
        self.created = new

    def release(self, *, remove_if_unused: bool = False) -> None:
        """Give up the claim; with remove_if_unused, delete a folder this claim created and nothing used."""
        if self._fd is not None:
            if remove_if_unused and self.created and not self._remote:
                path = Path(self.run_dir)
                if {p.name for p in path.iterdir()} <= {LOCK_FILE}:
                    (path / LOCK_FILE).unlink(missing_ok=True)
                    path.rmdir()
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunClaim":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def refuse_if_in_use(run_dir: str, what: str = "run", key: str = "run.name") -> None:
    """ConfigError naming the holder when another live cnnray process holds this run folder."""
    holder = in_use_by(run_dir)
    if holder:
        raise ConfigError(f"{key} '{Path(run_dir).name}': the {what} is in use by another cnnray process ({holder}); "
                          f"wait for it to end, stop it, or choose another {key}")


def in_use_by(run_dir: str) -> str | None:
    """Who holds a local run folder's lock right now ("pid N on HOST, since T"), or None."""
    lock_path = Path(run_dir) / LOCK_FILE
    if "://" in run_dir or not lock_path.exists() or not _is_locked(lock_path):
        return None
    return _describe(_read_holder(lock_path))


def _read_holder(lock_path: Path) -> dict[str, Any]:
    try:
        return json.loads(lock_path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _is_locked(lock_path: Path) -> bool:
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)
