"""The suite-wide guard that training and `cnnray tune` never read test images.

conftest.py points `CNNRAY_TEST_SPLIT_AUDIT` at one file per pytest process before anything starts, so every
`load_test_split` call (this process, its subprocesses, the Ray workers of clusters it starts) appends its call
stack there. After each test, the lines it added are checked: a read whose stack passes through training or
search code must come from `cnnray.run.held_out`, the one look a finished run takes at the chosen weights.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

AUDIT_ENV = "CNNRAY_TEST_SPLIT_AUDIT"  # cnnray.data.test_split.AUDIT_ENV (not imported: conftest stays light)
# Code that selects (weights, epochs, trials, winners): a test read under any of these is a leak...
SELECTING = ("cnnray.tune.", "cnnray.loop.", "cnnray.run.rank_loop", "cnnray.run.local_rank", "cnnray.run.ray_worker",
             "cnnray.run.local_host", "cnnray.run.ray_host", "ray.train.", "ray.tune.")
# ...unless it is the end-of-run evaluation of the weights already chosen, or the promotion gate judging them
# (registry.promote=true runs it after registration, inside the training command).
HELD_OUT = ("cnnray.run.held_out:", "cnnray.promote.gate:")


class SplitAudit:
    """The audit file of this pytest process and what each test appended to it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.start = 0

    def mark(self) -> None:
        """Start of a test: later `lines()` are the ones it caused."""
        self.start = self.path.stat().st_size if self.path.exists() else 0

    def lines(self) -> list[dict]:
        """Every test-split read since `mark()`."""
        if not self.path.exists():
            return []
        with open(self.path, "rb") as f:
            f.seek(self.start)
            return [json.loads(line) for line in f.read().decode().splitlines() if line.strip()]

    def leaks(self) -> list[dict]:
        """Reads from selection code that are not the held-out evaluation."""
        return [r for r in self.lines() if not any(h in r["stack"] for h in HELD_OUT)
                and any(f" {m}" in f" {frame}" for frame in r["stack"].split(" <- ") for m in SELECTING)]


def install(tmp_root: Path) -> SplitAudit:
    """Point this process's environment (inherited by what it starts) at a fresh audit file."""
    path = tmp_root / f"cnnray-split-audit-{os.getpid()}.jsonl"
    path.unlink(missing_ok=True)
    os.environ[AUDIT_ENV] = str(path)
    return SplitAudit(path)
