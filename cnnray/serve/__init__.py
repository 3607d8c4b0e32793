"""Serving a registered version: resolve it, predict, evaluate, Ray Data batch inference. The classifier itself
(card, preprocessing, ImageClassifier) is `cnnray.classifier`; its names are re-exported here as before.

Ray is imported only by `cnnray.serve.batch` (Ray Data batch inference); MLflow not at all (the
registry side is `cnnray.tracking.model_store`).
"""

from cnnray.classifier.card import CARD_FILE, WEIGHTS_FILE, InputContract, ModelCard, card_for_training
from cnnray.classifier.classifier import ImageClassifier, Predictions, load_weights
from cnnray.classifier.preprocess import to_model_input

__all__ = ["CARD_FILE", "WEIGHTS_FILE", "ImageClassifier", "InputContract", "ModelCard", "Predictions",
           "card_for_training", "load_weights", "to_model_input"]
