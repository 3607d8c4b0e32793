"""Frozen evaluation data for a registered version: one split (test, held out, by default), decoded at its input
contract."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch

from cnnray.classifier.card import ModelCard
from cnnray.config.data import DataSection
from cnnray.config.loader import load_config
from cnnray.errors import ConfigError, DataError, UserInputError

SPLITS = ("val", "train", "test")


@dataclass
class EvalData:
    """uint8 images [N,C,S,S], int64 labels, class names and the data set's content fingerprint."""

    x: torch.Tensor
    y: torch.Tensor
    class_names: tuple[str, ...]
    fingerprint: str
    source: str
    split: str


def data_config_for(card: ModelCard, overrides: list[str]) -> DataSection:
    """The card's training data config with `data.*` overrides; image size and channels are the model's."""
    base = card.training.get("data") or {}
    bad = [o for o in overrides if not o.startswith("data.")]
    if bad:
        raise ConfigError(f"only data.* keys may be set here, got {', '.join(bad)}")
    cfg = load_config(overrides=[f"data.{k}={_yaml(v)}" for k, v in _flat(base).items()] + list(overrides))
    data = cfg.data
    c = card.input
    for key, want, got in (("data.image_size", c.image_size, data.image_size), ("data.channels", c.channels, data.channels)):
        if any(o.startswith(key + "=") for o in overrides) and got != want:
            raise ConfigError(f"{key}={got} disagrees with the model's input contract ({want}); "
                              "the model resizes its inputs itself: leave the key out")
    return data.model_copy(update={"image_size": c.image_size, "channels": c.channels})


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        elif v is not None:
            out[f"{prefix}{k}"] = v
    return out


def _yaml(v: Any) -> str:
    return json.dumps(v)  # JSON is YAML: lists, strings and numbers parse back as themselves


def check_classes(card: ModelCard, data_names: tuple[str, ...], where: str) -> None:
    """Refuse data whose classes are not the model's (count first, then names)."""
    model_names = tuple(card.class_names)
    if len(data_names) != len(model_names):
        raise DataError(f"{where} has {len(data_names)} classes but the model predicts {len(model_names)} "
                        f"({', '.join(model_names[:12])}{'...' if len(model_names) > 12 else ''})")
    unseen = [n for n in data_names if n not in model_names]
    if unseen:
        raise DataError(f"{where} has labels the model never saw: {', '.join(unseen[:10])}; "
                        f"the model's classes: {', '.join(model_names[:20])}")
    if tuple(data_names) != model_names:
        raise DataError(f"{where} orders its classes differently from the model; expected {', '.join(model_names)}")


def describe(data: DataSection) -> Any:
    """DatasetInfo of the evaluation data (DataError/ConfigError on bad input; nothing decoded yet)."""
    # deferred (heavy import): pyarrow
    from cnnray.data import absolute_data_path, describe_dataset

    return describe_dataset(absolute_data_path(data))


def load_split(data: DataSection, split: str) -> EvalData:
    """Decode one split of the data at data.image_size/channels."""
    # deferred (heavy import): pyarrow
    from cnnray.data import absolute_data_path, describe_dataset, load_arrays

    if split not in SPLITS:
        raise UserInputError(f"--split {split!r} is not valid; valid splits: {', '.join(SPLITS)}")
    data = absolute_data_path(data)
    info = describe_dataset(data)
    if split == "test":
        # deferred (heavy import): pyarrow
        from cnnray.data.test_split import load_test_split

        t = load_test_split(data)  # the one reader of test images (DataError when the source has no test split)
        x, y = t.x, t.y
    else:
        tx, ty, vx, vy = load_arrays(data)
        x, y = (vx, vy) if split == "val" else (tx, ty)
    return EvalData(x, y, tuple(info.class_names), info.fingerprint, data.source, split)
