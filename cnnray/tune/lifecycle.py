"""The driver's view of each trial as it starts, reports and ends: progress lines, the trial's end recorded
(status log, trials.csv row, its MLflow child run closed with its cost), and its overhead.

Built for searches of thousands of trials:
- flat memory: a trial holds an entry here only while it runs; when it ends, what the summary needs is folded
  into a few numbers (its overhead, the first start and last end) and its status string;
- nothing rewritten: the status log and trials.csv get one appended line per trial end;
- MLflow off the critical path: closing a child run (its cost tags and metrics in one batch, then its status) happens
  on a background thread, not in Tune's event loop, which would otherwise wait on the store at every end.

Closing happens on the driver, not in the trial function, because a scheduler stop kills the trial's actor:
code after the stop may never run there, while the driver sees every completion and error.
"""

from __future__ import annotations

import logging
import queue
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from ray.tune import Callback

from cnnray.config.schema import PriceSection
from cnnray.ray_compat import slim_ended_trial
from cnnray.tune.disk_full import note_trial_error
from cnnray.tune.results import MLFLOW_STATUS, own_run_id, trial_status
from cnnray.tune.retention import trial_score

log = logging.getLogger("cnnray")

# What is read of an ended trial's last result (the outcome, its run, its cost) and what Tune itself reads on
# resume; the other ~25 metrics of its last epoch are in MLflow and in its result.json.
KEPT_RESULT_KEYS = frozenset({
    "trial_id", "epochs_done", "train_done", "mlflow_run_id", "restored_from", "epoch", "train_loss", "done",
    "config", "training_iteration", "time_total_s", "time_this_iter_s", "time_since_restore",
    "iterations_since_restore", "timestamp", "date", "checkpoint_dir_name", "should_checkpoint",
})


def child_run_name(tune_name: str, trial_id: str) -> str:
    """The MLflow run name of a trial (also how a resumed search finds it again)."""
    return f"{tune_name}/{trial_id}"


class ChildCloser:
    """Closes trial child runs from a background thread, in order; `drain()` waits for all of them."""

    def __init__(self, children: Any, price: PriceSection | None) -> None:
        self.children, self.price = children, price
        self.closed: set[str] = set()  # trial ids closed (with their cost): the end of the search skips them
        self.children_name = ""  # the search's name: how a run is found when the trial did not report its id
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles its callbacks with the experiment state
        return {**self.__dict__, "_queue": None, "_thread": None}

    def submit(self, trial_id: str, run_id: str | None, status: str, stopped_early: bool,
               report: dict[str, Any] | None) -> None:
        if self._queue is None:
            self._queue = queue.Queue()
            self._thread = threading.Thread(target=self._work, daemon=True, name="cnnray-close-trials")
            self._thread.start()
        self._queue.put((trial_id, run_id, status, stopped_early, report))

    def _work(self) -> None:
        assert self._queue is not None
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._close(*item)
            except Exception as e:  # noqa: BLE001 - the end of the search closes what is left
                log.warning("could not close the MLflow run of trial %s now: %s", item[0], e)
            finally:
                self._queue.task_done()

    def _close(self, trial_id: str, run_id: str | None, status: str, stopped_early: bool,
               report: dict[str, Any] | None) -> None:
        run_id = run_id or self.children.find(child_run_name(self.children_name, trial_id))
        if not run_id:
            return
        self.children.close(run_id, status, stopped_early=stopped_early, report=report, price=self.price)
        if report is not None:
            self.closed.add(trial_id)

    def drain(self, timeout_s: float = 300.0) -> None:
        """Wait until every submitted close is done (the end of the search reads `closed`)."""
        if self._queue is None:
            return
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)


