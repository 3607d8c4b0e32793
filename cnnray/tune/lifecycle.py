"""Driver-side Tune callback: a progress line per trial epoch, and each child run closed as its trial ends.

Closing here, not in the trial function, because a scheduler stop kills the trial's actor: code
after the stop may never run there, while the driver sees every completion and error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray.tune import Callback

from cnnray.tune.outcome import MLFLOW_STATUS, own_run_id, trial_status
from cnnray.tune.trial import child_run_name


class TrialLifecycle(Callback):
    """Prints trial progress; ends trial child runs FINISHED (tag stopped_early) or FAILED."""

    def __init__(self, tune_name: str, metric: str, max_epochs: int, tracking: Any | None,
                 on_line: Callable[[str], None] = print) -> None:
        self.tune_name, self.metric, self.max_epochs = tune_name, metric, max_epochs
        self.tracking = tracking  # cnnray.tune.finalize.ChildRuns, or None when tracking is off
        self.on_line = on_line

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        value = result.get(self.metric)
        text = f"{value:.4f}" if isinstance(value, (int, float)) else "-"
        line = (f"[{trial.trial_id}] epoch {int(result.get('epochs_done', 0))}/{self.max_epochs}  "
                f"{self.metric} {text}  train_loss {result.get('train_loss', float('nan')):.4f}")
        if result.get("restored_from"):
            line += f"  (from {result['restored_from']})"
        self.on_line(line)

    def _close(self, trial: Any, status: str) -> None:
        last = dict(trial.last_result or {})
        outcome = trial_status(status, last)
        if outcome == "stopped_early":
            self.on_line(f"[{trial.trial_id}] stopped by the scheduler after epoch {int(last.get('epochs_done', 0))}")
        elif outcome == "failed":
            self.on_line(f"[{trial.trial_id}] FAILED")
        if self.tracking is not None:
            run_id = own_run_id(trial.trial_id, last) or self.tracking.find(child_run_name(self.tune_name, trial.trial_id))
            if run_id:
                self.tracking.close(run_id, MLFLOW_STATUS[outcome], stopped_early=outcome == "stopped_early")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._close(trial, "TERMINATED")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._close(trial, "ERROR")
