"""The outcome of a whole search: its status, and the result object `cnnray tune --json` prints."""

from __future__ import annotations

from typing import Any

from cnnray.config import TuneConfig
from cnnray.tune.experiment import SearchIdentity
from cnnray.tune.outcome import TrialOutcome
from cnnray.tune.report import trial_rows, trials_table
from cnnray.tune.space import SearchSpace

STATUSES = ("finished", "stopped_early", "failed", "unfinished")


def search_status(outcomes: list[TrialOutcome], *, signalled: bool, budget_hit: bool) -> tuple[str, str | None]:
    """FINISHED when a trial got through; KILLED when told to stop (trials left unfinished); else FAILED."""
    unfinished = any(o.status == "unfinished" for o in outcomes)
    if signalled or (unfinished and not budget_hit):
        return "KILLED", "interrupted"
    if any(o.status in ("finished", "stopped_early") for o in outcomes):
        return "FINISHED", None
    return "FAILED", "every trial failed: " + "; ".join(sorted({o.error or "?" for o in outcomes}))[:1000]


def search_result(status: str, ident: SearchIdentity, t: TuneConfig, space: SearchSpace,
                  outcomes: list[TrialOutcome], best: TrialOutcome | None, parent_run_id: str | None,
                  experiment: str) -> dict[str, Any]:
    """The result object: identity, settings, per-trial rows and the best trial."""
    rows = trial_rows(outcomes, list(space.params), t.metric)
    out: dict[str, Any] = {
        "status": status, "name": ident.name, "experiment_path": ident.path, "space": space.name,
        "search": t.search, "scheduler": t.scheduler, "metric": t.metric, "mode": t.mode,
        "parent_run_id": parent_run_id, "experiment": experiment, "num_trials": len(outcomes),
        "counts": {s: sum(o.status == s for o in outcomes) for s in STATUSES},
        "trial_epochs": sum(o.reports for o in outcomes), "trials": rows,
        "table": trials_table(rows) if rows else "",
    }
    if best is not None:
        out["best"] = {"trial_id": best.trial_id, "value": best.best, "params": best.params,
                       "run_id": best.run_id, "checkpoint": best.checkpoint_path}
    return out
