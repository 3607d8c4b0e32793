"""cnnray: convolutional image classifiers trained with PyTorch DDP on Ray Train, tuned on Ray Tune, tracked in MLflow."""

__version__ = "0.1.0"