class TrialLifecycle(Callback):
    """Prints trial progress; records each trial's end (status log, trials.csv row); ends its child run
    FINISHED (tag stopped_early) or FAILED; keeps per-trial overhead as numbers."""

    def __init__(self, tune_name: str, metric: str, max_epochs: int, tracking: Any | None,
                 on_line: Callable[[str], None] = print, statuses: dict[str, str] | None = None,
                 persist: Callable[[str, str], None] | None = None,
                 budget_stopped: Callable[[str], bool] | None = None, *, mode: str = "max",
                 price: PriceSection | None = None, table: Any | None = None) -> None:
        self.tune_name, self.metric, self.max_epochs, self.mode = tune_name, metric, max_epochs, mode
        self.budget_stopped = budget_stopped  # whether tune.budget_device_hours (not the scheduler) stopped a trial
        self.tracking = tracking  # ChildRuns, or None when tracking is off
        self.closer = ChildCloser(tracking, price) if tracking is not None else None
        if self.closer is not None:
            self.closer.children_name = tune_name
        self.on_line = on_line
        # trial id -> TERMINATED / ERROR, from these public callbacks (Tune's Result has no status).
        self.statuses = statuses if statuses is not None else {}
        self.persist = persist  # (trial id, status): appends to the search's status log
        self.table = table  # a TrialTable (trials.csv under the search), or None
        self.running: dict[str, list[float]] = {}  # trial id -> [start (driver clock), its epochs' work seconds]
        self.overheads: list[float] = []  # per ended trial: wall time minus its epochs' train + validation time
        self.work: list[float] = []  # per ended trial: its epochs' seconds
        self.first_start: float | None = None
        self.last_end: float | None = None

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        now = time.time()
        self.running.setdefault(trial.trial_id, [now, 0.0])
        self.first_start = now if self.first_start is None else self.first_start

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        entry = self.running.setdefault(trial.trial_id, [time.time(), 0.0])
        entry[1] += float(result.get("epoch_time_s", 0.0)) + float(result.get("val_time_s", 0.0))
        value = result.get(self.metric)
        text = f"{value:.4f}" if isinstance(value, (int, float)) else "-"
        line = (f"[{trial.trial_id}] epoch {int(result.get('epochs_done', 0))}/{self.max_epochs}  "
                f"{self.metric} {text}  train_loss {result.get('train_loss', float('nan')):.4f}")
        if result.get("restored_from"):
            line += f"  (from {result['restored_from']})"
        self.on_line(line)

    def _close(self, trial: Any, status: str) -> None:
        self.statuses[trial.trial_id] = status
        now = time.time()
        entry = self.running.pop(trial.trial_id, None)
        if entry is not None:
            self.overheads.append(max(0.0, now - entry[0] - entry[1]))
            self.work.append(entry[1])
            self.last_end = now
        if self.persist is not None:
            self.persist(trial.trial_id, status)
        last = dict(trial.last_result or {})
        outcome = trial_status(status, last)
        if self.table is not None:
            self.table.append(trial, outcome, trial_score(trial, self.metric, self.mode))
        self._say(trial, outcome, last)
        if self.closer is not None:
            own = last.get("trial_id") in (None, trial.trial_id)  # a PBT clone restored at its end: another's
            self.closer.submit(trial.trial_id, own_run_id(trial.trial_id, last), MLFLOW_STATUS[outcome],
                               outcome == "stopped_early", last if own and last.get("epochs_done") else None)
        slim_ended_trial(trial, self.metric, KEPT_RESULT_KEYS, ("cost_",))

    def _say(self, trial: Any, outcome: str, last: dict[str, Any]) -> None:
        if outcome == "stopped_early" and not last.get("epochs_done"):
            self.on_line(f"[{trial.trial_id}] not started: tune.budget_device_hours is spent")
        elif outcome == "stopped_early":
            by = "tune.budget_device_hours" if self.budget_stopped and self.budget_stopped(trial.trial_id) else \
                "the scheduler"
            self.on_line(f"[{trial.trial_id}] stopped by {by} after epoch {int(last.get('epochs_done', 0))}")
        elif outcome == "failed":
            self.on_line(f"[{trial.trial_id}] FAILED")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._close(trial, "TERMINATED")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._close(trial, "ERROR")
        full = note_trial_error(self.tune_name, trial)
        if full:
            self.on_line(f"[{trial.trial_id}] the disk is full ({full}): the search stops; the trials that "
                         "finished keep their checkpoints")

    def closed_runs(self) -> set[str]:
        """Trial ids whose child runs were closed with their cost (after waiting for the background closes)."""
        if self.closer is None:
            return set()
        self.closer.drain()
        return set(self.closer.closed)

    def overhead(self) -> dict[str, Any] | None:
        """Per-trial overhead (a trial's wall time from its start to its end, minus its epochs' train and
        validation time), over the trials that started and ended in this command; None if none did."""
        if not self.overheads:
            return None
        over = sorted(self.overheads)
        span = (self.last_end or 0.0) - (self.first_start or 0.0)
        p95 = over[min(len(over) - 1, int(round(0.95 * (len(over) - 1))))]
        return {"trials": len(over), "median_s": round(statistics.median(over), 2), "p95_s": round(p95, 2),
                "max_s": round(over[-1], 2), "mean_work_s": round(statistics.mean(self.work), 2),
                "trials_per_minute": round(60 * len(over) / max(span, 1e-9), 1)}
