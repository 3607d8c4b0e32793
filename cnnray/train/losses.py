"""Classification losses for hard labels and for mixup/cutmix soft targets."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SoftTargetCrossEntropy(nn.Module):
    """Cross entropy against a probability distribution per sample: mean_b sum_c -t[b,c] log p[b,c]."""

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Mean over the batch; computed in fp32 so bf16 logits do not lose the log-softmax tail."""
        return torch.sum(-target.float() * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()


def build_loss(label_smoothing: float = 0.0) -> Callable[[Tensor, Tensor], Tensor]:
    """Loss for int64 class targets (cross entropy with label smoothing) or float [B, C] soft targets."""
    soft = SoftTargetCrossEntropy()

    def loss_fn(logits: Tensor, target: Tensor) -> Tensor:
        if target.is_floating_point():
            # mixup/cutmix already folded smoothing into the soft targets; smoothing again would double it.
            return soft(logits, target)
        return F.cross_entropy(logits.float(), target, label_smoothing=label_smoothing)

    return loss_fn
