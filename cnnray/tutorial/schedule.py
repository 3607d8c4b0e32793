"""The tutorial's warmup + cosine learning-rate scheduler, stepped once per epoch, over cnnray's Schedule."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch.optim.lr_scheduler import LRScheduler

from cnnray.config import ScheduleSection
from cnnray.loop.schedules import Schedule


class WarmupCosineAnnealingLR(LRScheduler):
    """The tutorial's warmup is off by one (epoch 0 at lr 0, the peak a step late or early); here cnnray's closed
    form: epoch 0 at base / warmup_epochs, base at epoch warmup_epochs, eta_min at epoch max_epochs."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_epochs: int, max_epochs: int,
                 eta_min: float = 0.0, last_epoch: int = -1) -> None:
        if not 0 <= warmup_epochs < max_epochs:
            raise ValueError(f"warmup_epochs must be in [0, max_epochs={max_epochs}), got {warmup_epochs}")
        cfg = ScheduleSection(name="cosine", warmup_epochs=warmup_epochs, min_lr=eta_min,
                             warmup_start_factor=1.0 / max(1, warmup_epochs))
        # Schedule writes its lr into an optimizer's groups; each real group has its own base lr, so each gets a
        # Schedule over a one-group stand-in, and get_lr() reads the closed form from it.
        self.schedules = [
            Schedule(SimpleNamespace(param_groups=[{}]), cfg, base_lr=g.get("initial_lr", g["lr"]),
                     steps_per_epoch=1, epochs=max_epochs)
            for g in optimizer.param_groups
        ]
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        """Each group's lr at epoch `last_epoch`."""
        return [s.lr_at(max(0, self.last_epoch)) for s in self.schedules]
