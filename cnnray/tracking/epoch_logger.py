"""Per-epoch MLflow logging that stays exactly-once across worker restarts.

Epochs reach MLflow only once a checkpoint covers them: a restart re-runs the epochs after the
last checkpoint, and their first (discarded) attempt must not leave a second value at that step.
"""

from __future__ import annotations

import math
import time
from typing import Any

# Reported keys that are not per-epoch scalars for MLflow.
SKIP_KEYS = {"epoch", "done", "weights", "is_best", "error", "stopped_early"}


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The finite numeric scalars of a report (lists such as the confusion matrix are dropped)."""
    out = {}
    for k, v in metrics.items():
        if k in SKIP_KEYS or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if math.isfinite(v):
            out[k] = float(v)
    return out


class EpochLogger:
    """Buffers each epoch's metrics until a checkpoint covers it, then logs them with the epoch as step."""

    def __init__(self, tracking_uri: str, run_id: str) -> None:
        self.tracking_uri = tracking_uri
        self.run_id = run_id
        self.pending: dict[int, dict[str, float]] = {}
        self.logged: set[int] = set()
        self._client = None

    def client(self):
        """MlflowClient, created lazily (the logger is pickled into the Ray Train controller)."""
        if self._client is None:
            # deferred (heavy import): mlflow
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_client"] = None
        return state

    def on_report(self, metrics: dict[str, Any], checkpointed: bool) -> list[int]:
        """Record one epoch's report; returns the epochs written to MLflow by this call."""
        epoch = int(metrics["epoch"])
        # A report for an epoch at or before a pending one means the workers restarted from a
        # checkpoint: the pending attempts were lost with the old workers and will be re-run.
        for e in [e for e in self.pending if e >= epoch]:
            del self.pending[e]
        if epoch in self.logged:
            return []
        self.pending[epoch] = scalar_metrics(metrics)
        if not (checkpointed or metrics.get("done")):
            return []
        return self.flush()

    def flush(self) -> list[int]:
        """Write every pending epoch to MLflow."""
        # deferred (heavy import): mlflow
        from mlflow.entities import Metric

        written = []
        ts = int(time.time() * 1000)
        for epoch in sorted(self.pending):
            batch = [Metric(k, v, ts, epoch) for k, v in self.pending[epoch].items()]
            self.client().log_batch(self.run_id, metrics=batch)
            self.logged.add(epoch)
            written.append(epoch)
        self.pending.clear()
        return written


def log_missing_epochs(tracking_uri: str, run_id: str, history: dict[int, dict[str, float]]) -> list[int]:
    """Log the epochs of `history` that the run has no value for (its driver died after their checkpoint landed
    and before it logged them); returns those epochs. A resume calls this before any new epoch is reported."""
    if not history:
        return []
    # deferred (heavy import): mlflow
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    # One key every report of this history carries stands for the whole epoch (its metrics go in one batch).
    key = min(set.intersection(*(set(m) for m in history.values())) or {""})
    if not key:
        return []
    seen = {m.step for m in client.get_metric_history(run_id, key)}
    missing = sorted(e for e in history if e not in seen)
    ts = int(time.time() * 1000)
    for epoch in missing:
        client.log_batch(run_id, metrics=[Metric(k, v, ts, epoch) for k, v in history[epoch].items()])
    return missing
