"""The tutorial's end-to-end image classification pipeline on cnnray's data, models and training loop."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cnnray.data import MemoryLoader, build_transforms, describe_dataset, load_arrays
from cnnray.data.convert import resize_uint8, to_channels
from cnnray.models.from_config import build_model
from cnnray.tutorial.trainer import AdaptiveTrainer, tutorial_config


class ImageClassificationPipeline:
    """Tutorial pitfall: predicting one image with other preprocessing than training (and the model in train
    mode), data fetched online; here the built-in digits, one eval transform for evaluation and prediction."""

    def __init__(self, num_classes: int = 10, input_size: int = 32, overrides: list[str] | None = None) -> None:
        self.num_classes, self.input_size = num_classes, input_size
        self.cfg = tutorial_config([f"data.image_size={input_size}", f"model.num_classes={num_classes}",
                                    *(overrides or [])])
        self.model: nn.Module | None = None
        self.trainer: AdaptiveTrainer | None = None

    def prepare_data(self, batch_size: int = 32, limit: int | None = None) -> tuple[MemoryLoader, MemoryLoader]:
        """Train and validation loaders over the digits scikit-learn ships (no download); `limit` caps each split."""
        info = describe_dataset(self.cfg.data)
        if info.num_classes != self.num_classes:
            raise ValueError(f"num_classes={self.num_classes}, but the data has {info.num_classes} classes")
        tx, ty, vx, vy = load_arrays(self.cfg.data)
        if limit is not None:
            tx, ty, vx, vy = tx[:limit], ty[:limit], vx[:limit], vy[:limit]
        self.train_tf, self.eval_tf = build_transforms(self.cfg.data, info)
        self.channels = info.channels
        seed = self.cfg.train.seed
        self.train_loader = MemoryLoader(tx, ty, batch_size, seed=seed, transform=self.train_tf)
        self.val_loader = MemoryLoader(vx, vy, batch_size, seed=seed, shuffle=False, drop_last=False,
                                       transform=self.eval_tf)
        return self.train_loader, self.val_loader

    def train_model(self, epochs: int = 1) -> list[dict[str, Any]]:
        """Build the configured model (cbam_resnet18 by default) and train it with AdaptiveTrainer."""
        if not hasattr(self, "train_loader"):
            self.prepare_data()
        torch.manual_seed(self.cfg.train.seed)
        self.model = build_model(self.cfg, self.num_classes, self.channels)
        self.trainer = AdaptiveTrainer(self.model, self.train_loader, self.val_loader, cfg=self.cfg,
                                       num_classes=self.num_classes)
        return self.trainer.train(epochs)

    def evaluate_model(self) -> dict[str, Any]:
        """Accuracy, loss and macro F1 on the validation split."""
        if self.trainer is None:
            raise RuntimeError("evaluate_model() needs train_model() first")
        return self.trainer.validate()

    @torch.no_grad()
    def predict_single_image(self, image: Any) -> tuple[int, Tensor]:
        """(class, probabilities) of one uint8 (H, W) or (C, H, W) image, preprocessed as the validation data."""
        if self.model is None:
            raise RuntimeError("predict_single_image() needs train_model() first")
        x = torch.as_tensor(np.asarray(image))
        if x.dtype != torch.uint8 or x.ndim not in (2, 3):
            raise ValueError(f"image: expected a uint8 (H, W) or (C, H, W) array, got {x.dtype} {tuple(x.shape)}")
        x = x.reshape(1, -1, *x.shape[-2:]) if x.ndim == 3 else x[None, None]
        x = self.eval_tf(to_channels(resize_uint8(x, self.input_size), self.channels))
        param = next(self.model.parameters())
        was_training = self.model.training
        self.model.eval()  # dropout, DropBlock and BN batch statistics off, as in evaluation
        probs = torch.softmax(self.model(x.to(param.device)).float(), dim=1)[0].cpu()
        self.model.train(was_training)
        return int(probs.argmax()), probs
