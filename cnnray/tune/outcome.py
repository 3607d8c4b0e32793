"""What each trial came to, as plain data read from Tune's ResultGrid (status, best metric, epochs, run)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from cnnray.tune.resolve import active_values, sampled_values
from cnnray.tune.space import SearchSpace

# Trial outcome -> the MLflow status its child run ends with (an early stop is a normal end).
MLFLOW_STATUS = {"finished": "FINISHED", "stopped_early": "FINISHED", "failed": "FAILED", "unfinished": "KILLED"}


@dataclass
class TrialOutcome:
    """One trial, as the search left it."""

    trial_id: str
    status: str  # finished | stopped_early | failed | unfinished
    params: dict[str, Any]
    best: float | None  # best value of the search metric over the trial's epochs
    epochs_run: int  # epochs the trial's model has seen (PBT: counted through the cloned trial)
    reports: int  # epochs this trial trained itself: its share of the search's compute
    run_id: str | None
    checkpoint_path: str | None
    error: str | None = None
    restored_from: str | None = None
    history: list[tuple[float, float]] = field(default_factory=list)  # (timestamp, metric) per epoch


def trial_status(tune_status: str, last_result: dict[str, Any]) -> str:
    """Our outcome from Tune's status: TERMINATED without the last epoch means a scheduler stopped it."""
    if tune_status == "ERROR":
        return "failed"
    if tune_status == "TERMINATED":
        return "finished" if last_result.get("train_done") else "stopped_early"
    return "unfinished"


def own_run_id(trial_id: str, last_result: dict[str, Any]) -> str | None:
    """The MLflow run id a trial reported, if the result is its own.

    A PBT clone restored at its last epoch reports nothing after the restore, and Tune leaves it the
    cloned trial's last result: that run id belongs to the other trial, so the caller must look it up by name.
    """
    if last_result.get("trial_id") not in (None, trial_id):
        return None
    return last_result.get("mlflow_run_id") or None


def best_of(values: list[float], mode: str) -> float | None:
    """Best finite value, or None."""
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not finite:
        return None
    return max(finite) if mode == "max" else min(finite)


def _trials_of(grid: Any) -> list[Any]:
    # Tune's Trial objects carry the status (TERMINATED / ERROR / RUNNING...); the public Result does not.
    from cnnray.ray_compat import tune_trials

    return tune_trials(grid)


def collect_outcomes(grid: Any, space: SearchSpace, metric: str, mode: str) -> list[TrialOutcome]:
    """One TrialOutcome per trial of the ResultGrid, in trial order."""
    out = []
    for trial, result in zip(_trials_of(grid), grid):
        last = dict(trial.last_result or {})
        df = result.metrics_dataframe
        history: list[tuple[float, float]] = []
        restored = None
        if df is not None and metric in df.columns:
            rows = df[["timestamp", metric]].dropna()
            history = [(float(t), float(v)) for t, v in rows.itertuples(index=False)]
            if "restored_from" in df.columns:
                found = [v for v in df["restored_from"].dropna().tolist() if v]
                restored = found[-1] if found else None
        out.append(TrialOutcome(
            trial_id=trial.trial_id, status=trial_status(trial.status, last),
            params=active_values(space, sampled_values(trial.config)),
            best=best_of([v for _, v in history], mode), epochs_run=int(last.get("epochs_done", 0)),
            reports=len(history), run_id=own_run_id(trial.trial_id, last),
            checkpoint_path=result.checkpoint.path if result.checkpoint else None,
            error=str(result.error).splitlines()[0][:300] if result.error else None, restored_from=restored,
            history=history,
        ))
    return out


def best_outcome(outcomes: list[TrialOutcome], mode: str) -> TrialOutcome | None:
    """The trial with the best metric that has a checkpoint to register."""
    ranked = [o for o in outcomes if o.best is not None and o.checkpoint_path and o.status != "failed"]
    if not ranked:
        return None
    return (max if mode == "max" else min)(ranked, key=lambda o: o.best)
