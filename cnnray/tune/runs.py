"""A search's MLflow runs (through cnnray.tracking): each trial's child run, created or re-attached in the
trial, closed by the driver as the trial ends; at the end, the parent's summary and the best trial registered.

Closing happens on the driver (`TrialLifecycle`), not in the trial function, because a scheduler stop
kills the trial's actor: code after the stop may never run there, while the driver sees every
completion and error.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from ray.tune import Callback

from cnnray import tracking
from cnnray.classifier.card import card_for_training
from cnnray.config import Config, config_hash, to_yaml
from cnnray.config.schema import PriceSection
from cnnray.run.cost import cost_result, totals_of_report
from cnnray.run.outcome import load_best
from cnnray.tracking.runs import TrackingContext, log_artifact_file, log_metrics, log_text, metric_history, set_tags
from cnnray.tune.cost import cost_metrics, cost_rows, format_search_cost
from cnnray.tune.results import MLFLOW_STATUS, TrialOutcome, own_run_id, trial_status
from cnnray.tune.space import SearchSpace
from cnnray.tune.trial_tables import (
    plot_best_so_far,
    plot_metric_vs_params,
    plot_top_trials,
    ranked,
    trial_rows,
    trials_csv,
    trials_table,
)


def child_run_name(tune_name: str, trial_id: str) -> str:
    """The MLflow run name of a trial (also how a resumed search finds it again)."""
    return f"{tune_name}/{trial_id}"


def attach_child_run(setup: Any, cfg: Config, trial_id: str, restored_from: str | None):
    """Create the trial's child run, or re-attach it (PBT restart, resumed search): never a duplicate.

    `setup` is the trial's `cnnray.tune.trial.TrialSetup`; returns (context, epoch logger), or Nones when off.
    """
    if setup.tracking_uri is None:
        return None, None
    name = child_run_name(setup.tune_name, trial_id)
    ctx = tracking.start_run(cfg, name, uri=setup.tracking_uri, resume=True, parent_run_id=setup.parent_run_id,
                             tags={"cnnray.trial_id": trial_id, "cnnray.tune_run": setup.tune_name,
                                   "cnnray.data_fingerprint": setup.prep.info.fingerprint,
                                   "cnnray.config_hash": config_hash(cfg)})
    if restored_from:
        # PBT changed this trial's config; params are immutable in MLflow, so the new config is an artifact.
        set_tags(ctx, {"cnnray.restored_from": restored_from})
        log_text(ctx, to_yaml(cfg), f"configs/from_{restored_from.replace('@', '_epoch')}.yaml")
    logger = tracking.EpochLogger(ctx.uri, ctx.run_id)
    # Epochs logged before a restart stay as they were: the first value of a step wins.
    logger.logged = {step for step, _ in metric_history(ctx, "train_loss")}
    return ctx, logger


@dataclass
class ChildRuns:
    """Finds and closes trial child runs (picklable: plain strings)."""

    uri: str
    experiment: str
    experiment_id: str

    def find(self, run_name: str) -> str | None:
        """Run id of a trial's child run by its name tag."""
        return tracking.find_run_by_name(self.uri, self.experiment, run_name)

    def record_cost(self, run_id: str, report: dict[str, Any], price: PriceSection) -> None:
        """A trial's run cost from its last report (its cumulative figures), as a training run records it."""
        # deferred (heavy import): matplotlib
        from cnnray.run.finish import record_cost

        totals = totals_of_report(report)
        if totals is not None:
            record_cost(TrackingContext(self.uri, self.experiment_id, run_id), cost_result(totals, price),
                        int(report.get("epochs_done") or 1) - 1)

    def close(self, run_id: str, status: str, *, stopped_early: bool = False) -> None:
        """End a child run with its final status; an early stop is tagged, not failed."""
        ctx = TrackingContext(self.uri, self.experiment_id, run_id)
        set_tags(ctx, {"stopped_early": str(stopped_early).lower()})
        tracking.end_run(ctx, status)


