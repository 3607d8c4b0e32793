"""What MLflow holds about a registered version's training, read for `cnnray replay`: the run, its saved config,
its tags and per-epoch curves. It reads and decides nothing (cnnray/replay decides)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cnnray.errors import UserInputError
from cnnray.tracking.model_store import ResolvedVersion, client

CONFIG_ARTIFACT = "config.yaml"
CURVES = ("train_loss", "val_loss", "val_acc")
REPLAY_OF_TAG = "cnnray.replay_of"


@dataclass(frozen=True)
class TrainingRecord:
    """The run that produced a version, as MLflow has it."""

    run_id: str
    status: str
    run_tags: dict[str, str]
    config_yaml: str
    artifacts: tuple[str, ...]  # top-level artifact paths and those under configs/
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    world_size: int | None = None  # the DDP world the run trained with (its last epoch's)


def _artifact_paths(c, run_id: str) -> tuple[str, ...]:
    top = [a.path for a in c.list_artifacts(run_id)]
    under = [a.path for a in c.list_artifacts(run_id, "configs")] if "configs" in top else []
    return tuple(top + under)


def read_training_record(version: ResolvedVersion, tracking_uri: str) -> TrainingRecord:
    """The version's run with its saved config; UserInputError when the run or its config artifact is gone."""
    # deferred (heavy import): mlflow
    from mlflow.exceptions import MlflowException

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # the command prints its own lines
    c = client(tracking_uri)
    if not version.run_id:
        raise UserInputError(f"{version.label} records no MLflow run: nothing to replay from")
    try:
        run = c.get_run(version.run_id)
    except MlflowException:
        raise UserInputError(f"{version.label}: its training run {version.run_id} is gone from {tracking_uri} "
                             "(deleted?): the config to replay was saved with it") from None
    if run.info.lifecycle_stage == "deleted":
        raise UserInputError(f"{version.label}: its training run {version.run_id} is deleted: restore it "
                             "(`mlflow runs restore`) to replay the version")
    artifacts = _artifact_paths(c, version.run_id)
    if CONFIG_ARTIFACT not in artifacts:
        raise UserInputError(f"{version.label}: its run {version.run_id} has no {CONFIG_ARTIFACT} artifact (removed, "
                             "or logged by a tool other than cnnray): the resolved config is what a replay trains")
    with tempfile.TemporaryDirectory(prefix="cnnray-replay-") as tmp:
        try:
            path = c.download_artifacts(version.run_id, CONFIG_ARTIFACT, tmp)
            text = Path(path).read_text()
        except Exception as e:  # noqa: BLE001 - an unreadable artifact store means the same to the user
            raise UserInputError(f"{version.label}: cannot read {CONFIG_ARTIFACT} of run {version.run_id}: "
                                 f"{type(e).__name__}: {e}") from None
    curves = {k: sorted((m.step, m.value) for m in c.get_metric_history(version.run_id, k)) for k in CURVES}
    world = sorted((m.step, m.value) for m in c.get_metric_history(version.run_id, "world_size"))
    return TrainingRecord(version.run_id, run.info.status, dict(run.data.tags), text, artifacts, curves,
                          int(world[-1][1]) if world else None)


def run_curves(tracking_uri: str, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """The per-epoch curves of a run (step, value), by metric."""
    c = client(tracking_uri)
    return {k: sorted((m.step, m.value) for m in c.get_metric_history(run_id, k)) for k in CURVES}


def versions_of_run(tracking_uri: str, run_id: str) -> list[ResolvedVersion]:
    """Registered versions whose model came from `run_id` (a runs:/ URI's versions)."""
    c = client(tracking_uri)
    out = []
    for mv in c.search_model_versions(f"run_id='{run_id}'", max_results=100):
        out.append(ResolvedVersion(f"models:/{mv.name}/{mv.version}", mv.name, str(mv.version), mv.run_id,
                                   f"models:/{mv.name}/{mv.version}", dict(mv.tags or {})))
    return sorted(out, key=lambda v: (v.name or "", int(v.version or 0)))


def record_replay(tracking_uri: str, run_id: str, tags: dict[str, str], files: list[Path],
                  version: tuple[str, str] | None = None) -> None:
    """The verdict on the replay's run (tags, files as artifacts) and on its registered version when it has one."""
    c = client(tracking_uri)
    for k, v in tags.items():
        c.set_tag(run_id, k, str(v)[:5000])
    for f in files:
        c.log_artifact(run_id, str(f))
    if version is not None:
        for k, v in tags.items():
            c.set_model_version_tag(version[0], version[1], k, str(v)[:5000])
