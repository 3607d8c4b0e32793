"""The end of a training run, whichever host trained it: the MLflow run closed FINISHED, FAILED or KILLED;
after a success the plots, the per-class report, the model logged and registered, and the promotion trigger
(`registry.promote=true`) handed to `cnnray.promote`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from cnnray import tracking
from cnnray.classifier.card import card_for_training
from cnnray.cluster.local_ray import unwatch_mlflow_run
from cnnray.config import Config, config_hash
from cnnray.data.example import example_image
from cnnray.promote.gate import PromoteOptions, run_promote
from cnnray.run import progress
from cnnray.run.cost import COST_KEY, CostTotals, cost_result, totals_of_report
from cnnray.run.held_out import evaluate_held_out
from cnnray.run.outcome import load_best
from cnnray.run.plan import PreparedRun
from cnnray.tracking.lineage import TEST_FINGERPRINT_TAG, lineage_tags
from cnnray.tracking.model_registry import log_and_register
from cnnray.tracking.per_class import per_class_report
from cnnray.tracking.plots import plot_confusion_matrix, plot_learning_curves
from cnnray.tracking.runs import (
    TrackingContext,
    log_artifact_file,
    log_metrics,
    log_text,
    metric_history,
    scratch_dir,
    set_tags,
)

CURVE_KEYS = ("train_loss", "val_loss", "val_acc", "val_top5", "lr")
# Best-epoch metrics copied onto the registered version (what `cnnray registry` shows).
VERSION_METRICS = ("val_acc", "val_top5", "val_loss", "val_f1_macro")


def cost_tags(cost: dict[str, Any]) -> dict[str, str]:
    """The tags of a run's cost (on the MLflow run and its registered version): device-hours, kind, money if priced."""
    tags = {"cnnray.cost_device_hours": f"{float(cost['device_hours']):.6g}",
            "cnnray.cost_device_kind": cost["device_kind"]}
    if cost.get("money") is not None:
        tags["cnnray.cost_money"] = f"{float(cost['money']):.6g}"
    return tags


def record_cost(ctx: TrackingContext, cost: dict[str, Any], step: int) -> dict[str, str]:
    """Tag the run with its cost and log cost_device_hours (and cost_money) at the last epoch's step; the other
    cost_* metrics arrived with every epoch's report. Returns the tags."""
    tags = cost_tags(cost)
    set_tags(ctx, tags)
    metrics = {"cost_device_hours": float(cost["device_hours"])}
    if cost.get("money") is not None:
        metrics["cost_money"] = float(cost["money"])
    log_metrics(ctx, metrics, step=max(0, step))
    return tags


def finish_training_run(ctx: TrackingContext, cfg: Config, prep: Any, weights: dict[str, Any],
                        meta: dict[str, Any], make_card: Callable[..., Any],
                        extra_tags: dict[str, str] | None = None) -> dict[str, Any]:
    """Log artifacts of the best epoch and register its model; returns the registry fields of the result.

    `make_card(lineage=..., training=...)` builds the version's ModelCard: the caller (training) knows how
    its model is built from the config, tracking does not.
    """
    info = prep.info
    names = list(info.class_names) or [str(i) for i in range(info.num_classes)]
    with scratch_dir() as tmp:
        if meta.get("confusion_matrix"):
            cm = meta["confusion_matrix"]
            log_artifact_file(ctx, plot_confusion_matrix(cm, names, Path(tmp) / "confusion_matrix.png"))
            log_text(ctx, per_class_report(cm, names), "per_class_report.txt")
            # The numbers behind the picture, for `cnnray report`'s per-class table.
            log_text(ctx, json.dumps({"class_names": names, "matrix": cm}), "confusion_matrix.json")
        history = {k: metric_history(ctx, k) for k in CURVE_KEYS}
        log_artifact_file(ctx, plot_learning_curves(history, Path(tmp) / "learning_curves.png"))
    weights_src = meta.get("weights", "raw")
    set_tags(ctx, {"cnnray.best_epoch": meta.get("best_epoch"), "cnnray.weights": weights_src})
    source = getattr(prep, "init_source", None)  # model.init_from: the lineage of the first weights
    tags = lineage_tags(config_hash=config_hash(cfg), data_fingerprint=info.fingerprint,
                        ray_run_name=prep.run_name, weights=weights_src,
                        extra={**(source.tags() if source is not None else {}),
                               **(getattr(prep, "lineage_tags", None) or {}), **(extra_tags or {})})
    best = meta.get("best_metrics") or {}
    tags.update({f"cnnray.metric.{k}": f"{float(best[k]):.6g}" for k in VERSION_METRICS if k in best})
    training = {"best_epoch": meta.get("best_epoch"), "weights": weights_src, "run_id": ctx.run_id,
                "metrics": {k: best[k] for k in VERSION_METRICS if k in best}}
    # Every selection is made: the one look at the test split, for the version's honest numbers.
    held = evaluate_held_out(make_card(lineage=tags, training=training), weights, cfg.data, info, prep.loader_kind)
    if held.metrics:
        log_metrics(ctx, held.metrics)
        set_tags(ctx, {TEST_FINGERPRINT_TAG: held.fingerprint})
    tags.update(held.tags())
    card = make_card(lineage=tags, training={**training, **held.card_fields()})
    cost = None
    if COST_KEY in meta:  # the run's totals up to this checkpoint (a checkpoint from before cost accounting: none)
        cost = cost_result(CostTotals.from_meta(meta[COST_KEY]), cfg.tracking.price_per_device_hour,
                           cfg.train.budget_device_hours)
        tags = {**tags, **record_cost(ctx, cost, int(meta.get("epoch", 0)))}
    reg = log_and_register(
        ctx, weights, card, example=example_image(cfg.data, info.channels),
        registered_name=cfg.registry.name if cfg.registry.enabled else None, alias=cfg.registry.alias, tags=tags,
    )
    out = {"cost": cost} if cost is not None else {}
    out |= {"model_uri": reg.model_uri, "registered_name": reg.name, "version": reg.version, "alias": reg.alias,
           "test_metrics": held.metrics, "test_n": held.n, "test_fingerprint": held.fingerprint or None}
    if cfg.registry.promote and reg.version:
        out["promotion"] = promote_after_registration(ctx, cfg, reg.version)
    return out


