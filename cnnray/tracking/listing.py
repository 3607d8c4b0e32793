"""The versions of a registered model as plain rows: aliases, key metrics, lineage, last decision."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from cnnray.tracking.model_store import client, registered_model


def list_versions(tracking_uri: str, name: str) -> list[dict[str, Any]]:
    """Newest first (UserInputError when the registered model does not exist)."""
    rm = registered_model(tracking_uri, name)
    by_version: dict[str, list[str]] = {}
    for alias, v in (rm.aliases or {}).items():
        by_version.setdefault(str(v), []).append(alias)
    c = client(tracking_uri)
    rows = []
    for mv in c.search_model_versions(f"name='{name}'", max_results=1000):
        t = dict(mv.tags or {})
        decision = t.get("cnnray.decision")
        rows.append({
            "version": str(mv.version), "aliases": sorted(by_version.get(str(mv.version), [])),
            "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
            "val_acc": t.get("cnnray.metric.val_acc"), "val_f1_macro": t.get("cnnray.metric.val_f1_macro"),
            "data_fingerprint": t.get("cnnray.data_fingerprint", ""), "config_hash": t.get("cnnray.config_hash", ""),
            "run_name": t.get("cnnray.ray_run_name", ""), "run_id": mv.run_id, "git_commit": t.get("cnnray.git_commit"),
            "format": t.get("cnnray.format", "legacy (pytorch flavor)"),
            "decision": f"{decision} (#{t.get('cnnray.decision_seq')}, {t.get('cnnray.decision_time', '')})" if decision else None,
            "tags": t,
        })
    return sorted(rows, key=lambda r: int(r["version"]), reverse=True)
