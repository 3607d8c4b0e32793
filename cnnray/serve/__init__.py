"""Serving a registered version: model card + weights (no pickle), preprocessing as training did, prediction.

Ray is imported only by `cnnray.serve.batch` (Ray Data batch inference); MLflow not at all (the
registry side is `cnnray.tracking.model_store`).
"""

from cnnray.serve.card import CARD_FILE, WEIGHTS_FILE, InputContract, ModelCard, card_for_training
from cnnray.serve.classifier import ImageClassifier, Predictions, load_weights
from cnnray.serve.preprocess import to_model_input

__all__ = ["CARD_FILE", "WEIGHTS_FILE", "ImageClassifier", "InputContract", "ModelCard", "Predictions",
           "card_for_training", "load_weights", "to_model_input"]