def promote_after_registration(ctx: TrackingContext, cfg: Config, version: str) -> dict[str, Any]:
    """registry.promote=true: the `cnnray promote` gate on the new version, on the data it was trained on.

    A refusal or failure of the gate is reported in the result; the training run itself succeeded.
    """
    opt = PromoteOptions(ctx.uri, cfg.registry.name, str(version), floor=cfg.registry.promote_floor,
                         experiment=cfg.tracking.experiment)
    try:
        rec = run_promote(opt, on_line=lambda s: None)
    except Exception as e:  # noqa: BLE001 - reported, not raised: the model is trained and registered
        return {"outcome": "error", "reason": f"{type(e).__name__}: {e}"}
    return {k: rec.get(k) for k in ("outcome", "reason", "champion_version", "decision_id", "run_id")} | {
        "champion": (rec.get("aliases_after") or {}).get("champion")}


def finish_run(prep: PreparedRun, ctx: Any, status: str, error: str | None, prior_status: str | None,
               checkpoint: str | None, last: dict[str, Any], clock: progress.StartupClock, t0: float, *,
               verbose: bool, on_line: Callable[[str], None]) -> dict[str, Any]:
    """Close the MLflow run (registering the best weights when FINISHED) and build the result object."""
    cfg = prep.cfg
    if status == "FINISHED" and checkpoint is None:
        status, error = "FAILED", "the run ended without a checkpoint"
    totals = totals_of_report(last)
    cost = cost_result(totals, cfg.tracking.price_per_device_hour, cfg.train.budget_device_hours) if totals else None
    if ctx is not None and status != "FINISHED":
        if cost is not None:
            try:  # what the run used before it failed: best effort, the status below matters more
                record_cost(ctx, cost, int(last.get("epoch", 0)))
            except Exception:  # noqa: BLE001
                pass
        _close_unfinished(ctx, status, error, prior_status)
        unwatch_mlflow_run()
    out: dict[str, Any] = {"status": status, "run_name": prep.run_name, "experiment": cfg.tracking.experiment,
                           "run_id": ctx.run_id if ctx else None, "run_dir": prep.run_dir,
                           "loader": prep.loader_kind, "data_fingerprint": prep.info.fingerprint,
                           "startup_s": clock.seconds()}
    if cost is not None:
        out["cost"] = cost
    if verbose:
        on_line(clock.line())
    if status != "FINISHED":
        out.update(error=error, wall_seconds=round(time.time() - t0, 1))
        return out
    assert checkpoint is not None
    weights, meta = load_best(checkpoint)
    out.update(best_epoch=meta.get("best_epoch"), best_metrics=meta.get("best_metrics", {}),
               weights=meta.get("weights"), checkpoint=checkpoint, epochs_run=int(last.get("epoch", -1)) + 1,
               stopped_early=bool(last.get("stopped_early")), end_reason=end_reason(last))
    if ctx is not None:
        try:
            set_tags(ctx, {"cnnray.end_reason": out["end_reason"]})
            out.update(finish_training_run(ctx, cfg, prep, weights, meta,
                                           make_card=partial(card_for_training, cfg, prep.info,
                                                             compression=prep.card_compression or None)))
            tracking.end_run(ctx, "FINISHED")
        except BaseException:
            tracking.end_run(ctx, "FAILED")
            raise
        finally:
            unwatch_mlflow_run()
    out["wall_seconds"] = round(time.time() - t0, 1)
    return out


def end_reason(last: dict[str, Any]) -> str:
    """Why a FINISHED run ended: budget (train.budget_device_hours), early_stop, or epochs (it ran them all, or
    train.stop_after_epochs)."""
    if last.get("end_reason") == "budget":
        return "budget"
    return "early_stop" if last.get("stopped_early") else "epochs"


def _close_unfinished(ctx: Any, status: str, error: str | None, prior_status: str | None) -> None:
    """End the run FAILED/KILLED; a run that had FINISHED before this resume keeps FINISHED (its model stands)."""
    if prior_status == "FINISHED":
        tracking.runs.set_tags(ctx, {"cnnray.resume_failed": f"{status}: {error}"[:5000]})
        tracking.end_run(ctx, "FINISHED")
    else:
        if error:
            tracking.runs.set_tags(ctx, {"cnnray.error": str(error)[:5000]})
        tracking.end_run(ctx, status)
