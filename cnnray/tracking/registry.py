"""Log the best model to an MLflow run and register it as a new version with lineage and an alias."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import torch
from torch import nn

from cnnray.tracking.runs import TrackingContext


@dataclass
class RegisteredModel:
    """Where the logged model lives and which registered version it became."""

    model_uri: str
    name: str | None
    version: str | None
    alias: str | None


def log_and_register(
    ctx: TrackingContext, model: nn.Module, *, in_chans: int, image_size: int,
    registered_name: str | None, alias: str | None, tags: dict[str, str],
) -> RegisteredModel:
    """Log `model` (fp32, eval, CPU) with signature and input example; register and alias it."""
    import mlflow
    import numpy as np
    from mlflow.models import infer_signature
    from mlflow.tracking import MlflowClient

    model = model.float().cpu().eval().to(memory_format=torch.contiguous_format)
    example = np.random.default_rng(0).random((2, in_chans, image_size, image_size), dtype=np.float32)
    with torch.no_grad():
        out = model(torch.from_numpy(example)).numpy()
    signature = infer_signature(example, out)
    mlflow.set_tracking_uri(ctx.uri)
    client = MlflowClient(tracking_uri=ctx.uri)
    # log_model needs an active run; attach to ours without changing its status at exit.
    # MLflow prints run links and registration chatter; the command prints its own summary.
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet), mlflow.start_run(run_id=ctx.run_id):
        info = mlflow.pytorch.log_model(
            model, name="model", signature=signature, input_example=example,
            registered_model_name=registered_name, await_registration_for=60,
        )
    # The `with` block marks the run FINISHED; the caller decides the final status.
    client.update_run(ctx.run_id, status="RUNNING")
    version = None
    if registered_name:
        version = str(info.registered_model_version)
        for k, v in tags.items():
            client.set_model_version_tag(registered_name, version, k, v)
        client.set_model_version_tag(registered_name, version, "cnnray.run_id", ctx.run_id)
        if alias:
            client.set_registered_model_alias(registered_name, alias, version)
    return RegisteredModel(info.model_uri, registered_name, version, alias if registered_name else None)