def close_children(children: ChildRuns, tune_name: str, outcomes: list[TrialOutcome],
                   price: PriceSection | None = None, registering: str | None = None) -> None:
    """Every trial's child run to its final status (interrupted trials: KILLED, re-opened on --resume); with
    `price`, each run that reported costs also gets cost_device_hours (and cost_money) and its cost tags, as a
    training run does (except the trial `registering`, whose registration records them)."""
    for o in outcomes:
        run_id = o.run_id or children.find(child_run_name(tune_name, o.trial_id))
        if run_id:
            o.run_id = run_id
            if price is not None and o.cost_rows and o.trial_id != registering:
                children.record_cost(run_id, o.cost_rows[-1], price)
            children.close(run_id, MLFLOW_STATUS[o.status], stopped_early=o.status == "stopped_early")


def log_search_summary(ctx: TrackingContext, outcomes: list[TrialOutcome], space: SearchSpace, metric: str,
                       mode: str, best: TrialOutcome | None, top: int = 20) -> None:
    """Parent run: trials best first (CSV: all, text: the `top`), the search's plots, best metric."""
    rows = trial_rows(ranked(outcomes, mode), list(space.params), metric)
    log_text(ctx, trials_csv(rows), "trials.csv")
    log_text(ctx, trials_table(rows, top) + "\n", "trials.txt")
    with tracking.runs.scratch_dir() as tmp:
        log_artifact_file(ctx, plot_best_so_far(outcomes, metric, mode, Path(tmp) / "best_so_far.png"))
        log_artifact_file(ctx, plot_metric_vs_params(outcomes, space, metric, Path(tmp) / "metric_vs_params.png",
                                                     mode=mode, top=top))
        log_artifact_file(ctx, plot_top_trials(outcomes, metric, mode, top, Path(tmp) / "top_trials.png"))
    counts = {s: sum(o.status == s for o in outcomes) for s in MLFLOW_STATUS}
    log_metrics(ctx, {"num_trials": len(outcomes), "trial_epochs": sum(o.reports for o in outcomes),
                      **{f"trials_{k}": v for k, v in counts.items()}})
    if best is not None and best.best is not None:
        log_metrics(ctx, {f"best_{metric}": best.best})
        set_tags(ctx, {"cnnray.best_trial_id": best.trial_id, "cnnray.best_run_id": best.run_id or ""})


def log_search_cost(ctx: TrackingContext, cost: dict[str, Any], mode: str, scheduler: str,
                    end_reason: str | None = None) -> None:
    """Parent run: the cost_* sums over the trials, the search's wall clock and the scheduler's saving (metrics),
    the per-trial cost table (cost.txt, cost.csv), and cnnray.end_reason when a budget ended the search."""
    rows = cost_rows(cost, mode)
    log_metrics(ctx, cost_metrics(cost))
    log_text(ctx, trials_csv(rows), "cost.csv")
    log_text(ctx, format_search_cost(cost, scheduler) + "\n\n" + trials_table(rows) + "\n", "cost.txt")
    if end_reason:
        set_tags(ctx, {"cnnray.end_reason": end_reason})


def register_best(children: ChildRuns, best: TrialOutcome, best_cfg: Config, prep: Any, tune_name: str,
                  parent_run_id: str, extra_tags: dict[str, str] | None = None) -> dict[str, Any]:
    """Log the best trial's best weights in its child run and register them (alias from registry.alias);
    `extra_tags` go on the version too (the search's cost)."""
    # deferred (heavy import): matplotlib
    from cnnray.run.finish import finish_training_run

    assert best.run_id and best.checkpoint_path
    weights, meta = load_best(best.checkpoint_path)
    ctx = TrackingContext(children.uri, children.experiment_id, best.run_id)
    trial_prep = replace(prep, cfg=best_cfg, run_name=child_run_name(tune_name, best.trial_id))
    tags = {"cnnray.tune_run": tune_name, "cnnray.tune_parent_run_id": parent_run_id, "cnnray.trial_id": best.trial_id,
            **(extra_tags or {})}
    out = finish_training_run(ctx, best_cfg, trial_prep, weights, meta,
                              make_card=partial(card_for_training, best_cfg, prep.info), extra_tags=tags)
    # Registration reopens the run; put back the status the trial ended with.
    children.close(best.run_id, MLFLOW_STATUS[best.status], stopped_early=best.status == "stopped_early")
    return out


