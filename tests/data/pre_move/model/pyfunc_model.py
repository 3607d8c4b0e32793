"""The MLflow "models from code" file of every cnnray version: MLflow copies this file into the model and
runs it at load time (`mlflow.models.set_model`), so no pickled Python object is in the load path.

It reads `card.json` and `weights.pt` (a state_dict loaded with weights_only=True) from the model's
artifacts and needs the `cnnray` package importable (`mlflow models serve --env-manager local`).
Input: images (see `cnnray.serve.preprocess`); params: `top_k` (int, 5), `return_logits` (bool, False).
Output: a DataFrame with class_name, class_index, probability, top_classes, top_probabilities (and logits).
Not imported by cnnray itself: `registry.py` passes its path.
"""

from __future__ import annotations

import os
from typing import Any

import mlflow
from mlflow.pyfunc import PythonModel


class CnnrayImageClassifier(PythonModel):
    """pyfunc over `cnnray.serve.ImageClassifier`."""

    def load_context(self, context: Any) -> None:
        """Rebuild the network from the card and the weights (sha256-checked)."""
        from cnnray.serve.card import ModelCard
        from cnnray.serve.classifier import ImageClassifier, file_sha256, load_weights

        card = ModelCard.read(context.artifacts["card"])
        weights = context.artifacts["weights"]
        if card.weights_sha256 and file_sha256(weights) != card.weights_sha256:
            raise ValueError(f"{weights} does not match the sha256 in the model card")
        device = os.environ.get("CNNRAY_DEVICE") or ("cuda" if _cuda() else "cpu")
        self.clf = ImageClassifier(card, load_weights(weights), device=device)

    def predict(self, context, model_input, params=None):  # no type hints: MLflow would enforce them
        """Images -> one row per image with the class, its probability and the top-k."""
        import pandas as pd

        params = params or {}
        pred = self.clf.predict(model_input, top_k=int(params.get("top_k", 5)))
        return pd.DataFrame(pred.records(self.clf.class_names, logits=bool(params.get("return_logits", False))))


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


mlflow.models.set_model(CnnrayImageClassifier())
