"""The final summary a person reads after `cnnray train`."""

from __future__ import annotations

from typing import Any


def format_summary(r: dict[str, Any]) -> str:
    """A few lines: status, best epoch and metrics, where the model went."""
    if r["status"] != "FINISHED":
        return f"training {r['status']}: {r.get('error')}  (run {r['run_name']}, MLflow run {r.get('run_id')})"
    m = r.get("best_metrics", {})
    lines = [
        f"training FINISHED in {r['wall_seconds']:.0f}s: best epoch {int(r['best_epoch']) + 1} "
        f"val_acc {100 * m.get('val_acc', 0):.2f}% val_loss {m.get('val_loss', float('nan')):.4f} "
        f"({r.get('weights', 'raw')} weights)",
        f"run {r['run_name']}  MLflow run {r.get('run_id')}  checkpoint {r.get('checkpoint')}",
    ]
    if r.get("version"):
        lines.append(f"registered {r['registered_name']} version {r['version']}"
                     + (f" as @{r['alias']}" if r.get("alias") else "") + f"  ({r['model_uri']})")
    return "\n".join(lines)
