"""Checkpoints of a local run (`scaling.runner=local`) in the run folder, kept the way Ray Train keeps its own.

Same folder names (`checkpoint_<timestamp>`), same files inside (written by `loop.py`), same retention
(`scaling.num_to_keep` best by `train.monitor`, plus the latest): a run can be resumed by either runner.
The bookkeeping is `cnnray_checkpoints.json`, written atomically (temp file + rename) after the
checkpoint folder itself was renamed into place, so a process killed at any point leaves either the
old list or the new one, never a list naming a half-written folder.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

INDEX_FILE = "cnnray_checkpoints.json"


def read_index(text: str) -> tuple[list[str], str | None] | None:
    """(checkpoint folder names, oldest first; the latest one) from an index file's text; None when unreadable."""
    try:
        index = json.loads(text)
        names = [str(c["name"]) for c in index["checkpoints"]]
        latest = index.get("latest")
    except (ValueError, KeyError, TypeError):
        return None
    return names, (str(latest) if latest else None)


class CheckpointStore:
    """The run folder's checkpoints: add one per reported checkpoint, prune to `keep` best plus the latest."""

    def __init__(self, run_dir: str, keep: int | None, monitor: str, mode: str) -> None:
        self.dir = Path(run_dir)
        self.keep, self.monitor, self.mode = keep, monitor, mode
        self.entries: list[dict[str, Any]] = []
        self.latest: str | None = None
        for stale in self.dir.glob(".checkpoint_*.tmp"):  # a write cut short (SIGKILL, full disk); we hold the claim
            shutil.rmtree(stale, ignore_errors=True)
        path = self.dir / INDEX_FILE
        if path.exists():  # a resumed local run: its earlier checkpoints stay ranked with the new ones
            index = json.loads(path.read_text())
            self.entries, self.latest = list(index["checkpoints"]), index.get("latest")

    def latest_dir(self) -> str | None:
        """Path of the newest checkpoint, or None."""
        return str(self.dir / self.latest) if self.latest else None

    def stage(self) -> Path:
        """A fresh hidden folder in the run folder to write the next checkpoint into: `add` then renames it
        (one write on the checkpoints' own filesystem; the system temp folder's size does not matter)."""
        path = self.dir / f".{self._new_name()}.tmp"
        path.mkdir()
        return path

    def _new_name(self) -> str:
        name = datetime.now().strftime("checkpoint_%Y-%m-%d_%H-%M-%S.%f")
        while (self.dir / name).exists() or (self.dir / f".{name}.tmp").exists():  # within a microsecond
            name += "0"
        return name

    def add(self, source: Path, metrics: dict[str, Any]) -> str:
        """Move a staged checkpoint folder (else copy one from elsewhere) in under a new name; returns its path."""
        name = self._new_name()
        if source.parent.resolve() == self.dir.resolve():
            os.replace(source, self.dir / name)
        else:
            tmp = self.dir / f".{name}.tmp"
            try:
                shutil.copytree(source, tmp)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)  # never leave a partial copy behind
                raise
            os.replace(tmp, self.dir / name)
        score = metrics.get(self.monitor)
        before = (list(self.entries), self.latest)
        self.entries.append({"name": name, "epoch": metrics.get("epoch"),
                             "score": float(score) if isinstance(score, (int, float)) else None})
        self.latest = name
        dropped = self._prune()
        try:
            self._write_index()
        except BaseException:  # e.g. the disk filled up: the list on disk still names the previous checkpoints
            self.entries, self.latest = before
            shutil.rmtree(self.dir / name, ignore_errors=True)
            (self.dir / f".{INDEX_FILE}.tmp").unlink(missing_ok=True)
            raise
        for old in dropped:  # after the index no longer names them
            shutil.rmtree(self.dir / old, ignore_errors=True)
        return str(self.dir / name)

    def _prune(self) -> list[str]:
        if self.keep is None or len(self.entries) <= self.keep:
            return []
        sign = -1.0 if self.mode == "max" else 1.0
        ranked = sorted((e for e in self.entries if e["name"] != self.latest),
                        key=lambda e: (e["score"] is None, sign * (e["score"] or 0.0)))
        kept = {e["name"] for e in ranked[: max(0, self.keep - 1)]} | {self.latest}
        dropped = [e["name"] for e in self.entries if e["name"] not in kept]
        self.entries = [e for e in self.entries if e["name"] in kept]
        return dropped

    def _write_index(self) -> None:
        tmp = self.dir / f".{INDEX_FILE}.tmp"
        tmp.write_text(json.dumps({"checkpoints": self.entries, "latest": self.latest}, indent=1))
        os.replace(tmp, self.dir / INDEX_FILE)
