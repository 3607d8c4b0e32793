"""Check the checkpoint a resume will load, in the driver, before any worker starts.

Ray Train resumes from the latest checkpoint in its snapshot; a truncated or foreign file there
would otherwise fail inside every worker with a clipped traceback. Here it is opened with
`weights_only=True`, its keys are checked and its weights are loaded into the configured model,
so that a bad checkpoint (or a resume with a different `model.*`) exits 2 naming the file.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import torch

from cnnray.data.uri import open_location, path_exists
from cnnray.errors import ConfigError
from cnnray.ray_compat import SNAPSHOT_FILE, read_checkpoint_snapshot
from cnnray.run.checkpoint_files import HISTORY_KEY
from cnnray.run.checkpoints import INDEX_FILE, read_index
from cnnray.run.cost import COST_KEY, CostTotals, device_hours, format_hours

STATE_KEYS = {"model", "optimizer", "schedule", "epoch", "global_step", "best_metric", "rng"}


@dataclass
class ResumePoint:
    """The checkpoint a resume starts from, and those after it that must be skipped."""

    checkpoint_dir: str | None  # None: the run has no checkpoint yet (it starts from scratch)
    epochs_done: int
    skip: list[str]  # newer checkpoint folder names Ray would hand back instead (train.resume_from)
    explicit: bool  # chosen with train.resume_from
    ray_latest: bool = False  # the checkpoint Ray Train itself hands back on resume (its snapshot's latest)


def _read(path: str) -> bytes:
    fs, p = open_location(path, key="checkpoint")
    with fs.open_input_stream(p) as f:
        return f.read()


def check_checkpoint(ckpt_dir: str, model: torch.nn.Module | None = None) -> int:
    """Epochs the checkpoint covers; ValueError naming the file when it cannot be resumed from."""
    state_path = f"{ckpt_dir}/state.pt"
    try:
        state = torch.load(io.BytesIO(_read(state_path)), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated, foreign or unsafe files all end here
        raise ValueError(f"{state_path} cannot be loaded ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(state, dict) or not STATE_KEYS <= set(state):
        missing = sorted(STATE_KEYS - set(state)) if isinstance(state, dict) else sorted(STATE_KEYS)
        raise ValueError(f"{state_path} is not a cnnray training state (missing {', '.join(missing)})")
    if model is not None:
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as e:
            detail = " ".join(line.strip() for line in str(e).splitlines()[1:3])[:300]
            raise ConfigError(f"{state_path} holds weights of a different model than model.* now configures "
                              f"({detail}); resume with the model.* settings in {ckpt_dir}/config.yaml") from None
    best_path = f"{ckpt_dir}/best_model.pt"
    if path_exists(best_path, key="checkpoint"):
        try:
            torch.load(io.BytesIO(_read(best_path)), map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"{best_path} cannot be loaded ({type(e).__name__})") from None
    try:
        json.loads(_read(f"{ckpt_dir}/meta.json"))
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{ckpt_dir}/meta.json cannot be read ({type(e).__name__})") from None
    return int(state["epoch"])


def epoch_history(ckpt_dir: str) -> dict[int, dict[str, float]]:
    """{epoch: reported scalars} of every epoch a checkpoint covers (empty for one written before cnnray kept it)."""
    try:
        history = json.loads(_read(f"{ckpt_dir}/meta.json")).get(HISTORY_KEY) or {}
        return {int(e): {str(k): float(v) for k, v in m.items()} for e, m in history.items()}
    except (ValueError, TypeError, AttributeError, OSError):
        return {}  # check_checkpoint already vouched for the file; a history it cannot read only loses the back-fill


def recorded_cost(ckpt_dir: str) -> CostTotals | None:
    """The run's cost totals up to this checkpoint (None: one written before cnnray kept them)."""
    try:
        meta = json.loads(_read(f"{ckpt_dir}/meta.json"))
    except (ValueError, OSError):
        return None
    return CostTotals.from_meta(meta.get(COST_KEY)) if isinstance(meta, dict) and COST_KEY in meta else None


