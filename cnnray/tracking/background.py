"""An MLflow run opened and fed from a background thread, so training never waits on the tracking store.

Opening a run costs seconds of CPU (importing MLflow, creating a SQLite store or reaching a server)
and each epoch's log call a round trip; a local run's training happens in the command's own main
thread, so both go here, and the opening waits for the first optimizer step (or a few seconds):
on a small machine it would otherwise compete with the ranks' start-up for the cores. `error` is set if the store fails: the trainer checks it at each epoch and stops,
rather than training for hours into a run nobody records.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from cnnray.tracking.epoch_logger import EpochLogger
from cnnray.tracking.runs import TrackingContext

_DONE = object()


class BackgroundRun:
    """`open_run()` in a thread, then each `log(metrics, checkpointed)` through an EpochLogger, in order."""

    def __init__(self, open_run: Callable[[], TrackingContext], start_within_s: float | None = None) -> None:
        """`start_within_s`: open the run at `start()` or after this long, whichever comes first (None: now)."""
        self._open = open_run
        self._items: queue.Queue = queue.Queue()
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self.ctx: TrackingContext | None = None
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="cnnray-mlflow")
        self._timer: threading.Timer | None = None
        if start_within_s is None:
            self.start()
        else:
            self._timer = threading.Timer(start_within_s, self.start)
            self._timer.daemon = True
            self._timer.start()

    def start(self) -> None:
        """Open the run now (idempotent)."""
        with self._lock:
            if not self._thread.is_alive() and not self._ready.is_set():
                self._thread.start()

    def _run(self) -> None:
        try:
            self.ctx = self._open()
        except Exception as e:  # noqa: BLE001 - reported to the trainer, which stops the run
            self.error = f"MLflow: {type(e).__name__}: {e}"
            return
        finally:
            self._ready.set()
        logger = EpochLogger(self.ctx.uri, self.ctx.run_id)
        while (item := self._items.get()) is not _DONE:
            try:
                logger.on_report(*item)
            except Exception as e:  # noqa: BLE001
                self.error = f"MLflow: logging epoch {item[0].get('epoch')} failed: {type(e).__name__}: {e}"

    def log(self, metrics: dict[str, Any], checkpointed: bool) -> None:
        """Queue one epoch's report; never blocks."""
        self._items.put((dict(metrics), checkpointed))

    def wait_open(self, timeout_s: float | None = None) -> TrackingContext | None:
        """The run's context once open (None if opening failed)."""
        self._ready.wait(timeout_s)
        return self.ctx

    def close(self, timeout_s: float = 120.0) -> TrackingContext | None:
        """Log what is queued, stop the thread; the context (None if the run never opened)."""
        if self._timer is not None:
            self._timer.cancel()
        self.start()  # a run that failed before its first step is still recorded (as FAILED)
        self._items.put(_DONE)
        self._thread.join(timeout_s)
        return self.ctx
