"""`trials.csv` under the search folder: one row appended as each trial ends (status, best metric, epochs,
its sampled values), so a search of thousands of trials can be followed while it runs without rewriting a
growing table. The parent run's trials.csv, written once at the end, is the same table ranked best first."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from typing import Any

from cnnray.tune.plan import SearchIdentity, append_lines
from cnnray.tune.space import SearchSpace, active_values, sampled_values

TABLE_FILE = "trials.csv"


class TrialTable:
    """Appends a trial's row to <search>/trials.csv when it ends (picklable: Tune saves its callbacks)."""

    def __init__(self, ident: SearchIdentity, space: SearchSpace, metric: str) -> None:
        self.ident, self.space, self.metric = ident, space, metric
        self.keys = list(space.params)

    def header(self) -> str:
        return _line(["trial_id", "status", f"best_{self.metric}", "epochs_run", "ended_at", *self.keys])

    def append(self, trial: Any, outcome: str, best: float | None) -> None:
        params = active_values(self.space, sampled_values(trial.config or {}))
        last = trial.last_result or {}
        row = [trial.trial_id, outcome, "" if best is None else f"{best:.6g}", int(last.get("epochs_done") or 0),
               datetime.now(timezone.utc).isoformat(timespec="milliseconds"), *(_cell(params.get(k, "")) for k in self.keys)]
        append_lines(self.ident, TABLE_FILE, [_line(row)], header=self.header())


def _cell(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def _line(cells: list[Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(cells)
    return buf.getvalue()
