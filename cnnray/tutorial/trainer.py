"""The tutorial's training loop with its adaptive parts, as cnnray's Engine under the tutorial's recipe."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from cnnray.config import Config, load_config
from cnnray.loop.engine import Engine

Batch = tuple[Tensor, Tensor]


def tutorial_config(overrides: list[str] | None = None) -> Config:
    """The tutorial's recipe (`--config tutorial`), in fp32 unless overridden: the same numbers on any CPU."""
    return load_config("tutorial", ["train.precision=fp32", *(overrides or [])])


def num_classes_of(model: nn.Module) -> int:
    """The output width of the last nn.Linear in `model` (its classifier head)."""
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not last:
        raise ValueError("num_classes: the model has no nn.Linear head to read it from; pass num_classes")
    return last[-1].out_features


class AdaptiveTrainer:
    """Tutorial pitfall: 'best' weights kept as model.state_dict() (references later steps overwrite) and AMP
    scaling on CPU; here cnnray's Engine (warmup-cosine, clipping, plateau-safe early stop) and a copied best."""

    def __init__(self, model: nn.Module, train_loader: Iterable[Batch], val_loader: Iterable[Batch],
                 device: torch.device | str = "cpu", *, cfg: Config | None = None,
                 num_classes: int | None = None) -> None:
        self.model, self.train_loader, self.val_loader = model, train_loader, val_loader
        self.device = torch.device(device)
        self.cfg = cfg if cfg is not None else tutorial_config()
        self.num_classes = num_classes if num_classes is not None else num_classes_of(model)
        self.engine: Engine | None = None
        self.history: list[dict[str, Any]] = []

    def train(self, epochs: int | None = None) -> list[dict[str, Any]]:
        """Train for `epochs` (default: the recipe's), validating each epoch; the best weights end in the model."""
        cfg = self.cfg
        if epochs is not None:
            cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": int(epochs)})})
        # The schedule is a closed form over the whole run, so the Engine is built once the epoch count is known.
        self.engine = engine = Engine(self.model, cfg, steps_per_epoch=len(self.train_loader),  # type: ignore[arg-type]
                                      num_classes=self.num_classes, device=self.device)
        best: dict[str, Tensor] | None = None
        for epoch in range(cfg.train.epochs):
            for loader in (self.train_loader, self.val_loader):
                if hasattr(loader, "set_epoch"):
                    loader.set_epoch(epoch)
            row = {**engine.train_epoch(self.train_loader), **engine.validate_and_select(lambda: self.val_loader)}
            if row["is_best"]:
                best = engine.weights_state(row["weights"])  # a snapshot, not live references
            self.history.append(row)
            if row["should_stop"]:
                break
        if best is not None:
            engine.module.load_state_dict(best)
        return self.history

    def validate(self) -> dict[str, Any]:
        """Loss, accuracy and F1 of the current weights on the validation loader."""
        if self.engine is None:
            raise RuntimeError("validate() needs train() first: the Engine is built by train()")
        return self.engine.evaluate(self.val_loader)
