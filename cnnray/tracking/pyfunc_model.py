"""The MLflow "models from code" file of every cnnray version: MLflow copies this file into the model and
runs it at load time (`mlflow.models.set_model`), so no pickled Python object is in the load path.

It reads `card.json` and `weights.pt` (a state_dict loaded with weights_only=True) from the model's
artifacts and needs the `cnnray` package importable (`mlflow models serve --env-manager local`).
Input: images (see `cnnray.classifier.request`); params: `top_k` (int, 5), `return_logits` (bool, False).
A request the card does not describe raises MlflowException(INVALID_PARAMETER_VALUE): HTTP 400 from
`mlflow models serve`, with cnnray's message naming the problem and the accepted forms.
Output: a DataFrame with class_name, class_index, probability, top_classes, top_probabilities (and logits).
Not imported by cnnray itself: `registry.py` passes its path.
"""

from __future__ import annotations

import os
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel
from mlflow.types.type_hints import TypeFromExample


class CnnrayImageClassifier(PythonModel):
    """pyfunc over `cnnray.classifier.ImageClassifier`."""

    def load_context(self, context: Any) -> None:
        """Rebuild the network from the card and the weights (sha256-checked)."""
        # deferred (heavy import): torch, PIL
        from cnnray.classifier.card import ModelCard
        from cnnray.classifier.classifier import ImageClassifier, file_sha256, load_weights

        card = ModelCard.read(context.artifacts["card"])
        weights = context.artifacts["weights"]
        if card.weights_sha256 and file_sha256(weights) != card.weights_sha256:
            raise ValueError(f"{weights} does not match the sha256 in the model card")
        device = os.environ.get("CNNRAY_DEVICE") or ("cuda" if _cuda() else "cpu")
        self.clf = ImageClassifier(card, load_weights(weights), device=device)

    # TypeFromExample: the one input hint MLflow 3.17 takes without a warning, without a schema of its own
    # (a list[...] hint would replace the params-only signature and make the server refuse dataframe_split)
    # and without converting or checking the input (the example is a DataFrame, so a DataFrame stays one):
    # cnnray's own rules (cnnray.classifier.request) judge it, with messages that name the problem.
    def predict(self, context: Any, model_input: TypeFromExample,
                params: dict[str, Any] | None = None) -> Any:
        """Images -> one row per image with the class, its probability and the top-k."""
        # deferred (heavy import): pandas, torch
        import pandas as pd

        from cnnray.classifier.request import BadRequest, checked_images, parse_params

        try:
            top_k, return_logits = parse_params(params)
            x = checked_images(model_input, self.clf.card.input, _max_images(model_input))
        except BadRequest as e:
            # The scoring server answers an MlflowException with its code's status (INVALID_PARAMETER_VALUE:
            # 400) and message; any other error becomes a 400 with MLflow's generic "unexpected error" text.
            raise MlflowException(str(e), error_code=INVALID_PARAMETER_VALUE) from None
        pred = self.clf.predict_uint8(x, top_k=top_k)
        return pd.DataFrame(pred.records(self.clf.class_names, logits=return_logits))


def _max_images(model_input: Any) -> int:
    """The per-request limit under `mlflow models serve`; none in process (load_model, spark_udf batches)."""
    # deferred (heavy import): torch
    from cnnray.classifier.request import MAX_IMAGES

    # MLflow's scoring server (and its log-time check of the input example) sets this variable; read as a
    # string, not through mlflow.environment_variables: this file also runs under the MLflow of a later server.
    if os.environ.get("_MLFLOW_IS_IN_SERVING_ENVIRONMENT", "").strip().lower() in ("true", "1"):
        return MAX_IMAGES
    items = model_input.get("image", ()) if isinstance(model_input, dict) else model_input
    try:
        return max(MAX_IMAGES, len(items))
    except TypeError:  # no length: checked_images names the problem
        return MAX_IMAGES


def _cuda() -> bool:
    # deferred (heavy import): torch
    import torch

    return torch.cuda.is_available()


mlflow.models.set_model(CnnrayImageClassifier())
