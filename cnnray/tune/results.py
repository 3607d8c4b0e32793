"""What a search came to, as plain data: each trial's outcome read from Tune's ResultGrid (best metric,
epochs, run) and the statuses the search's callback recorded, the search's status, and the result object
`cnnray tune --json` prints."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnray.config import TuneSection
from cnnray.tune.plan import SearchIdentity
from cnnray.tune.trial_tables import ranked, trial_rows, trials_table
from cnnray.tune.space import SearchSpace, active_values, sampled_values

COST_DEVICE_KEY = "cost_device_s"  # a trial report's cumulative device-seconds (cnnray.run.cost)

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
    cost_rows: list[dict[str, Any]] = field(default_factory=list)  # each own report's cost_* and where it stood


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


def result_trial_id(result: Any) -> str:
    """The trial a Result belongs to: its directory is named by the trial id (see search._trial_dirname).

    Not `result.metrics["trial_id"]`: a PBT clone restored at its last epoch carries the source's last result.
    """
    return Path(result.path).name


def collect_outcomes(grid: Any, space: SearchSpace, metric: str, mode: str, statuses: dict[str, str], *,
                     all_ended: bool = False) -> list[TrialOutcome]:
    """One TrialOutcome per Result of the ResultGrid, in trial order (a trial Tune created but never started,
    when a budget ended the search, has neither config nor run: it is left out).

    Only public API: Tune's Result carries no status, so `statuses` (trial id -> TERMINATED / ERROR) is what
    the search's callback recorded when each trial ended. `Tuner.restore` does not re-attach callbacks, so a
    resumed search records nothing new: when fit() returned on its own (`all_ended`: no signal, no time
    budget) every trial without an error has ended, and one that did not reach its last epoch was stopped
    by the scheduler (Tune reruns unfinished trials on resume). Otherwise an unrecorded trial is unfinished.
    """
    out = []
    for result in grid:
        trial_id = result_trial_id(result)
        last = dict(result.metrics or {})
        if not result.error and not set(last) - {"trial_id"}:
            continue  # created, never started (a budget ended the search first): no config, no run, no epoch
        status = statuses.get(trial_id) or ("ERROR" if result.error else "TERMINATED" if all_ended else "RUNNING")
        df = result.metrics_dataframe
        history: list[tuple[float, float]] = []
        restored = None
        if df is not None and metric in df.columns:
            rows = df[["timestamp", metric]].dropna()
            history = [(float(t), float(v)) for t, v in rows.itertuples(index=False)]
            if "restored_from" in df.columns:
                found = [v for v in df["restored_from"].dropna().tolist() if v]
                restored = found[-1] if found else None
        cost_rows = _cost_rows(df)
        out.append(TrialOutcome(
            trial_id=trial_id, status=trial_status(status, last),
            params=active_values(space, sampled_values(result.config or {})),
            best=best_of([v for _, v in history], mode), epochs_run=int(last.get("epochs_done", 0)),
            reports=len(history), run_id=own_run_id(trial_id, last),
            checkpoint_path=result.checkpoint.path if result.checkpoint else None,
            error=str(result.error).splitlines()[0][:300] if result.error else None, restored_from=restored,
            history=history, cost_rows=cost_rows,
        ))
    return out


def _cost_rows(df: Any) -> list[dict[str, Any]]:
    """The cost figures of each report in a trial's results (with its time, epoch count and restore source)."""
    if df is None or COST_DEVICE_KEY not in df.columns:
        return []
    keys = [c for c in df.columns if c.startswith("cost_") or c in ("timestamp", "epochs_done", "restored_from")]
    rows = []
    for record in df[keys].to_dict("records"):
        if not isinstance(record.get(COST_DEVICE_KEY), (int, float)) or math.isnan(record[COST_DEVICE_KEY]):
            continue  # a report without costs
        rows.append({k: v for k, v in record.items() if not (isinstance(v, float) and math.isnan(v))})
    return rows


def best_outcome(outcomes: list[TrialOutcome], mode: str) -> TrialOutcome | None:
    """The trial with the best metric that has a checkpoint to register."""
    ranked = [o for o in outcomes if o.best is not None and o.checkpoint_path and o.status != "failed"]
    if not ranked:
        return None
    return (max if mode == "max" else min)(ranked, key=lambda o: o.best)


# --- The whole search.

STATUSES = ("finished", "stopped_early", "failed", "unfinished")


def search_status(outcomes: list[TrialOutcome], *, signalled: bool, budget_hit: bool) -> tuple[str, str | None]:
    """FINISHED when a trial got through; KILLED when told to stop (trials left unfinished); else FAILED."""
    unfinished = any(o.status == "unfinished" for o in outcomes)
    if signalled or (unfinished and not budget_hit):
        return "KILLED", "interrupted"
    if any(o.status in ("finished", "stopped_early") for o in outcomes):
        return "FINISHED", None
    # The budget cut every trial short, but epochs were reported and checkpointed: the search still has a best.
    if budget_hit and any(o.best is not None and o.checkpoint_path and o.status != "failed" for o in outcomes):
        return "FINISHED", None
    if budget_hit and not any(o.status == "failed" for o in outcomes):
        return "FAILED", "the time budget (tune.time_budget_s) ran out before any trial finished an epoch"
    return "FAILED", "every trial failed: " + "; ".join(sorted({o.error or "?" for o in outcomes}))[:1000]


def search_result(status: str, ident: SearchIdentity, t: TuneSection, space: SearchSpace,
                  outcomes: list[TrialOutcome], best: TrialOutcome | None, parent_run_id: str | None,
                  experiment: str) -> dict[str, Any]:
    """The result object: identity, settings, per-trial rows, the table of the best `tune.table_top` trials."""
    rows = trial_rows(outcomes, list(space.params), t.metric)
    ranked_rows = trial_rows(ranked(outcomes, t.mode), list(space.params), t.metric)
    out: dict[str, Any] = {
        "status": status, "name": ident.name, "experiment_path": ident.path, "space": space.name,
        "search": t.search, "scheduler": t.scheduler, "metric": t.metric, "mode": t.mode,
        "parent_run_id": parent_run_id, "experiment": experiment, "num_trials": len(outcomes),
        "counts": {s: sum(o.status == s for o in outcomes) for s in STATUSES},
        "trial_epochs": sum(o.reports for o in outcomes), "trials": rows,
        "table": trials_table(ranked_rows, t.table_top) if rows else "",
    }
    if best is not None:
        out["best"] = {"trial_id": best.trial_id, "value": best.best, "params": best.params,
                       "run_id": best.run_id, "checkpoint": best.checkpoint_path}
    return out


