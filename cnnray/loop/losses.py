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


def distillation_loss(student: Tensor, teacher: Tensor, hard_loss: Tensor, temperature: float,
                      alpha: float) -> tuple[Tensor, Tensor]:
    """(alpha * KL(teacher_T || student_T) * T^2 + (1 - alpha) * hard_loss, the KL term) (Hinton et al. 2015).

    T^2 keeps the soft term's gradients on the scale of the hard term's as T grows (softened logits
    scale gradients by 1/T^2). KL is taken per sample ("batchmean"), in fp32, teacher as log-probabilities.
    """
    s = F.log_softmax(student.float() / temperature, dim=-1)
    t = F.log_softmax(teacher.float() / temperature, dim=-1)
    kl = F.kl_div(s, t, log_target=True, reduction="batchmean")
    return alpha * kl * temperature**2 + (1.0 - alpha) * hard_loss, kl.detach()
