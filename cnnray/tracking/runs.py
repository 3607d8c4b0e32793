"""Create, re-attach and close MLflow runs from the driver; params from the flattened config."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnray.config import Config, flatten, to_yaml

# MLflow refuses param values past this length; longer ones go into an artifact instead.
MAX_PARAM_LEN = 6000
RUN_NAME_TAG = "cnnray.run_name"


@dataclass
class TrackingContext:
    """Where a run lives: absolute tracking URI, experiment id, run id."""

    uri: str
    experiment_id: str
    run_id: str
    created: bool = True  # False when start_run re-attached to an existing run (a resume)


def resolve_tracking_uri(configured: str | None) -> str:
    """Config, else MLFLOW_TRACKING_URI, else ./mlflow.db; relative sqlite paths made absolute.

    Absolute because the Ray Train controller that logs epochs runs in another working directory.
    """
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
    elif "://" not in uri:
        uri = Path(uri).resolve().as_uri()
    return uri


def _client(uri: str):
    # deferred (heavy import): mlflow
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def ensure_experiment(uri: str, name: str) -> str:
    """Experiment id of `name`; a new one on a SQLite store keeps its artifacts in `mlruns/` beside the
    database file (MLflow's default, ./mlruns, is whatever folder the command happened to run in); a file
    store keeps them inside its own folder already."""
    client = _client(uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri[len("sqlite:///"):]).resolve().parent / "mlruns").as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # created concurrently by another process
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def find_run_by_name(uri: str, experiment: str, run_name: str) -> str | None:
    """Run id of the newest run tagged with this cnnray run name, if any."""
    client = _client(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    runs = client.search_runs(
        [exp.experiment_id], filter_string=f"tags.`{RUN_NAME_TAG}` = '{run_name}'",
        order_by=["attributes.start_time DESC"], max_results=1,
    )
    return runs[0].info.run_id if runs else None


def start_run(
    cfg: Config, run_name: str, *, uri: str, resume: bool, tags: dict[str, str] | None = None,
    parent_run_id: str | None = None, log_config: bool = True, experiment_id: str | None = None,
    run_id: str | None = None,
) -> TrackingContext:
    """Start a run (or re-attach the existing one when resuming) and log the resolved config.

    `experiment_id`: known already (a search's trials): no lookup. `run_id`: the run to re-attach, known already
    (no search of the store by name)."""
    client = _client(uri)
    experiment_id = experiment_id or ensure_experiment(uri, cfg.tracking.experiment)
    if run_id is None and resume:
        run_id = find_run_by_name(uri, cfg.tracking.experiment, run_name)
    if run_id is not None:
        client.update_run(run_id, status="RUNNING")
        return TrackingContext(uri, experiment_id, run_id, created=False)
    all_tags = {RUN_NAME_TAG: run_name, "mlflow.runName": run_name, **(tags or {})}
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run = client.create_run(experiment_id, tags=all_tags, run_name=run_name)
    ctx = TrackingContext(uri, experiment_id, run.info.run_id)
    if log_config:
        log_config_params(ctx, cfg)
    return ctx


def log_config_params(ctx: TrackingContext, cfg: Config) -> None:
    """Flattened config as params; the full YAML as an artifact (long values live only there)."""
    # deferred (heavy import): mlflow
    from mlflow.entities import Param

    client = _client(ctx.uri)
    params = []
    for key, value in flatten(cfg).items():
        text = "null" if value is None else str(value)
        if len(text) > MAX_PARAM_LEN:
            text = "(see config.yaml artifact)"
        params.append(Param(key, text))
    for i in range(0, len(params), 100):  # MLflow's per-batch param limit
        client.log_batch(ctx.run_id, params=params[i : i + 100])
    log_text(ctx, to_yaml(cfg), "config.yaml")


def log_text(ctx: TrackingContext, text: str, artifact_file: str) -> None:
    """Write text as an artifact of the run."""
    _client(ctx.uri).log_text(ctx.run_id, text, artifact_file)


def log_artifact_file(ctx: TrackingContext, path: str | Path, artifact_path: str | None = None) -> None:
    """Upload one local file as an artifact."""
    _client(ctx.uri).log_artifact(ctx.run_id, str(path), artifact_path)


def set_tags(ctx: TrackingContext, tags: dict[str, Any]) -> None:
    """Set run tags (values stringified), in one call to the store."""
    # deferred (heavy import): mlflow
    from mlflow.entities import RunTag

    if tags:
        _client(ctx.uri).log_batch(ctx.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def log_metrics(ctx: TrackingContext, metrics: dict[str, float], step: int | None = None) -> None:
    """Log scalar metrics in one batch."""
    # deferred (heavy import): mlflow
    from mlflow.entities import Metric

    ts = int(time.time() * 1000)
    batch = [Metric(k, float(v), ts, step or 0) for k, v in metrics.items()]
    _client(ctx.uri).log_batch(ctx.run_id, metrics=batch)


def log_batch(ctx: TrackingContext, *, metrics: dict[str, float] | None = None, tags: dict[str, Any] | None = None,
              step: int = 0) -> None:
    """Metrics (at `step`) and tags (stringified) in one call to the store."""
    # deferred (heavy import): mlflow
    from mlflow.entities import Metric, RunTag

    ts = int(time.time() * 1000)
    _client(ctx.uri).log_batch(ctx.run_id, metrics=[Metric(k, float(v), ts, step) for k, v in (metrics or {}).items()],
                               tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()])


def end_run(ctx: TrackingContext, status: str) -> None:
    """Close the run as FINISHED, FAILED or KILLED (never left RUNNING)."""
    assert status in ("FINISHED", "FAILED", "KILLED"), status
    _client(ctx.uri).set_terminated(ctx.run_id, status=status)


def mark_killed_if_running(uri: str, run_id: str) -> bool:
    """End a run left RUNNING by a process that died (the local-cluster watchdog calls this)."""
    client = _client(uri)
    run = client.get_run(run_id)
    if run.info.status != "RUNNING":
        return False
    client.set_tag(run_id, "cnnray.end_reason", "driver process died")
    if "cnnray.resumed_after_finish" in run.data.tags:  # a failed resume never unfinishes a finished run
        client.set_tag(run_id, "cnnray.resume_failed", "KILLED: driver process died")
        client.set_terminated(run_id, status="FINISHED")
    else:
        client.set_terminated(run_id, status="KILLED")
    return True


def run_status(uri: str, run_id: str) -> str:
    """RUNNING, FINISHED, FAILED, KILLED or SCHEDULED."""
    return _client(uri).get_run(run_id).info.status


def metric_history(ctx: TrackingContext, key: str) -> list[tuple[int, float]]:
    """(step, value) pairs of a metric, sorted by step."""
    hist = _client(ctx.uri).get_metric_history(ctx.run_id, key)
    return sorted((m.step, m.value) for m in hist)


def scratch_dir() -> tempfile.TemporaryDirectory:
    """A temporary directory for artifacts before upload."""
    return tempfile.TemporaryDirectory(prefix="cnnray-")