class TrialLifecycle(Callback):
    """Prints trial progress; ends trial child runs FINISHED (tag stopped_early) or FAILED."""

    def __init__(self, tune_name: str, metric: str, max_epochs: int, tracking: Any | None,
                 on_line: Callable[[str], None] = print, statuses: dict[str, str] | None = None,
                 persist: Callable[[dict[str, str]], None] | None = None,
                 budget_stopped: Callable[[str], bool] | None = None) -> None:
        self.tune_name, self.metric, self.max_epochs = tune_name, metric, max_epochs
        self.budget_stopped = budget_stopped  # whether tune.budget_device_hours (not the scheduler) stopped a trial
        self.tracking = tracking  # ChildRuns, or None when tracking is off
        self.on_line = on_line
        # trial id -> TERMINATED / ERROR, from these public callbacks (Tune's Result has no status).
        self.statuses = statuses if statuses is not None else {}
        self.persist = persist
        # trial id -> {"start", "end" (driver clock), "work_s" (its epochs: train + validation)}: overhead
        self.timing: dict[str, dict[str, float]] = {}

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.timing.setdefault(trial.trial_id, {"start": time.time(), "work_s": 0.0})

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        t = self.timing.setdefault(trial.trial_id, {"start": time.time(), "work_s": 0.0})
        t["work_s"] += float(result.get("epoch_time_s", 0.0)) + float(result.get("val_time_s", 0.0))
        value = result.get(self.metric)
        text = f"{value:.4f}" if isinstance(value, (int, float)) else "-"
        line = (f"[{trial.trial_id}] epoch {int(result.get('epochs_done', 0))}/{self.max_epochs}  "
                f"{self.metric} {text}  train_loss {result.get('train_loss', float('nan')):.4f}")
        if result.get("restored_from"):
            line += f"  (from {result['restored_from']})"
        self.on_line(line)

    def _close(self, trial: Any, status: str) -> None:
        self.statuses[trial.trial_id] = status
        if trial.trial_id in self.timing:
            self.timing[trial.trial_id]["end"] = time.time()
        if self.persist is not None:
            self.persist(dict(self.statuses))
        last = dict(trial.last_result or {})
        outcome = trial_status(status, last)
        if outcome == "stopped_early" and not last.get("epochs_done"):
            self.on_line(f"[{trial.trial_id}] not started: tune.budget_device_hours is spent")
        elif outcome == "stopped_early":
            by = "tune.budget_device_hours" if self.budget_stopped and self.budget_stopped(trial.trial_id) else \
                "the scheduler"
            self.on_line(f"[{trial.trial_id}] stopped by {by} after epoch {int(last.get('epochs_done', 0))}")
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


def trial_overhead(timing: dict[str, dict[str, float]]) -> dict[str, Any] | None:
    """Per-trial overhead (a trial's wall time from its start to its end, minus its epochs' train and
    validation time), over the trials that started and ended in this command; None if none did."""
    ended = [t for t in timing.values() if "end" in t]
    if not ended:
        return None
    over = [max(0.0, t["end"] - t["start"] - t["work_s"]) for t in ended]
    span = max(t["end"] for t in ended) - min(t["start"] for t in ended)
    return {"trials": len(ended), "median_s": round(statistics.median(over), 2), "max_s": round(max(over), 2),
            "mean_work_s": round(statistics.mean(t["work_s"] for t in ended), 2),
            "trials_per_minute": round(60 * len(ended) / max(span, 1e-9), 1)}
