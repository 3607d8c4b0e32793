"""Register a compressed candidate as a new version of its source's registered model, with the evidence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnray.classifier.card import ModelCard
from cnnray.tracking.model_registry import RegisteredModel, register_weights

TAG = "cnnray.compress."


def evidence_tags(evidence: dict[str, Any]) -> dict[str, str]:
    """`cnnray.compress.*` tags from a flat dict of figures (floats to 6 significant digits)."""
    return {f"{TAG}{k}": (f"{v:.6g}" if isinstance(v, float) else str(v)) for k, v in evidence.items()
            if v is not None}


def register_compressed(tracking_uri: str, experiment: str, name: str, card: ModelCard,
                        weights: dict[str, torch.Tensor], *, example: np.ndarray, evidence: dict[str, Any],
                        files: dict[str, Path], alias: str | None) -> RegisteredModel:
    """A new version of `name`: the candidate's weights and card, the method's files, metrics and tags."""
    method = card.compression.get("method")
    metrics = {k: float(v) for k, v in evidence.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return register_weights(tracking_uri, experiment, f"compress-{method}-{card.compression.get('source', '')}"
                            .replace("models:/", "").replace("/", "-"), weights, card, example=example,
                            registered_name=name, alias=alias, tags=evidence_tags(evidence), metrics=metrics,
                            extra_files=files)
