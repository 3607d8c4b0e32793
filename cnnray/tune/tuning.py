"""`cnnray tune` end to end: validate, start Ray, run (or restore) the Tuner, close MLflow runs, register the best."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from cnnray import tracking
from cnnray.cluster.local_ray import unwatch_mlflow_run
from cnnray.cluster.ray_session import GracefulStop, ensure_ray
from cnnray.config import Config
from cnnray.data.uri import path_exists
from cnnray.errors import ConfigError
from cnnray.models import load_initial_weights
from cnnray.models.from_config import build_model
from cnnray.run.claim import RunClaim
from cnnray.run.mlflow_run import open_watched_run
from cnnray.run.plan import prepare_run
from cnnray.run.stage import stage_initial_weights
from cnnray.run.test_hooks import read_test_hooks
from cnnray.run.cost import device_hours
from cnnray.tune.cost import cost_tags, search_cost, spend_of_rows, too_small_message
from cnnray.tune.plan import (
    SearchIdentity,
    budget_marker,
    check_settings,
    check_trial_fits,
    load_search_state,
    load_trial_reports,
    load_trial_statuses,
    save_budget_marker,
    save_search_state,
    save_trial_status,
    search_identity,
    trial_base_config,
    trial_runner,
)
from cnnray.tune.results import best_outcome, collect_outcomes, search_result, search_status
from cnnray.tune.trial_tables import cost_table
from cnnray.tune.space import SearchSpace, check_space, load_space, trial_config


def resolve_search(cfg: Config, space_ref: str | None = None) -> tuple[Config, SearchSpace, SearchIdentity]:
    """Everything checked before Ray starts (ConfigError -> exit 2): space, settings, identity."""
    if cfg.tune.resume:
        ident = search_identity(cfg)
        tree, space = load_search_state(ident)
        # The saved search wins; only where to run it may change.
        tree["run"].update(name=ident.name, address=cfg.run.address)
        tree["tune"]["resume"] = True
        cfg = Config.model_validate(tree)
    else:
        space = load_space(space_ref or cfg.tune.space)
        cfg = cfg.model_copy(update={"tune": cfg.tune.model_copy(update={"space": space.name})})
        ident = None
    check_settings(cfg, space)
    check_space(space, trial_base_config(cfg))
    ident = ident or search_identity(cfg)
    if ident.resume and cfg.tune.budget_device_hours is not None:
        _check_budget_buys_an_epoch(cfg.tune.budget_device_hours, ident)
    return cfg, space, ident


def _check_budget_buys_an_epoch(budget_h: float, ident: SearchIdentity) -> None:
    """A resumed search's trials reported what a trial-epoch costs: a budget below that exits 2 before any work.
    (A new search learns it from its first epoch: see cnnray/tune/budget.py.)"""
    mean = spend_of_rows(load_trial_reports(ident)).mean_epoch_device_s
    if mean is not None and device_hours(mean) > budget_h:
        raise ConfigError(too_small_message(budget_h, mean))


def _check_model_edges(space: SearchSpace, prep: Any) -> None:
    """Build the model at every edge of each searched model.* key (and fit model.init_from's weights into it):
    unknown layer names and weights that do not fit fail here, not in a trial."""
    source = prep.init_source
    for p in space.params.values():
        if not p.key.startswith("model."):
            continue
        for value in p.edges():
            parents = {parent: allowed[0] for parent, allowed in p.when.items()}
            try:
                cfg = trial_config(prep.cfg, space, {**parents, p.key: value})
                model = build_model(cfg, prep.info.num_classes, prep.info.channels)
                if source is not None:
                    load_initial_weights(model, source.state, strict=cfg.model.init_strict, source_classes=source.classes,
                                         target_classes=prep.info.class_names or None)
            except Exception as e:  # noqa: BLE001 - any refusal of the model is bad input
                raise ConfigError(f"search space '{space.name}': {p.key}={value!r}: {e}") from None


def run_tune(cfg: Config, *, space_ref: str | None = None, verbose: bool = False,
             on_line: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) a search; returns the result object. ConfigError before any trial on bad input."""
    t0 = time.time()
    cfg, space, ident = resolve_search(cfg, space_ref)

    base = trial_base_config(cfg)
    check_cfg = base.model_copy(update={"run": base.run.model_copy(update={"name": ident.name}),
                                        "scaling": base.scaling.model_copy(update={"storage_path": f"{ident.path}/train"})})
    prep = replace(prepare_run(check_cfg), cfg=base)  # data and model checked: DataError/ConfigError -> exit 2
    _check_model_edges(space, prep)
    runner = trial_runner(cfg, prep.loader_kind)
    # The search name is claimed before any work: a second search under it exits 2 naming the holder.
    claim = RunClaim(ident.path, what="search").acquire(new=not ident.resume)
    try:
        stage_initial_weights(prep, ident.path)  # model.init_from: one file under the search for every trial
        if prep.init_source is not None:
            on_line(prep.init_source.summary())
        return _run_search(cfg, space, ident, base, prep, runner, t0, verbose=verbose, on_line=on_line)
    finally:
        claim.release(remove_if_unused=True)


def _run_search(cfg: Config, space: SearchSpace, ident: SearchIdentity, base: Config, prep: Any, runner: str,
                t0: float, *, verbose: bool, on_line: Callable[[str], None]) -> dict[str, Any]:
    # deferred (heavy import): ray
    from cnnray.tune.disk_full import disk_full, forget, is_no_space
    from cnnray.tune.lifecycle import TrialLifecycle
    from cnnray.tune.runs import ChildRuns, close_children, log_search_cost, log_search_summary, register_best
    from cnnray.tune.trial_log import TrialTable

    # deferred (heavy import): ray, matplotlib
    from cnnray.tune.budget import register, stopped_by_budget, unregister
    from cnnray.tune.search import build_tuner, make_trainable
    from cnnray.tune.trial import TrialSetup, share_data

    t = cfg.tune
    if not verbose:
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no Tune tables on the console
    # Tune's CSV and TensorBoard loggers: two more files per trial, written at every report and closed at every
    # end (18 ms a trial on the driver), that nothing reads; result.json (JsonLoggerCallback) is what is read.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # MLflow prints "View run ... at <url>" as each run on a server ends: one line per trial, thousands at scale.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    if ensure_ray(cfg.run.address, verbose):  # started here: this machine's cluster cannot grow
        # deferred (heavy import): ray
        import ray


        check_trial_fits(cfg, ray.cluster_resources())
    random.seed(t.seed)  # PBT's explore/exploit draws

    ctx = children = None
    if cfg.tracking.enabled:
        # A resumed search re-attaches to its parent run (start_run finds it) and its logged params.
        ctx = open_watched_run(cfg, ident.name, resume=ident.resume,
                               tags={"cnnray.kind": "tune", "cnnray.space": space.name,
                                     "cnnray.data_fingerprint": prep.info.fingerprint,
                                     **(prep.init_source.tags() if prep.init_source is not None else {})})
        children = ChildRuns(ctx.uri, cfg.tracking.experiment, ctx.experiment_id)
    if not ident.resume:
        save_search_state(ident, cfg, space)
        if ctx is not None and space.source:
            tracking.runs.log_text(ctx, Path(space.source).read_text(), "search_space.yaml")
    setup = TrialSetup(prep=prep, space=space, tune_name=ident.name, experiment_path=ident.path,
                       tracking_uri=ctx.uri if ctx else None, parent_run_id=ctx.run_id if ctx else None,
                       runner=runner, test_hooks=read_test_hooks(),
                       shared_data=share_data(base, space) if runner == "actor" else None,
                       budget_marker=budget_marker(ident) if t.budget_device_hours is not None else None,
                       experiment_id=ctx.experiment_id if ctx else None, resumed=ident.resume)
    budget = _device_budget(t.budget_device_hours, ident, on_line)
    on_line(f"search {ident.name}: space '{space.name}' ({len(space.params)} keys), {t.search} search, "
            f"{t.scheduler} scheduler, {t.max_epochs} epochs max, {t.max_concurrent_trials} at a time, "
            f"trials in {'their own actors' if runner == 'actor' else 'Ray Train runs'}"
            + (" (resumed)" if ident.resume else "")
            + (f", stops at tune.budget_device_hours={t.budget_device_hours:g}" if budget is not None else ""))

    status, error, outcomes, tuner, lifecycle, idle = "FAILED", None, [], None, None, []
    statuses = load_trial_statuses(ident) if ident.resume else {}
    interrupt = GracefulStop()  # SIGTERM -> SIGINT: Tune stops gracefully and saves its state for --resume
    try:
        with interrupt:
            lifecycle = TrialLifecycle(ident.name, t.metric, t.max_epochs, children, on_line, statuses=statuses,
                                       persist=partial(save_trial_status, ident),
                                       budget_stopped=partial(stopped_by_budget, ident.name) if budget else None,
                                       mode=t.mode, price=cfg.tracking.price_per_device_hour,
                                       table=TrialTable(ident, space, t.metric))
            if budget is not None:
                register(ident.name, budget)
            tuner = build_tuner(t, space, ident, make_trainable(setup), [lifecycle], runner=runner,
                                max_failures=base.scaling.max_failures, budget_key=ident.name if budget else None,
                                on_line=on_line)
            grid = tuner.fit()
        if ident.resume:  # Tune's restored copy of the lifecycle callback recorded the trials this run ended
            statuses.update(load_trial_statuses(ident))
        time_hit = t.time_budget_s is not None and time.time() - t0 >= t.time_budget_s
        full = disk_full(ident.name)
        budget_hit = time_hit or (budget is not None and budget.exhausted) or full is not None
        outcomes = collect_outcomes(grid, space, t.metric, t.mode, statuses,
                                    all_ended=not (interrupt.signalled or budget_hit))
        if budget is not None and budget.exhausted:
            # Trials Tune started after the budget was spent waited, untrained and without a run, for the end
            # (or, when the budget cannot buy one epoch, were cut in their first: their runs are closed below).
            idle = [o for o in outcomes if o.reports == 0 and o.epochs_run == 0 and o.status != "failed"]
            outcomes = [o for o in outcomes if o not in idle]
            # A trial paused (HyperBand, PBT) when Tune ended the search sits at an epoch boundary: the budget
            # stopped it (unless the time budget came first and cut trials mid-epoch).
            paused = [o for o in outcomes if o.status == "unfinished"] if not time_hit else []
            for o in paused:
                o.status = "stopped_early"
                budget.stopped.add(o.trial_id)
        status, error = search_status(outcomes, signalled=interrupt.signalled, budget_hit=budget_hit)
        if budget is not None and budget.too_small:
            status, error = "FAILED", budget.too_small
    except KeyboardInterrupt:  # a second signal: Tune's graceful stop was cut short
        status, error = "KILLED", "interrupted"
        outcomes = _saved_outcomes(tuner, space, t.metric, t.mode, statuses)
    except Exception as e:  # noqa: BLE001 - the parent run must still be closed
        error = f"{type(e).__name__}: {e}"
        if is_no_space(error):
            error = f"the disk of scaling.storage_path ({ident.storage_path}) is full: {error}"
    finally:
        unregister(ident.name)
        full = disk_full(ident.name)
        forget(ident.name)

    best = best_outcome(outcomes, t.mode) if status == "FINISHED" else None
    out = search_result(status, ident, t, space, outcomes, best, ctx.run_id if ctx else None,
                        cfg.tracking.experiment)
    end_reason = "budget" if budget is not None and budget.exhausted else None
    if full is not None:
        end_reason = "disk_full"
        out["end_reason_detail"] = f"the disk of scaling.storage_path ({ident.storage_path}) is full: {full}"
        if status != "FINISHED" and not error:
            error = out["end_reason_detail"]
    if end_reason:
        out["end_reason"] = end_reason
    if idle:
        out["trials_not_started"] = len(idle)
    out["cost"] = search_cost(outcomes, metric=t.metric, mode=t.mode, max_epochs=t.max_epochs,
                              price=cfg.tracking.price_per_device_hour, wall_s=time.time() - t0,
                              budget_device_hours=t.budget_device_hours,
                              budget_stopped=budget.stopped if budget is not None else ())
    out["cost_table"] = cost_table(out["cost"], t.mode, t.table_top)
    try:
        if children is not None:
            registering = best.trial_id if best is not None and cfg.registry.enabled else None
            # Fills in run ids found by name.
            close_children(children, ident.name, outcomes + idle, cfg.tracking.price_per_device_hour, registering,
                           closed=lifecycle.closed_runs() if lifecycle is not None else frozenset())
            if best is not None:
                out["best"]["run_id"] = best.run_id
        if ctx is not None:
            log_search_cost(ctx, out["cost"], t.mode, t.scheduler, end_reason)
        if ctx is not None and status == "FINISHED":
            log_search_summary(ctx, outcomes, space, t.metric, t.mode, best, t.table_top)
            if best is not None and cfg.registry.enabled and best.run_id:
                best_cfg = trial_config(base, space, best.params)
                # The search is over: its whole cost goes on the version it chose.
                reg = register_best(children, best, best_cfg, prep, ident.name, ctx.run_id,
                                    extra_tags=cost_tags(out["cost"]))
                out["best"]["cost"] = reg.pop("cost", None)  # the winner's own run; "cost" is the search's
                out.update(reg)
        if ctx is not None:  # the search's own wall clock, its registration included
            out["cost"]["wall_s"] = round(time.time() - t0, 3)
            tracking.runs.log_metrics(ctx, {"cost_wall_s": out["cost"]["wall_s"]})
    except BaseException:
        status = "FAILED"
        raise
    finally:
        if ctx is not None:
            tracking.end_run(ctx, status)
            unwatch_mlflow_run()
    if budget is not None and budget.too_small:
        raise ConfigError(f"{budget.too_small} (search {ident.name} stopped after its first measured trial-epoch)")
    if error:
        out["error"] = error
    overhead = lifecycle.overhead() if lifecycle is not None else None
    if overhead is not None:
        out["trial_overhead"] = overhead
    if status != "KILLED" and t.time_budget_s is not None and time.time() - t0 >= t.time_budget_s:
        out["stopped_by"] = "time_budget"  # its normal end: the trials it got through count
    out["wall_seconds"] = round(time.time() - t0, 1)
    return out


def _device_budget(hours: float | None, ident: SearchIdentity, on_line: Callable[[str], None]) -> Any:
    """The search's tune.budget_device_hours state (None without one), with what a resumed search spent before."""
    if hours is None:
        return None
    # deferred (heavy import): ray
    from cnnray.tune.budget import DeviceBudget

    spend = spend_of_rows(load_trial_reports(ident)) if ident.resume else None
    budget = DeviceBudget(hours, **({"spend": spend} if spend is not None else {}),
                          on_exhausted=partial(save_budget_marker, ident), on_line=on_line)
    if ident.resume and path_exists(budget_marker(ident), key="scaling.storage_path"):
        budget.exhausted = True  # spent before the interruption: the search ends as soon as Tune has restored it
    return budget


def _saved_outcomes(tuner: Any, space: SearchSpace, metric: str, mode: str, statuses: dict[str, str]) -> list:
    """Trial outcomes from the experiment state on storage, when fit() did not return them."""
    try:
        return collect_outcomes(tuner.get_results(), space, metric, mode, statuses) if tuner is not None else []
    except Exception:  # noqa: BLE001 - nothing saved yet
        return []
