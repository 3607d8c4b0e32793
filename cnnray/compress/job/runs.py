"""The training runs of `cnnray compress`: a pruned network's fine-tune and a student distilled from a
teacher. Each is an ordinary cnnray training run (same runners, DDP, checkpoints, MLflow run, failure
handling) on the source version's data, started from given weights or beside a teacher
(`init_state.py`). The run logs its model but registers nothing: `cnnray compress` gates the result
and registers it with the evidence.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import torch

from cnnray.config import Config, load_config
from cnnray.config.loader import parse_value
from cnnray.errors import ConfigError
from cnnray.run.loop_config import InitState
from cnnray.run.outcome import load_best
from cnnray.run.plan import prepare_run
from cnnray.run.training import run_training

TRAINING_PREFIXES = ("train.", "optim.", "schedule.", "scaling.", "run.")  # prune and distill
STUDENT_PREFIX = "model."  # distill only: the student's architecture and options
# A fine-tune starts from trained weights: a short run at a tenth of the default lr, without warmup.
PRUNE_DEFAULTS = {"train.epochs": 4, "optim.lr": 3e-4, "schedule.warmup_epochs": 0.0}
# QAT: a short, gentle fine-tune in fp32 (fake quantization under bf16 autocast would quantize bf16 rounding).
QAT_DEFAULTS = {"train.epochs": 2, "optim.lr": 1e-4, "schedule.warmup_epochs": 0.0, "train.precision": "fp32",
                "train.ema": False, "train.compile": False}


class CompressTrainingFailed(RuntimeError):
    """The fine-tune or distillation run did not finish: nothing to gate or register."""


def split_training_keys(method: str, overrides: list[str]) -> tuple[list[str], list[str]]:
    """(training keys, the rest) of `key=value` arguments; ConfigError for a training key this method ignores."""
    allowed = TRAINING_PREFIXES + ((STUDENT_PREFIX,) if method == "distill" else ())
    training, rest = [], []
    for o in overrides:
        key = o.split("=", 1)[0]
        if key.startswith(TRAINING_PREFIXES + (STUDENT_PREFIX,)):
            if method not in ("prune", "distill", "quantize") or not key.startswith(allowed):
                raise ConfigError(f"key {key!r} is not accepted by --method {method}: training keys "
                                  f"({', '.join(p + '*' for p in TRAINING_PREFIXES)}) go with prune, distill and "
                                  "quantize --qat, model.* (the student) with distill")
            training.append(o)
        else:
            rest.append(o)
    return training, rest


def _card_model(card: Any) -> dict[str, Any]:
    return {f"model.{k}": v for k, v in {"name": card.architecture, **card.model_kwargs}.items()}


def training_config(method: str, card: Any, data: Any, tracking_uri: str, experiment: str, label: str,
                    training: list[str]) -> Config:
    """The run's config: the source's architecture (for distill, the student: half the teacher's width,
    a quarter of its parameters, unless model.* keys say otherwise) and data, the method's defaults, then
    the user's keys. Registration is off: compress registers after its gate."""
    # Time and pid: two commands started in the same second on the same version get runs of their own.
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    name = f"compress-{method}-{label.replace('models:/', '').replace('/', '-').replace('@', '-')}-{stamp}"
    items: dict[str, Any] = {"data": data.model_dump(mode="json"), "tracking.uri": tracking_uri,
                             "tracking.experiment": experiment, "registry.enabled": False, "run.name": name,
                             **_card_model(card)}
    if method in ("prune", "quantize"):
        items.update(PRUNE_DEFAULTS if method == "prune" else QAT_DEFAULTS)
    else:
        items["model.width"] = float(card.model_kwargs.get("width") or 1.0) / 2
    for o in training:
        key, value = o.split("=", 1)
        items[key.strip()] = parse_value(value)
    cfg = load_config(overrides=items)
    if method == "distill":
        _check_student(cfg, card)
    return cfg


def _check_student(cfg: Config, card: Any) -> None:
    """The student must take the teacher's input and predict its classes (ConfigError, exit 2)."""
    for key, want in (("in_chans", card.input.channels), ("num_classes", card.num_classes)):
        got = getattr(cfg.model, key)
        if got is not None and int(got) != int(want):
            raise ConfigError(f"model.{key}={got}: the student must take the teacher's input and predict its "
                              f"classes (teacher: {key}={want})")


def run_compress_training(cfg: Config, *, structure: dict[str, Any] | None = None,
                          init_weights: dict[str, torch.Tensor] | None = None, teacher: dict[str, Any] | None = None,
                          qat: dict[str, Any] | None = None, on_line: Callable[[str], None] = print) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Train; returns (best weights, the training result object). CompressTrainingFailed if it did not finish."""
    # Its weights are the source version's: an init_from of the config it was trained with does not apply.
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"init_from": None})})
    prep = prepare_run(cfg)
    # The tensors are staged as files under the run's folder when it starts (`cnnray/run/stage.py`).
    prep.init = InitState(structure={"steps": [structure]} if structure else None,
                          teacher={k: v for k, v in teacher.items() if k != "weights"} if teacher is not None else None,
                          qat=qat)
    prep.init_weights = init_weights
    prep.teacher_weights = teacher["weights"] if teacher is not None else None
    if structure:
        prep.card_compression = {"method": structure.get("method"), "steps": [structure]}
    result = run_training(prep.cfg, prepared=prep, on_line=on_line)
    if result["status"] != "FINISHED":
        raise CompressTrainingFailed(f"the {cfg.run.name} training run ended {result['status']}: {result.get('error')}"
                                     f"; nothing registered (MLflow run {result.get('run_id')})")
    weights, _ = load_best(result["checkpoint"])
    return weights, result
