"""Console progress: one clean line per epoch, read on the driver from what rank 0 reported."""

from __future__ import annotations

import queue as queue_mod
import threading
import time
from collections.abc import Callable
from typing import Any


def format_duration(seconds: float) -> str:
    """`1m05s` style."""
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class ProgressPrinter:
    """Formats epoch reports; ETA from the mean epoch time so far."""

    def __init__(self, total_epochs: int, on_line: Callable[[str], None] = print) -> None:
        self.total = total_epochs
        self.on_line = on_line
        self.t0 = time.time()
        self.seen = 0

    def __call__(self, m: dict[str, Any]) -> None:
        if "error" in m:
            self.on_line(f"epoch {int(m['epoch']) + 1}/{self.total}  FAILED: {m['error']}")
            return
        self.seen += 1
        epoch = int(m["epoch"]) + 1
        per_epoch = (time.time() - self.t0) / self.seen
        eta = per_epoch * (self.total - epoch) if not m.get("done") else 0.0
        line = (f"epoch {epoch:>3}/{self.total}  train_loss {m.get('train_loss', float('nan')):.4f}  "
                f"val_loss {m.get('val_loss', float('nan')):.4f}  val_acc {100 * m.get('val_acc', 0.0):6.2f}%  "
                f"{m.get('images_per_s', 0.0):7.0f} img/s  lr {m.get('lr', 0.0):.2e}  ETA {format_duration(eta)}")
        if m.get("weights") == "ema":
            line += "  (ema)"
        if m.get("stopped_early"):
            line += "  early stop"
        self.on_line(line)


class QueueReader:
    """A driver thread draining a queue of epoch reports into a printer while training runs."""

    def __init__(self, source: Any, printer: Callable[[dict[str, Any]], None]) -> None:
        self.source = source
        self.printer = printer
        self.last: dict[str, Any] | None = None  # the newest report: the run's outcome even without a checkpoint
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="cnnray-progress")

    def _drain_one(self, timeout: float) -> bool:
        try:
            item = self.source.get(block=True, timeout=timeout)
        except (queue_mod.Empty, Exception):  # ray.util.queue.Empty subclasses Exception
            return False
        self.last = item
        self.printer(item)
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            self._drain_one(0.5)

    def __enter__(self) -> "QueueReader":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        while self._drain_one(0.2):  # what arrived after the last poll
            pass


def tee(*handlers: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    """One handler that calls each of `handlers` in turn."""

    def call(item: dict[str, Any]) -> None:
        for h in handlers:
            h(item)

    return call


def process_started_at() -> float:
    """Wall clock when this process started (Linux: from /proc, to 10 ms); elsewhere, now."""
    try:
        import os

        fields = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of stat(5): start time in clock ticks after boot
        uptime = float(open("/proc/uptime").read().split()[0])
        return time.time() - (uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.time()


class StartupClock:
    """Where a run's first seconds went: driver marks plus the first report's worker marks, in seconds
    since the command's process started."""

    PHASES = ("ray_ready", "run_started", "worker_loop", "data", "model", "first_step")

    def __init__(self) -> None:
        self.t0 = process_started_at()
        self.marks: dict[str, float] = {}

    def mark(self, phase: str) -> None:
        """Record a driver-side phase as done now."""
        self.marks.setdefault(phase, time.time())

    def __call__(self, report: dict[str, Any]) -> None:
        """Report handler: take the worker's start-up marks from the first report that has them."""
        for phase, at in (report.get("startup") or {}).items():
            self.marks.setdefault(phase, float(at))

    def seconds(self) -> dict[str, float]:
        """{phase: seconds since the process started}, in phase order."""
        return {p: round(self.marks[p] - self.t0, 2) for p in self.PHASES if p in self.marks}

    def line(self) -> str:
        """`start-up (s since the command started): ray_ready 2.1  ...  first_step 9.8`."""
        return "start-up (seconds since the command started): " + "  ".join(
            f"{p} {v:.1f}" for p, v in self.seconds().items())
