"""A registered version loaded for serving and checked on its own input example before it takes traffic."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnray.classifier.classifier import ImageClassifier
from cnnray.classifier.request import checked_images, parse_body
from cnnray.errors import InvalidCardError
from cnnray.tracking.model_store import ResolvedVersion, fetch

SERVING_EXAMPLE = "serving_input_example.json"  # what MLflow writes beside MLmodel: a body for /invocations


class SmokeTestError(RuntimeError):
    """A version loaded but answered its own input example wrongly (non-finite or malformed output)."""


@dataclass(frozen=True)
class LoadedVersion:
    """A version ready to answer: its classifier, where it came from, and when it was loaded."""

    resolved: ResolvedVersion
    clf: ImageClassifier
    loaded_at: float

    @property
    def version(self) -> str:
        """The registered version number, as a string."""
        return str(self.resolved.version)

    @property
    def label(self) -> str:
        """models:/NAME/VERSION."""
        return self.resolved.label


def load(resolved: ResolvedVersion, tracking_uri: str, device: str = "cpu") -> LoadedVersion:
    """Download, build and smoke-test `resolved`; raises (InvalidCardError, SmokeTestError, ...) when it cannot
    serve, so the caller keeps what it serves now."""
    with tempfile.TemporaryDirectory(prefix="cnnray-serve-") as tmp:
        files = fetch(resolved, tracking_uri, tmp)
        try:
            clf = ImageClassifier.from_dir(files, device=device)
        except InvalidCardError as e:
            raise e.at(resolved.label) from None
        example = _example(files.parent / SERVING_EXAMPLE)
    smoke_test(clf, example, resolved.label)
    return LoadedVersion(resolved, clf, time.time())


def _example(path: Path) -> Any:
    try:
        return parse_body(json.loads(path.read_text())).images
    except (OSError, ValueError):
        return None  # no (readable) example: the smoke test uses a blank image of the card's size


def smoke_test(clf: ImageClassifier, images: Any, label: str) -> None:
    """SmokeTestError unless `images` (the version's input example) get one finite prediction each."""
    c = clf.card.input
    x = (checked_images(images, c) if images is not None
         else torch.zeros((1, c.channels, c.image_size, c.image_size), dtype=torch.uint8))
    pred = clf.predict_uint8(x, top_k=1)
    if pred.probs.shape != (x.shape[0], clf.card.num_classes) or not np.isfinite(pred.probs).all():
        raise SmokeTestError(f"{label}: its input example got non-finite or malformed probabilities "
                             f"(shape {pred.probs.shape}); not switched to")
