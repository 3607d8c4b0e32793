"""A registered version in memory: the network rebuilt from its card, its weights, and prediction."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnray.classifier.card import CARD_FILE, WEIGHTS_FILE, ModelCard
from cnnray.classifier.preprocess import to_model_input
from cnnray.compress.structure import apply_structure, finish_structure
from cnnray.data.transforms import BatchTransform
from cnnray.errors import InvalidCardError, UserInputError
from cnnray.loop.precision import resolve_precision
from cnnray.models import create_model

DEFAULT_BATCH = 256


@dataclass
class Predictions:
    """Per image: logits, probabilities, the predicted index, and the top-k indices and probabilities."""

    logits: np.ndarray  # float32 [N, K]
    probs: np.ndarray  # float32 [N, K]
    index: np.ndarray  # int64 [N]
    top_index: np.ndarray  # int64 [N, k]
    top_prob: np.ndarray  # float32 [N, k]

    def records(self, class_names: tuple[str, ...], *, logits: bool = False) -> list[dict[str, Any]]:
        """One dict per image: class, index, probability, top-k classes and probabilities (and logits)."""
        out = []
        for i in range(len(self.index)):
            r: dict[str, Any] = {
                "class_name": class_names[int(self.index[i])], "class_index": int(self.index[i]),
                "probability": float(self.probs[i, self.index[i]]),
                "top_classes": [class_names[int(j)] for j in self.top_index[i]],
                "top_probabilities": [float(p) for p in self.top_prob[i]],
            }
            if logits:
                r["logits"] = [float(v) for v in self.logits[i]]
            out.append(r)
        return out


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state_dict of plain tensors, read with weights_only=True (no code runs while loading)."""
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise UserInputError(f"{path} is not a state_dict of tensors")
    return sd


class ImageClassifier:
    """Rebuilds the network from a card and weights; takes images in any accepted form."""

    def __init__(self, card: ModelCard, state_dict: dict[str, torch.Tensor], *, device: str | torch.device = "cpu",
                 precision: str = "fp32", channels_last: bool = True) -> None:
        self.card = card
        self.device = torch.device(device)
        try:
            model = create_model(card.architecture, **card.model_kwargs)
        except (TypeError, ValueError) as e:  # an option the factory refuses (a card built by hand, not validated)
            raise InvalidCardError([f"model_kwargs: cannot build model {card.architecture!r} from them: {e}"]) from None
        if card.compression:  # a compressed version: its weights fit the compressed structure

            try:
                model = apply_structure(model, card.compression)
            except ValueError as e:
                raise UserInputError(str(e)) from None
        try:
            model.load_state_dict(state_dict, strict=True)
        except RuntimeError as e:
            detail = " ".join(line.strip() for line in str(e).splitlines()[1:2])[:300]
            raise UserInputError(f"the weights do not fit the network its card describes ({card.architecture}, "
                                 f"compression {card.compression.get('method') or 'none'}): {detail}") from None
        if card.compression:
            model = finish_structure(model, card.compression)
        self.model = model.float().eval().to(self.device)
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        c = card.input
        self.transform = BatchTransform(c.mean, c.std, c.normalize, None)  # training's eval transform

        self.precision = resolve_precision(precision, self.device)

    @classmethod
    def from_dir(cls, directory: str | Path, **kw: Any) -> ImageClassifier:
        """Load card.json and weights.pt from a directory, checking the weights against the card's sha256."""
        d = Path(directory)
        card = ModelCard.read(d / CARD_FILE)
        weights = d / WEIGHTS_FILE
        if card.weights_sha256 and file_sha256(weights) != card.weights_sha256:
            raise UserInputError(f"{weights} does not match the sha256 in {d / CARD_FILE}: the files were altered")
        return cls(card, load_weights(weights), **kw)

    @property
    def class_names(self) -> tuple[str, ...]:
        """Names of the outputs, in order."""
        return self.card.class_names

    def preprocess(self, images: Any) -> torch.Tensor:
        """Images in any accepted form -> uint8 [N,C,S,S] as training saw them."""
        return to_model_input(images, self.card.input)

    @torch.no_grad()
    def logits_uint8(self, x: torch.Tensor, batch_size: int = DEFAULT_BATCH) -> torch.Tensor:
        """float32 logits [N,K] on the CPU for uint8 [N,C,S,S] at the contract's size (training's eval path)."""
        outs = []
        for i in range(0, x.shape[0], batch_size):
            xb = self.transform(x[i:i + batch_size].to(self.device))
            if self.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with self.precision.autocast():
                outs.append(self.model(xb).float().cpu())
        k = self.card.num_classes
        return torch.cat(outs) if outs else torch.zeros((0, k))

    def predict_uint8(self, x: torch.Tensor, top_k: int = 5, batch_size: int = DEFAULT_BATCH) -> Predictions:
        """Predictions for a preprocessed uint8 batch."""
        logits = self.logits_uint8(x, batch_size)
        probs = torch.softmax(logits, dim=1)
        k = max(1, min(int(top_k), probs.shape[1]))
        top = probs.topk(k, dim=1)
        return Predictions(logits.numpy(), probs.numpy(), logits.argmax(1).numpy(), top.indices.numpy(),
                           top.values.numpy())

    def predict(self, images: Any, top_k: int = 5, batch_size: int = DEFAULT_BATCH) -> Predictions:
        """Predictions for images in any accepted form."""
        return self.predict_uint8(self.preprocess(images), top_k, batch_size)
