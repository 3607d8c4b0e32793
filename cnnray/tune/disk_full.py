"""A disk that fills mid-search ends the search instead of failing trial after trial (or hanging).

A trial whose checkpoint cannot be written fails with ENOSPC; every trial after it would fail the same way.
The search's lifecycle callback notes the first such error, and this stopper ends the search at Tune's
next step: trials that finished keep their checkpoints (tune.keep_checkpoints_top_k never deletes the
best), and the search ends FINISHED with end_reason disk_full when one finished, else FAILED.
"""

from __future__ import annotations

import errno
from typing import Any

from ray.tune import Stopper

NO_SPACE_TEXTS = ("no space left on device", "enospc", f"[errno {errno.ENOSPC}]")  # matched lowercased
_FULL: dict[str, str] = {}  # search name -> the error that said the disk is full (driver process only)


def is_no_space(text: str) -> bool:
    """Whether an error's text says a disk (or quota) is full."""
    low = text.lower()
    return any(t in low for t in NO_SPACE_TEXTS)


def note_trial_error(key: str, trial: Any) -> str | None:
    """Read a failed trial's error; if it says the disk is full, remember it (the stopper ends the search)."""
    path = getattr(trial, "error_file", None)
    try:
        with open(path, errors="replace") as f:  # type: ignore[arg-type]
            text = f.read(65536)
    except (OSError, TypeError):
        return None
    if not is_no_space(text):
        return None
    line = next((s.strip() for s in text.splitlines() if is_no_space(s)), "No space left on device")
    _FULL.setdefault(key, line[:300])
    return _FULL[key]


def disk_full(key: str) -> str | None:
    """The error that said the search's disk is full, or None."""
    return _FULL.get(key)


def forget(key: str) -> None:
    _FULL.pop(key, None)


class DiskFullStopper(Stopper):
    """Ends the whole search once a trial failed because the disk is full."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.key in _FULL
