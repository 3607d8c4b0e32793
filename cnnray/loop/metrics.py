"""Validation metrics accumulated on the device and reduced across ranks once per evaluation."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from cnnray.scores import class_scores


class MetricAccumulator:
    """Confusion matrix (rows = true, cols = predicted), loss sum, top-1/top-5 counts and sample count."""

    def __init__(self, num_classes: int, device: torch.device | str = "cpu") -> None:
        self.num_classes = num_classes
        self.device = torch.device(device)
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=self.device)
        # Scalars stay on the device so update() never forces a host sync.
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.top1 = torch.zeros((), dtype=torch.int64, device=self.device)
        self.top5 = torch.zeros((), dtype=torch.int64, device=self.device)
        self.n = torch.zeros((), dtype=torch.int64, device=self.device)

    @torch.no_grad()
    def update(self, logits: Tensor, labels: Tensor, loss_sum: Tensor | float) -> None:
        """Add one batch: logits [B, C], int labels [B], and the batch's summed (not mean) loss."""
        c = self.num_classes
        labels = labels.to(self.device).long()
        pred = logits.argmax(dim=1)
        self.confusion += torch.bincount(labels * c + pred, minlength=c * c).view(c, c)
        topk = logits.topk(min(5, c), dim=1).indices
        self.top1 += (pred == labels).sum()
        self.top5 += (topk == labels[:, None]).any(dim=1).sum()
        self.loss_sum += torch.as_tensor(loss_sum, dtype=torch.float64, device=self.device)
        self.n += labels.numel()

    def all_reduce(self) -> None:
        """Sum the state over all ranks (one collective) when torch.distributed is initialized."""
        if not (dist.is_available() and dist.is_initialized()):
            return
        # float64 holds integer counts exactly up to 2**53, so one flat tensor carries everything.
        flat = torch.cat([self.confusion.flatten().double(), self.loss_sum[None],
                          torch.stack([self.top1, self.top5, self.n]).double()])
        dist.all_reduce(flat)
        c2 = self.num_classes**2
        self.confusion = flat[:c2].round().long().view_as(self.confusion)
        self.loss_sum = flat[c2]
        self.top1, self.top5, self.n = flat[c2 + 1 :].round().long().unbind()

    def compute(self, prefix: str = "val_") -> dict[str, Any]:
        """Loss, top-1/top-5 accuracy, macro and weighted precision/recall/F1, and the confusion matrix."""
        n = max(int(self.n), 1)
        scores = class_scores(self.confusion.cpu().numpy())  # macro over classes seen: see cnnray.scores
        out: dict[str, Any] = {
            f"{prefix}loss": float(self.loss_sum) / n,
            f"{prefix}acc": int(self.top1) / n,
            f"{prefix}top5": int(self.top5) / n,
        }
        for name in ("precision", "recall", "f1"):
            out[f"{prefix}{name}_macro"] = scores.macro[name]
            out[f"{prefix}{name}_weighted"] = scores.weighted[name]
        out["confusion_matrix"] = self.confusion.cpu().tolist()
        return out
