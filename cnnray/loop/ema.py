"""Exponential moving average of a model's weights, evaluated alongside the raw weights."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DDP (`.module`) and/or torch.compile (`._orig_mod`) wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel) or type(model).__name__ == "DataParallel":
            model = model.module
        else:
            return model


class ModelEma:
    """ema = decay * ema + (1 - decay) * param for float parameters; buffers (BN statistics) are copied.

    With `warmup=True` the decay used at update n is min(decay, (1 + n) / (10 + n)), so early
    updates follow the fast-moving weights instead of averaging in the random initialization.
    """

    def __init__(self, model: nn.Module, decay: float, warmup: bool = False) -> None:
        self.module = copy.deepcopy(unwrap(model)).eval()
        self.module.requires_grad_(False)
        self.decay, self.warmup = decay, warmup
        self.updates = 0

    def current_decay(self) -> float:
        """The decay the next update() will use."""
        if not self.warmup:
            return self.decay
        n = self.updates
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current weights into the average."""
        src = unwrap(model)
        d = self.current_decay()
        ema_p, src_p = [], []
        for e, p in zip(self.module.parameters(), src.parameters()):
            if e.is_floating_point():
                ema_p.append(e)
                src_p.append(p.detach())
            else:
                e.copy_(p)
        if ema_p:
            # lerp(ema, p, 1 - d) == d * ema + (1 - d) * p, in one fused kernel per dtype/device.
            torch._foreach_lerp_(ema_p, src_p, 1.0 - d)
        dst_b, src_b = list(self.module.buffers()), list(src.buffers())
        if dst_b:
            # One foreach call instead of a kernel launch per BN buffer (3 per norm layer).
            torch._foreach_copy_(dst_b, src_b)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        """The averaged weights plus the update counter."""
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Restore what state_dict() returned."""
        self.module.load_state_dict(sd["module"])
        self.updates = int(sd["updates"])
