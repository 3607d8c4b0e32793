"""Register a compressed candidate as a new version of its source's registered model, with the evidence and the
compression command that made it (what `cnnray replay` of the version runs again)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnray.classifier.card import ModelCard
from cnnray.tracking.model_registry import RegisteredModel, register_weights

TAG = "cnnray.compress."
COMMAND_TAG = f"{TAG}command"  # JSON of the options that shape the result (compress_command.COMMAND_FIELDS)
COMMAND_FORMAT = 1


def evidence_tags(evidence: dict[str, Any]) -> dict[str, str]:
    """`cnnray.compress.*` tags from a flat dict of figures (floats to 6 significant digits)."""
    return {f"{TAG}{k}": (f"{v:.6g}" if isinstance(v, float) else str(v)) for k, v in evidence.items()
            if v is not None}


def command_tag(command: dict[str, Any]) -> dict[str, str]:
    """The `cnnray.compress.command` tag: the command as one JSON object (sorted keys, with its format)."""
    return {COMMAND_TAG: json.dumps({"format": COMMAND_FORMAT, **command}, sort_keys=True)}


def read_command(tags: dict[str, str]) -> dict[str, Any] | None:
    """The command a version's tags record (without `format`); None when the version records none. ValueError
    for a tag that is not a JSON object of a known format."""
    text = tags.get(COMMAND_TAG)
    if text is None:
        return None
    try:
        command = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"tag {COMMAND_TAG} is not JSON ({e})") from None
    if not isinstance(command, dict) or command.get("format") != COMMAND_FORMAT:
        raise ValueError(f"tag {COMMAND_TAG} is not a format-{COMMAND_FORMAT} command object: {text[:200]}")
    return {k: v for k, v in command.items() if k != "format"}


def register_compressed(tracking_uri: str, experiment: str, name: str, card: ModelCard,
                        weights: dict[str, torch.Tensor], *, example: np.ndarray, evidence: dict[str, Any],
                        files: dict[str, Path], alias: str | None, command: dict[str, Any] | None = None,
                        tags: dict[str, str] | None = None) -> RegisteredModel:
    """A new version of `name`: the candidate's weights and card, the method's files, metrics and tags (the
    evidence, the command when given, then `tags`)."""
    method = card.compression.get("method")
    metrics = {k: float(v) for k, v in evidence.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    all_tags = {**evidence_tags(evidence), **(command_tag(command) if command is not None else {}), **(tags or {})}
    return register_weights(tracking_uri, experiment, f"compress-{method}-{card.compression.get('source', '')}"
                            .replace("models:/", "").replace("/", "-"), weights, card, example=example,
                            registered_name=name, alias=alias, tags=all_tags, metrics=metrics,
                            extra_files=files)