def refuse_spent_budget(point: ResumePoint, budget_device_hours: float | None) -> None:
    """ConfigError (exit 2) when the checkpoint a resume starts from already spent train.budget_device_hours, or
    when its last epoch's cost on top would exceed it (the run would stop there again without training)."""
    if budget_device_hours is None or not point.checkpoint_dir:
        return
    cost = recorded_cost(point.checkpoint_dir)
    if cost is None:
        return
    spent, epoch = cost.device_hours, device_hours(cost.epoch_device_s)
    where = f"run '{point.checkpoint_dir.rstrip('/').rsplit('/', 2)[-2]}' after epoch {point.epochs_done}"
    if spent >= budget_device_hours:
        raise ConfigError(f"train.budget_device_hours={budget_device_hours:g}: {where} already spent "
                          f"{format_hours(spent)} device-hours; raise the budget above that to continue it")
    if spent + epoch > budget_device_hours:
        raise ConfigError(f"train.budget_device_hours={budget_device_hours:g}: {where} spent {format_hours(spent)} "
                          f"device-hours and its last epoch cost {format_hours(epoch)}: one more epoch would exceed "
                          f"the budget; raise it to at least {format_hours(spent + epoch)} to continue")


def _describe_previous(run_dir: str, names: list[str], bad: str, model: Any) -> str:
    for name in reversed(names[: names.index(bad)] if bad in names else []):
        try:
            epochs = check_checkpoint(f"{run_dir}/{name}", model)
        except ValueError:
            continue
        return (f"; the previous checkpoint {name} (after epoch {epochs}) loads: continue from it with "
                f"train.resume_from={name}")
    return "; no earlier checkpoint of this run loads: start a new run (another run.name)"


def _checkpoints_of(run_dir: str) -> tuple[list[str], str | None, str | None]:
    """(checkpoint names, oldest first; the latest; Ray's latest) from Ray Train's snapshot and the local
    runner's index.

    A run may have been continued by the other runner: both lists count, and the newest latest wins
    (names are timestamps in both).
    """
    names: list[str] = []
    latest: str | None = None
    latest_of: dict[str, str | None] = {}
    for file, parse, what in ((SNAPSHOT_FILE, read_checkpoint_snapshot, "is this run from another Ray version?"),
                              (INDEX_FILE, read_index, "is it truncated?")):
        path = f"{run_dir}/{file}"
        if not path_exists(path, key="checkpoint"):
            continue
        parsed = parse(_read(path).decode(errors="replace"))
        if parsed is None:
            raise ConfigError(f"{path} cannot be read: {what} Start a new run (another run.name)")
        names += parsed[0]
        latest_of[file] = parsed[1]
        latest = max(filter(None, (latest, parsed[1])), default=None)
    return sorted(set(names)), latest, latest_of.get(SNAPSHOT_FILE)


def check_resume(run_dir: str, resume_from: str | None, model: torch.nn.Module | None) -> ResumePoint:
    """The checkpoint to resume from, checked; ConfigError (exit 2) naming the file when unusable."""
    names, latest, ray_latest = _checkpoints_of(run_dir)
    if resume_from is not None:
        name = resume_from.rstrip("/").rsplit("/", 1)[-1]
        if name not in names:
            raise ConfigError(f"train.resume_from={resume_from!r}: not a checkpoint of this run; its checkpoints: "
                              + (", ".join(names) or "none"))
        try:
            epochs = check_checkpoint(f"{run_dir}/{name}", model)
        except ValueError as e:
            raise ConfigError(f"train.resume_from: {e}") from None
        return ResumePoint(f"{run_dir}/{name}", epochs, names[names.index(name) + 1:], True)
    if latest is None:
        return ResumePoint(None, 0, [], False)
    try:
        epochs = check_checkpoint(f"{run_dir}/{latest}", model)
    except ConfigError:
        raise
    except ValueError as e:
        raise ConfigError(f"cannot resume run '{run_dir.rsplit('/', 1)[-1]}': {e}"
                          + _describe_previous(run_dir, names, latest, model)) from None
    # Continued by the local runner after Ray: Ray would hand back its own older latest, which is skipped.
    skip = [ray_latest] if ray_latest and ray_latest != latest else []
    return ResumePoint(f"{run_dir}/{latest}", epochs, skip, False, ray_latest=latest == ray_latest)
