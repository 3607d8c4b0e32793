"""An MLflow evaluation run linked to the model version it evaluated (tags both ways), with its artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnray.tracking.model_store import ResolvedVersion, client
from cnnray.tracking.runs import TrackingContext, end_run, ensure_experiment, log_artifact_file, log_metrics


def log_evaluation_run(tracking_uri: str, experiment: str, version: ResolvedVersion, metrics: dict[str, float],
                       params: dict[str, Any], files: list[Path]) -> str:
    """A FINISHED run `evaluate-NAME-vV` with metrics, params and files; the version gets its run id as a tag."""
    c = client(tracking_uri)
    exp_id = ensure_experiment(tracking_uri, experiment)
    label = f"{version.name}-v{version.version}" if version.name else (version.run_id or "model")
    run_name = f"evaluate-{label}"
    tags = {"mlflow.runName": run_name, "cnnray.kind": "evaluation", "cnnray.model_uri": version.label}
    if version.name:
        tags.update({"cnnray.model_name": version.name, "cnnray.model_version": str(version.version)})
    if version.run_id:
        tags["cnnray.model_run_id"] = version.run_id
    run = c.create_run(exp_id, run_name=run_name, tags=tags)
    ctx = TrackingContext(tracking_uri, exp_id, run.info.run_id)
    try:
        # deferred (heavy import): mlflow
        from mlflow.entities import Param

        c.log_batch(run.info.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
        log_metrics(ctx, metrics)
        for f in files:
            log_artifact_file(ctx, f)
    except BaseException:
        end_run(ctx, "FAILED")
        raise
    end_run(ctx, "FINISHED")
    if version.name:
        c.set_model_version_tag(version.name, str(version.version), "cnnray.last_evaluation_run", run.info.run_id)
    return run.info.run_id
