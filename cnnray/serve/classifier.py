"""Compatibility: `ImageClassifier` moved to `cnnray.classifier.classifier`. Every registered version's MLflow
model code (`pyfunc_model.py`, copied into the model when it was logged) imports this path, so it stays."""

from cnnray.classifier.classifier import ImageClassifier, Predictions, file_sha256, load_weights

__all__ = ["ImageClassifier", "Predictions", "file_sha256", "load_weights"]
