"""Inspection figures logged into the model version's own run, where the MLflow UI shows them."""

from __future__ import annotations

from pathlib import Path

FOLDER = "insight"


def log_insight_artifacts(tracking_uri: str, run_id: str, files: list[Path], folder: str = FOLDER) -> list[str]:
    """Log `files` under `folder/` of run `run_id` (finished runs accept artifacts too); return their artifact paths."""
    # deferred (heavy import): mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    for f in files:
        client.log_artifact(run_id, str(f), folder)
    return [f"{folder}/{Path(f).name}" for f in files]
