"""A trained network as a product: its model card (what rebuilds and feeds it), the preprocessing training
used, and `ImageClassifier` (weights + card -> class names and probabilities). Plain PyTorch: no MLflow, no Ray.
"""

from cnnray.classifier.card import CARD_FILE, WEIGHTS_FILE, InputContract, ModelCard, card_for_training
from cnnray.classifier.classifier import ImageClassifier, Predictions, load_weights
from cnnray.classifier.preprocess import to_model_input

__all__ = ["CARD_FILE", "WEIGHTS_FILE", "ImageClassifier", "InputContract", "ModelCard", "Predictions",
           "card_for_training", "load_weights", "to_model_input"]
