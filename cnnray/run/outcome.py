"""What a training run's reports and checkpoints say once it ends: its status, the best weights, the summary a
person reads. Light (no torch, Ray or MLflow at import): every host and `cnnray train` itself use it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from cnnray.run.checkpoint_files import BEST_FILE, META_FILE
from cnnray.run.cost import budget_line, format_cost
from cnnray.run.resume_check import ResumePoint


def load_best(checkpoint_dir: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(best weights, meta) from a checkpoint directory, read with weights_only=True."""
    d = Path(checkpoint_dir)
    weights = torch.load(d / BEST_FILE, map_location="cpu", weights_only=True)
    return weights, json.loads((d / META_FILE).read_text())


def outcome_of(last: dict[str, Any]) -> tuple[str, str | None]:
    """(status, error) from a run's last report."""
    if last.get("error"):
        return "FAILED", str(last["error"])
    if last.get("done") and not last.get("global_step"):
        # Second guard behind check_steps_per_epoch: a model that took no optimizer step is never registered.
        return "FAILED", "no optimizer step was taken (no full batch on some worker): nothing to register"
    if last.get("done"):
        return "FINISHED", None
    return "KILLED", "interrupted"


def resume_tags(point: ResumePoint, prior_status: str | None, epochs: int) -> dict[str, str]:
    tags = {"cnnray.resumed_from": f"{(point.checkpoint_dir or 'start').rsplit('/', 1)[-1]} (after epoch "
                                   f"{point.epochs_done})"}
    if prior_status == "FINISHED":
        tags["cnnray.resumed_after_finish"] = f"training {point.epochs_done} -> {epochs} epochs"
    return tags


def format_train_summary(r: dict[str, Any]) -> str:
    """What a person reads after `cnnray train`: status, best epoch and metrics, where the model went."""
    if r["status"] != "FINISHED":
        return f"training {r['status']}: {r.get('error')}  (run {r['run_name']}, MLflow run {r.get('run_id')})"
    cost = r.get("cost")
    m = r.get("best_metrics", {})
    lines = [
        f"training FINISHED in {r['wall_seconds']:.0f}s: best epoch {int(r['best_epoch']) + 1} "
        f"val_acc {100 * m.get('val_acc', 0):.2f}% val_loss {m.get('val_loss', float('nan')):.4f} "
        f"({r.get('weights', 'raw')} weights)",
        f"run {r['run_name']}  MLflow run {r.get('run_id')}  checkpoint {r.get('checkpoint')}",
    ]
    t = r.get("test_metrics") or {}
    if t:  # the selection metric above chose the weights; this is their one look at the held-out split
        lines.insert(1, f"held-out test: test_acc {100 * t.get('test_acc', 0):.2f}% test_loss "
                        f"{t.get('test_loss', float('nan')):.4f} on {r.get('test_n')} images (nothing selected on it)")
    if r.get("version"):
        # The URIs every later command takes (the logged model's own models:/m-... id is in --json's model_uri).
        name, version, alias = r["registered_name"], r["version"], r.get("alias")
        lines.append(f"registered {name} version {version}" + (f" as @{alias}" if alias else "")
                     + f": models:/{name}/{version}" + (f" (or models:/{name}@{alias})" if alias else ""))
    if cost:
        lines.append(format_cost(cost))
        if r.get("end_reason") == "budget":
            lines.append(budget_line(cost) or "stopped by train.budget_device_hours")
    return "\n".join(lines)
