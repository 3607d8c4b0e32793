"""Text forms of a search: the trials table (console, MLflow artifact), CSV rows, the final summary."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from cnnray.tune.outcome import TrialOutcome


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def trial_rows(outcomes: list[TrialOutcome], keys: list[str], metric: str) -> list[dict[str, Any]]:
    """One flat dict per trial: id, status, best metric, epochs, then each searched key ('' when inactive)."""
    rows = []
    for o in outcomes:
        row: dict[str, Any] = {"trial_id": o.trial_id, "status": o.status, f"best_{metric}": o.best,
                               "epochs_run": o.epochs_run, "trial_epochs": o.reports}
        row.update({k: o.params.get(k, "") for k in keys})
        if o.restored_from:
            row["restored_from"] = o.restored_from
        rows.append(row)
    return rows


def trials_csv(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV text."""
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, restval="")
    writer.writeheader()
    writer.writerows({k: _fmt(v) if v is not None else "" for k, v in r.items()} for r in rows)
    return buf.getvalue()


def trials_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a fixed-width table."""
    if not rows:
        return "(no trials)"
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    cells = [[_fmt(r.get(k, "")) if r.get(k) is not None else "-" for k in fields] for r in rows]
    widths = [max(len(f), *(len(c[i]) for c in cells)) for i, f in enumerate(fields)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join([line(fields), line(["-" * w for w in widths]), *map(line, cells)])


def format_tune_summary(r: dict[str, Any]) -> str:
    """What a person reads after `cnnray tune`."""
    lines = [f"search {r['name']} {r['status']} in {r.get('wall_seconds', 0):.0f}s: {r.get('num_trials', 0)} trials "
             f"({r.get('counts', {})}), {r.get('trial_epochs', 0)} trial-epochs"]
    if r.get("table"):
        lines.append(r["table"])
    best = r.get("best")
    if best:
        lines.append(f"best trial {best['trial_id']}: {r['metric']} {best['value']:.4f}  params {json.dumps(best['params'])}")
    if r.get("version"):
        lines.append(f"registered {r['registered_name']} version {r['version']}"
                     + (f" as @{r['alias']}" if r.get("alias") else "") + f"  ({r['model_uri']})")
    if r["status"] == "KILLED":
        lines.append(f"interrupted: continue with  cnnray tune --resume {r['name']}")
    if r.get("error"):
        lines.append(f"error: {r['error']}")
    return "\n".join(lines)
