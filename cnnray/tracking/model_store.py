"""Find a registered version from a model URI and fetch its card and weights (no pickle, no pyfunc load).

Versions registered by earlier cnnray releases (MLflow's pytorch flavor, no model card) are refused
with the way to re-register them: loading them would mean unpickling a Python object or an exported
graph that knows neither its classes nor its preprocessing.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cnnray.classifier.card import CARD_FILE, WEIGHTS_FILE, ModelCard
from cnnray.classifier.classifier import ImageClassifier
from cnnray.errors import InvalidCardError, UserInputError
from cnnray.tracking.model_registry import model_format
from cnnray.tracking.uri import ModelRef, parse_model_uri

LEGACY_HELP = ("it was registered by an earlier cnnray (MLflow pytorch flavor, without a model card) and is not "
               "loaded: that would mean unpickling it. Re-register it from its training checkpoint with "
               "`cnnray registry --register CHECKPOINT_DIR [--name NAME]` (the Ray Train checkpoint directory "
               "holding best_model.pt, meta.json and config.yaml), or train it again")


@dataclass
class ResolvedVersion:
    """A concrete model: registered name and version (None for an unregistered run model) and where it lives."""

    uri: str
    name: str | None
    version: str | None
    run_id: str | None
    download_uri: str
    tags: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """models:/NAME/VERSION, or the URI it came from."""
        return f"models:/{self.name}/{self.version}" if self.name else self.uri


def client(tracking_uri: str):
    """An MlflowClient for `tracking_uri`."""
    # deferred (heavy import): mlflow
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def _error_code(e: Exception) -> str:
    return str(getattr(e, "error_code", ""))


def registered_model(tracking_uri: str, name: str) -> Any:
    """The registered model `name`; UserInputError listing the registered names when it does not exist."""
    # deferred (heavy import): mlflow
    from mlflow.exceptions import MlflowException

    c = client(tracking_uri)
    try:
        return c.get_registered_model(name)
    except MlflowException as e:
        if "RESOURCE_DOES_NOT_EXIST" not in _error_code(e):
            raise
    names = sorted(m.name for m in c.search_registered_models(max_results=100) if not m.name.endswith(LOCK_SUFFIX))
    raise UserInputError(f"no registered model named {name!r} at {tracking_uri}; registered models: "
                         f"{', '.join(names) or '(none)'}")


LOCK_SUFFIX = ".cnnray-lock"


def resolve(uri: str | ModelRef, tracking_uri: str) -> ResolvedVersion:
    """The version a URI points to now (alias resolved once); UserInputError for what does not exist."""
    # deferred (heavy import): mlflow
    from mlflow.exceptions import MlflowException

    ref = parse_model_uri(uri) if isinstance(uri, str) else uri
    c = client(tracking_uri)
    if ref.run_id:
        try:
            c.get_run(ref.run_id)
        except MlflowException:
            raise UserInputError(f"--model {ref.uri}: no run {ref.run_id} at {tracking_uri}") from None
        return ResolvedVersion(ref.uri, None, None, ref.run_id, f"runs:/{ref.run_id}/{ref.path}")
    assert ref.name
    rm = registered_model(tracking_uri, ref.name)
    aliases = dict(getattr(rm, "aliases", {}) or {})
    version = ref.version
    if ref.alias:
        if ref.alias not in aliases:
            have = ", ".join(f"@{a} (v{v})" for a, v in sorted(aliases.items())) or "none"
            raise UserInputError(f"registered model {ref.name!r} has no alias {ref.alias!r}; its aliases: {have}")
        version = str(aliases[ref.alias])
    try:
        mv = c.get_model_version(ref.name, version)
    except MlflowException as e:
        if "RESOURCE_DOES_NOT_EXIST" not in _error_code(e):
            raise
        raise UserInputError(f"registered model {ref.name!r} has no version {version}") from None
    return ResolvedVersion(ref.uri, ref.name, str(mv.version), mv.run_id, f"models:/{ref.name}/{mv.version}",
                           dict(mv.tags or {}), sorted(a for a, v in aliases.items() if str(v) == str(mv.version)))


def fetch(version: ResolvedVersion, tracking_uri: str, dst: str | Path | None = None) -> Path:
    """Download the version's card.json and weights.pt into a directory (refusing legacy versions)."""
    # deferred (heavy import): mlflow
    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # the command prints its own lines
    mlflow.set_tracking_uri(tracking_uri)
    out = Path(dst or tempfile.mkdtemp(prefix="cnnray-model-"))
    root = Path(mlflow.artifacts.download_artifacts(artifact_uri=version.download_uri, dst_path=str(out)))
    mlmodel = root / "MLmodel"
    if not mlmodel.is_file():
        raise UserInputError(f"{version.label}: no MLflow model at {version.download_uri}")
    meta = yaml.safe_load(mlmodel.read_text()) or {}

    if model_format(meta) is None:
        raise UserInputError(f"{version.label}: {LEGACY_HELP}")
    files = root / "artifacts"
    for f in (CARD_FILE, WEIGHTS_FILE):
        if not (files / f).is_file():
            raise UserInputError(f"{version.label}: the model lacks artifacts/{f}; it is incomplete")
    return files


def load_card(version: ResolvedVersion, tracking_uri: str) -> Any:
    """The version's ModelCard alone (no weights download); UserInputError for a version without one."""
    # deferred (heavy import): mlflow
    import mlflow


    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="cnnray-card-") as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(artifact_uri=f"{version.download_uri}/artifacts/{CARD_FILE}",
                                                       dst_path=tmp)
        except Exception:  # noqa: BLE001 - any way of not finding it means the same to the user
            raise UserInputError(f"{version.label}: no artifacts/{CARD_FILE}; {LEGACY_HELP}") from None
        return ModelCard.read(Path(path), where=version.label)


def load_version(uri: str | ModelRef, tracking_uri: str, **classifier_kw: Any) -> tuple[Any, ResolvedVersion]:
    """(ImageClassifier, ResolvedVersion) for a model URI."""
    version = resolve(uri, tracking_uri)
    with tempfile.TemporaryDirectory(prefix="cnnray-model-") as tmp:
        try:
            clf = ImageClassifier.from_dir(fetch(version, tracking_uri, tmp), **classifier_kw)
        except InvalidCardError as e:  # named after the download directory: name the version instead
            raise e.at(version.label) from None
    return clf, version


def load_pyfunc(uri: str, tracking_uri: str) -> Any:
    """The version as MLflow serves it (`mlflow.pyfunc.load_model`), for benchmarks and checks."""
    # deferred (heavy import): mlflow
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.pyfunc.load_model(uri)
