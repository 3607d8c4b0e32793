"""MLflow at the end of a search (through cnnray.tracking): child statuses, parent table and plots, the challenger."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cnnray import tracking
from cnnray.config import Config
from cnnray.tracking.runs import TrackingContext, log_artifact_file, log_metrics, log_text, set_tags
from cnnray.tune.outcome import MLFLOW_STATUS, TrialOutcome
from cnnray.tune.plots import plot_best_so_far, plot_metric_vs_params
from cnnray.tune.report import trial_rows, trials_csv, trials_table
from cnnray.tune.space import SearchSpace
from cnnray.tune.trial import child_run_name


@dataclass
class ChildRuns:
    """Finds and closes trial child runs (picklable: plain strings)."""

    uri: str
    experiment: str
    experiment_id: str

    def find(self, run_name: str) -> str | None:
        """Run id of a trial's child run by its name tag."""
        return tracking.find_run_by_name(self.uri, self.experiment, run_name)

    def close(self, run_id: str, status: str, *, stopped_early: bool = False) -> None:
        """End a child run with its final status; an early stop is tagged, not failed."""
        ctx = TrackingContext(self.uri, self.experiment_id, run_id)
        set_tags(ctx, {"stopped_early": str(stopped_early).lower()})
        tracking.end_run(ctx, status)


def close_children(children: ChildRuns, tune_name: str, outcomes: list[TrialOutcome]) -> None:
    """Every trial's child run to its final status (interrupted trials: KILLED, re-opened on --resume)."""
    for o in outcomes:
        run_id = o.run_id or children.find(child_run_name(tune_name, o.trial_id))
        if run_id:
            o.run_id = run_id
            children.close(run_id, MLFLOW_STATUS[o.status], stopped_early=o.status == "stopped_early")


def log_search_summary(ctx: TrackingContext, outcomes: list[TrialOutcome], space: SearchSpace, metric: str,
                       mode: str, best: TrialOutcome | None) -> None:
    """Parent run: trials table (CSV + text), best-so-far and metric-vs-parameter plots, best metric."""
    rows = trial_rows(outcomes, list(space.params), metric)
    log_text(ctx, trials_csv(rows), "trials.csv")
    log_text(ctx, trials_table(rows) + "\n", "trials.txt")
    with tracking.runs.scratch_dir() as tmp:
        log_artifact_file(ctx, plot_best_so_far(outcomes, metric, mode, Path(tmp) / "best_so_far.png"))
        log_artifact_file(ctx, plot_metric_vs_params(outcomes, space, metric, Path(tmp) / "metric_vs_params.png"))
    counts = {s: sum(o.status == s for o in outcomes) for s in MLFLOW_STATUS}
    log_metrics(ctx, {"num_trials": len(outcomes), "trial_epochs": sum(o.reports for o in outcomes),
                      **{f"trials_{k}": v for k, v in counts.items()}})
    if best is not None and best.best is not None:
        log_metrics(ctx, {f"best_{metric}": best.best})
        set_tags(ctx, {"cnnray.best_trial_id": best.trial_id, "cnnray.best_run_id": best.run_id or ""})


def register_best(children: ChildRuns, best: TrialOutcome, best_cfg: Config, prep: Any, tune_name: str,
                  parent_run_id: str) -> dict[str, Any]:
    """Log the best trial's best weights in its child run and register them (alias from registry.alias)."""
    from cnnray.tracking.finish import finish_training_run
    from cnnray.train.trainer import load_best

    assert best.run_id and best.checkpoint_path
    weights, meta = load_best(best.checkpoint_path)
    ctx = TrackingContext(children.uri, children.experiment_id, best.run_id)
    trial_prep = replace(prep, cfg=best_cfg, run_name=child_run_name(tune_name, best.trial_id))
    out = finish_training_run(ctx, best_cfg, trial_prep, weights, meta, extra_tags={
        "cnnray.tune_run": tune_name, "cnnray.tune_parent_run_id": parent_run_id, "cnnray.trial_id": best.trial_id})
    # Registration reopens the run; put back the status the trial ended with.
    children.close(best.run_id, MLFLOW_STATUS[best.status], stopped_early=best.status == "stopped_early")
    return out
