"""A search's MLflow runs (through cnnray.tracking): each trial's child run, created or re-attached in the
trial, closed by the driver as the trial ends; at the end, the parent's summary and the best trial registered.

Closing happens on the driver (`TrialLifecycle`), not in the trial function, because a scheduler stop
kills the trial's actor: code after the stop may never run there, while the driver sees every
completion and error.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from cnnray import tracking
from cnnray.classifier.card import card_for_training
from cnnray.config import Config, config_hash, to_yaml
from cnnray.config.schema import PriceSection
from cnnray.run.cost import cost_result, totals_of_report
from cnnray.run.outcome import load_best
from cnnray.tracking.runs import TrackingContext, log_artifact_file, log_metrics, log_text, metric_history, set_tags
from cnnray.tune.cost import cost_metrics, cost_rows, format_search_cost
from cnnray.tune.lifecycle import child_run_name
from cnnray.tune.results import MLFLOW_STATUS, TrialOutcome
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


RUN_ID_FILE = "mlflow_run_id"  # in the trial's folder: a restart of the trial re-attaches without a search


def attach_child_run(setup: Any, cfg: Config, trial_id: str, restored_from: str | None, *,
                     maybe_exists: bool = True, trial_dir: str | None = None):
    """Create the trial's child run, or re-attach it (PBT restart, resumed search): never a duplicate.

    `setup` is the trial's `cnnray.tune.trial.TrialSetup`; returns (context, epoch logger), or Nones when off.
    A trial's first start (`maybe_exists` False) creates its run straight away: at thousands of trials, a
    search of the store by run name at every start is what slows a search down as its store grows. The run id
    is kept in `trial_dir` so a restart on the same node re-attaches without that search either.
    """
    if setup.tracking_uri is None:
        return None, None
    name = child_run_name(setup.tune_name, trial_id)
    id_file = Path(trial_dir) / RUN_ID_FILE if trial_dir else None
    known = id_file.read_text().strip() if id_file is not None and id_file.is_file() else None
    ctx = tracking.start_run(cfg, name, uri=setup.tracking_uri, resume=maybe_exists or known is not None,
                             parent_run_id=setup.parent_run_id, experiment_id=setup.experiment_id, run_id=known or None,
                             tags={"cnnray.trial_id": trial_id, "cnnray.tune_run": setup.tune_name,
                                   "cnnray.data_fingerprint": setup.prep.info.fingerprint,
                                   "cnnray.config_hash": config_hash(cfg)})
    if id_file is not None and ctx.created:
        id_file.parent.mkdir(parents=True, exist_ok=True)
        id_file.write_text(ctx.run_id)
    if restored_from:
        # PBT changed this trial's config; params are immutable in MLflow, so the new config is an artifact.
        set_tags(ctx, {"cnnray.restored_from": restored_from})
        log_text(ctx, to_yaml(cfg), f"configs/from_{restored_from.replace('@', '_epoch')}.yaml")
    logger = tracking.EpochLogger(ctx.uri, ctx.run_id)
    if not ctx.created:
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

    def close(self, run_id: str, status: str, *, stopped_early: bool = False, report: dict[str, Any] | None = None,
              price: PriceSection | None = None) -> None:
        """End a child run with its final status; an early stop is tagged, not failed. With the trial's last
        `report` and a `price`, its cost goes in the same call (its cost tags and cost_device_hours, as a training run records them)."""
        ctx = TrackingContext(self.uri, self.experiment_id, run_id)
        tags: dict[str, Any] = {"stopped_early": str(stopped_early).lower()}
        metrics: dict[str, float] = {}
        totals = totals_of_report(report) if report is not None and price is not None else None
        if totals is not None:
            # deferred (heavy import): matplotlib
            from cnnray.run.finish import cost_tags

            cost = cost_result(totals, price)
            tags.update(cost_tags(cost))
            metrics["cost_device_hours"] = float(cost["device_hours"])
            if cost.get("money") is not None:
                metrics["cost_money"] = float(cost["money"])
        step = max(0, int((report or {}).get("epochs_done") or 1) - 1)
        tracking.runs.log_batch(ctx, metrics=metrics, tags=tags, step=step)
        tracking.end_run(ctx, status)


def close_children(children: ChildRuns, tune_name: str, outcomes: list[TrialOutcome],
                   price: PriceSection | None = None, registering: str | None = None,
                   closed: set[str] | frozenset[str] = frozenset()) -> None:
    """Every trial's child run to its final status (interrupted trials: KILLED, re-opened on --resume); with
    `price`, each run that reported costs also gets cost_device_hours (and cost_money) and its cost tags, as a
    training run does (except the trial `registering`, whose registration records them). Trials in `closed`
    were closed, cost included, as they ended (TrialLifecycle): only their run id is looked up, if missing."""
    for o in outcomes:
        if o.trial_id in closed and o.status in ("finished", "stopped_early", "failed"):
            if not o.run_id:
                o.run_id = children.find(child_run_name(tune_name, o.trial_id))
            continue
        run_id = o.run_id or children.find(child_run_name(tune_name, o.trial_id))
        if run_id:
            o.run_id = run_id
            report = o.cost_rows[-1] if o.cost_rows and o.trial_id != registering else None
            children.close(run_id, MLFLOW_STATUS[o.status], stopped_early=o.status == "stopped_early",
                           report=report, price=price)


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
