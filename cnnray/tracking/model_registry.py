"""Log a trained model as a self-contained pyfunc ("models from code") and register it with lineage and an alias.

A version stores `card.json` (architecture, class names, input contract, lineage) and `weights.pt` (a
state_dict of plain tensors) as pyfunc artifacts, with `pyfunc_model.py` as its code: loading it runs
that file and `torch.load(..., weights_only=True)`, never an unpickler of Python objects.
"""

from __future__ import annotations

import base64
import contextlib
import io
import re
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from cnnray.classifier.card import CARD_FILE, FORMAT, WEIGHTS_FILE, ModelCard
from cnnray.classifier.classifier import file_sha256
from cnnray.tracking.runs import TrackingContext, _client, end_run, ensure_experiment, log_metrics, scratch_dir

if TYPE_CHECKING:
    from mlflow.models import ModelSignature

CODE_FILE = Path(__file__).with_name("pyfunc_model.py")
FORMAT_KEY = "cnnray_format"  # MLmodel metadata key: how cnnray tells its versions from older ones
MODEL_NAME = "model"


@dataclass
class RegisteredModel:
    """Where the logged model lives and which registered version it became."""

    model_uri: str
    name: str | None
    version: str | None
    alias: str | None


def example_png(image_chw: np.ndarray) -> bytes:
    """A uint8 C,H,W image as PNG bytes (the input example and the serving test's payload)."""
    img = Image.fromarray(image_chw[0] if image_chw.shape[0] == 1 else image_chw.transpose(1, 2, 0))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _requirements() -> list[str]:
    out = []
    for pkg in ("torch", "numpy", "pillow", "pandas", "mlflow", "cnnray"):
        try:
            out.append(f"{pkg}=={re.sub(r'[+].*$', '', metadata.version(pkg))}")
        except metadata.PackageNotFoundError:
            out.append(pkg)
    return out


def _signature() -> ModelSignature:
    # deferred (heavy import): mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import ParamSchema, ParamSpec

    # Params only, no input schema on purpose: the model takes DataFrames of encoded images as well as uint8
    # arrays of any shape the card accepts, which no one MLflow schema describes; its predict (type hint
    # TypeFromExample, so MLflow neither warns nor infers a schema of its own) checks them with
    # cnnray.classifier.request and answers a bad request with HTTP 400 naming the problem.
    return ModelSignature(params=ParamSchema([ParamSpec("top_k", "long", 5),
                                              ParamSpec("return_logits", "boolean", False)]))


def write_model_files(directory: Path, weights: dict[str, torch.Tensor], card: ModelCard) -> ModelCard:
    """weights.pt (plain tensors) and card.json (with the weights' sha256) into `directory`."""
    plain = {k: v.detach().cpu().contiguous().clone() for k, v in weights.items()}
    torch.save(plain, directory / WEIGHTS_FILE)
    card = replace(card, weights_sha256=file_sha256(directory / WEIGHTS_FILE))
    (directory / CARD_FILE).write_text(card.to_json())
    return card


def log_and_register(
    ctx: TrackingContext, weights: dict[str, torch.Tensor], card: ModelCard, *, example: np.ndarray,
    registered_name: str | None, alias: str | None, tags: dict[str, str], extra_files: dict[str, Path] | None = None,
) -> RegisteredModel:
    """Log the pyfunc (input example: `example`, a real uint8 C,H,W training image); register and alias it."""
    # deferred (heavy import): mlflow, pandas
    import mlflow
    import pandas as pd
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(ctx.uri)
    # start_run(run_id) refuses a run outside the process's active experiment (e.g. one a caller set).
    mlflow.set_experiment(experiment_id=ctx.experiment_id)
    client = MlflowClient(tracking_uri=ctx.uri)
    input_example = pd.DataFrame({"image": [base64.b64encode(example_png(example)).decode("ascii")]})
    quiet = io.StringIO()
    with scratch_dir() as tmp:
        d = Path(tmp)
        card = write_model_files(d, weights, card)
        # log_model needs an active run; attach to ours without changing its status at exit.
        # MLflow prints run links and registration chatter; the command prints its own summary.
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet), \
                mlflow.start_run(run_id=ctx.run_id):
            info = mlflow.pyfunc.log_model(
                name=MODEL_NAME, python_model=str(CODE_FILE),
                artifacts={"card": str(d / CARD_FILE), "weights": str(d / WEIGHTS_FILE),
                           **{k: str(v) for k, v in (extra_files or {}).items()}},
                signature=_signature(), input_example=input_example, pip_requirements=_requirements(),
                metadata={FORMAT_KEY: f"{FORMAT}/{card.format_version}"},
                registered_model_name=registered_name, await_registration_for=60,
            )
    # The `with` block marks the run FINISHED; the caller decides the final status.
    client.update_run(ctx.run_id, status="RUNNING")
    version = None
    if registered_name:
        version = str(info.registered_model_version)
        all_tags = {**tags, "cnnray.run_id": ctx.run_id, "cnnray.format": f"{FORMAT}/{card.format_version}",
                    "cnnray.architecture": card.architecture, "cnnray.num_classes": str(card.num_classes)}
        for k, v in all_tags.items():
            client.set_model_version_tag(registered_name, version, k, str(v))
        if alias:
            client.set_registered_model_alias(registered_name, alias, version)
    return RegisteredModel(info.model_uri, registered_name, version, alias if registered_name else None)


def register_weights(uri: str, experiment: str, run_name: str, weights: dict[str, torch.Tensor], card: ModelCard,
                     *, example: np.ndarray, registered_name: str, alias: str | None = None,
                     tags: dict[str, str] | None = None, metrics: dict[str, float] | None = None,
                     extra_files: dict[str, Path] | None = None) -> RegisteredModel:
    """Register weights trained elsewhere in a run of their own (tests, imports, re-registration)."""
    exp_id = ensure_experiment(uri, experiment)
    run = _client(uri).create_run(exp_id, run_name=run_name, tags={"mlflow.runName": run_name})
    ctx = TrackingContext(uri, exp_id, run.info.run_id)
    try:
        if metrics:
            log_metrics(ctx, metrics)
        reg = log_and_register(ctx, weights, card, example=example, registered_name=registered_name, alias=alias,
                               tags={**card.lineage, **(tags or {})}, extra_files=extra_files)
    except BaseException:
        end_run(ctx, "FAILED")
        raise
    end_run(ctx, "FINISHED")
    return reg


def model_format(mlmodel: dict[str, Any]) -> str | None:
    """The cnnray format of a parsed MLmodel file, or None for a version not logged by this cnnray."""
    return (mlmodel.get("metadata") or {}).get(FORMAT_KEY)
