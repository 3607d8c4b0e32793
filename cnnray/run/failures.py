"""Which failures of a run are worth a restart from the latest checkpoint, and which end it at once.

Retried (up to `scaling.max_failures`): a rank process that dies or breaks a collective (a lost node, a
crash, a first out-of-memory kill), a transient error. Not retried, because the same checkpoint would
fail the same way: a full disk (`StorageFullError`), a non-finite loss (the loop ends the run itself),
bad input found inside a worker (`UserInputError`, pydantic's `ValidationError`), any `FatalRunError`,
and the same rank killed by SIGKILL (the out-of-memory killer's signal) twice at the same step.
"""

from __future__ import annotations

import errno
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cnnray.errors import FatalRunError, StorageFullError, UserInputError

FATAL_EXIT = 3  # a local rank's exit code for a failure it knows a restart cannot fix


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]


def is_storage_full(exc: BaseException) -> bool:
    """The error (or one it came from) is ENOSPC; shutil.copytree's `Error` carries it only as text."""
    for e in _chain(exc):
        if isinstance(e, StorageFullError) or (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)):
            return True
        if isinstance(e, shutil.Error) and "No space left on device" in str(e):
            return True
    return False


def is_fatal(exc: BaseException) -> bool:
    """True when restarting from the latest checkpoint cannot help."""
    return any(isinstance(e, (FatalRunError, UserInputError, ValidationError)) for e in _chain(exc)) \
        or is_storage_full(exc)


def tree_bytes(obj: Any) -> int:
    """Bytes of the tensors in a nested state (what a `torch.save` of it writes, give or take headers)."""
    # deferred (heavy import): torch
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tree_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tree_bytes(v) for v in obj)
    return 0


def storage_full_error(directory: Path, needed: int, latest: str | None) -> StorageFullError:
    """The error for a checkpoint that did not fit, with the free bytes of its filesystem read now."""
    probe = directory if directory.exists() else directory.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        free = 0
    return StorageFullError(str(directory.parent), needed, free, latest)


def signal_name(returncode: int | None) -> str:
    """'SIGKILL' for -9, '' for a normal exit code."""
    if returncode is None or returncode >= 0:
        return ""
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


@dataclass(frozen=True)
class RankFailure:
    """One rank's death as the driver saw it: who, how, and how far the run had got (rank 0's step)."""

    rank: int
    returncode: int | None
    step: int

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL


def repeated_kill(previous: RankFailure | None, now: RankFailure) -> bool:
    """The same rank SIGKILLed twice at the same step: an out-of-memory kill that a restart repeats."""
    return previous is not None and now.killed and previous.killed and (previous.rank, previous.step) == (
        now.rank, now.step)
