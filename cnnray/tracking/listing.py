"""The versions of a registered model as plain rows: aliases, key metrics, lineage, last decision."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from cnnray.tracking.lineage import TEST_FINGERPRINT_TAG
from cnnray.tracking.model_store import client, registered_model
from cnnray.tracking.promotion import LEDGER_PREFIX


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
            "test_acc": t.get("cnnray.metric.test_acc"), "test_f1_macro": t.get("cnnray.metric.test_f1_macro"),
            "test_fingerprint": t.get(TEST_FINGERPRINT_TAG, ""),
            "data_fingerprint": t.get("cnnray.data_fingerprint", ""), "config_hash": t.get("cnnray.config_hash", ""),
            "run_name": t.get("cnnray.ray_run_name", ""), "run_id": mv.run_id, "git_commit": t.get("cnnray.git_commit"),
            "format": t.get("cnnray.format", "legacy (pytorch flavor)"),
            "parent": t.get("cnnray.parent_version"), "init_from": t.get("cnnray.init_from"),
            "decision": f"{decision} (#{t.get('cnnray.decision_seq')}, {t.get('cnnray.decision_time', '')})" if decision else None,
            # What training it cost (cnnray.run.finish) and, for a search's winner, the whole search (cnnray tune).
            "cost_device_hours": t.get("cnnray.cost_device_hours"),
            "cost_device_kind": t.get("cnnray.cost_device_kind"), "cost_money": t.get("cnnray.cost_money"),
            "search_cost_device_hours": t.get("cnnray.search_cost_device_hours"),
            "search_cost_money": t.get("cnnray.search_cost_money"),
            "replay_of": t.get("cnnray.replay_of"), "replay_verdict": t.get("cnnray.replay_verdict"),
            "tags": t,
        })
    return sorted(rows, key=lambda r: int(r["version"]), reverse=True)


def test_set_budgets(tracking_uri: str, name: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The alpha ledger of every test set decided on, the current one first (the champion's test set, else the
    newest version's), plus the current one with a full budget when no decision has used it yet."""
    tags = dict(getattr(registered_model(tracking_uri, name), "tags", {}) or {})
    champion = next((r for r in rows if "champion" in r["aliases"]), None)
    current = ((champion or {}).get("test_fingerprint") or next((r["test_fingerprint"] for r in rows
                                                                  if r["test_fingerprint"]), ""))
    out = []
    for key, raw in tags.items():
        if not key.startswith(LEDGER_PREFIX):
            continue
        try:
            d = json.loads(raw)
            led = {k: d[k] for k in ("fingerprint", "alpha", "planned", "decisions", "spent")}
        except (ValueError, KeyError, TypeError):
            continue  # a tag edited by hand: shown as absent rather than failing the listing
        led["remaining"] = max(0.0, float(led["alpha"]) - float(led["spent"]))
        led["current"] = led["fingerprint"] == current
        out.append(led)
    if current and not any(r["current"] for r in out):
        out.append({"fingerprint": current, "alpha": None, "planned": None, "decisions": 0, "spent": 0.0,
                    "remaining": None, "current": True})
    return sorted(out, key=lambda r: not r["current"])
