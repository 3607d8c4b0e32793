"""End of a successful training run: plots, per-class report, model logging and registration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnray.config import Config, config_hash
from cnnray.tracking.lineage import lineage_tags
from cnnray.tracking.plots import plot_confusion_matrix, plot_learning_curves
from cnnray.tracking.registry import log_and_register
from cnnray.tracking.report import per_class_report
from cnnray.tracking.runs import TrackingContext, log_artifact_file, log_text, metric_history, scratch_dir, set_tags

CURVE_KEYS = ("train_loss", "val_loss", "val_acc", "val_top5", "lr")


def finish_training_run(ctx: TrackingContext, cfg: Config, prep: Any, weights: dict[str, Any],
                        meta: dict[str, Any], extra_tags: dict[str, str] | None = None) -> dict[str, Any]:
    """Log artifacts of the best epoch and register its model; returns the registry fields of the result."""
    from cnnray.train.build import build_model

    info = prep.info
    names = list(info.class_names) or [str(i) for i in range(info.num_classes)]
    with scratch_dir() as tmp:
        if meta.get("confusion_matrix"):
            cm = meta["confusion_matrix"]
            log_artifact_file(ctx, plot_confusion_matrix(cm, names, Path(tmp) / "confusion_matrix.png"))
            log_text(ctx, per_class_report(cm, names), "per_class_report.txt")
        history = {k: metric_history(ctx, k) for k in CURVE_KEYS}
        log_artifact_file(ctx, plot_learning_curves(history, Path(tmp) / "learning_curves.png"))
    weights_src = meta.get("weights", "raw")
    set_tags(ctx, {"cnnray.best_epoch": meta.get("best_epoch"), "cnnray.weights": weights_src})
    model = build_model(cfg, info.num_classes, info.channels)
    model.load_state_dict(weights)
    tags = lineage_tags(config_hash=config_hash(cfg), data_fingerprint=info.fingerprint,
                        ray_run_name=prep.run_name, weights=weights_src, extra=extra_tags)
    reg = log_and_register(
        ctx, model, in_chans=info.channels, image_size=info.image_size,
        registered_name=cfg.registry.name if cfg.registry.enabled else None, alias=cfg.registry.alias, tags=tags,
    )
    return {"model_uri": reg.model_uri, "registered_name": reg.name, "version": reg.version, "alias": reg.alias}
