"""Compatibility: the model card moved to `cnnray.classifier.card`. Every registered version's MLflow model
code (`pyfunc_model.py`, copied into the model when it was logged) imports this path, so it stays."""

from cnnray.classifier.card import (CARD_FILE, FORMAT, FORMAT_VERSION, WEIGHTS_FILE, InputContract, ModelCard,
                                    card_for_training)

__all__ = ["CARD_FILE", "FORMAT", "FORMAT_VERSION", "WEIGHTS_FILE", "InputContract", "ModelCard", "card_for_training"]
