"""Mixup and CutMix at batch level, returning soft targets (label smoothing included).

mixup: Zhang et al. 2017, https://arxiv.org/abs/1710.09412; CutMix: Yun et al. 2019, https://arxiv.org/abs/1905.04899;
label smoothing: Szegedy et al. 2015, https://arxiv.org/abs/1512.00567.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def smooth_one_hot(y: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """One-hot float targets with `smoothing` spread evenly over all classes; rows sum to 1.

    Label smoothing (Szegedy et al. 2015, https://arxiv.org/abs/1512.00567).
    """
    off = smoothing / num_classes
    return F.one_hot(y, num_classes).float() * (1.0 - smoothing) + off


class MixupCutmix:
    """Mix each batch with its reverse: mixup (blend) or cutmix (pasted box), lambda ~ Beta(alpha, alpha).

    With both alphas > 0 a batch gets one or the other with equal chance; `prob` is the chance a batch is
    mixed at all. Targets are lam * y + (1 - lam) * y_reversed, with lam the pasted area's complement for
    cutmix. Random draws come from the `generator` passed to __call__ (CPU) or the global RNG.

    mixup: Zhang et al. 2017, https://arxiv.org/abs/1710.09412; CutMix: Yun et al. 2019,
    https://arxiv.org/abs/1905.04899.
    """

    def __init__(self, mixup_alpha: float, cutmix_alpha: float, prob: float, num_classes: int,
                 label_smoothing: float = 0.0) -> None:
        self.mixup_alpha = float(mixup_alpha)
        self.cutmix_alpha = float(cutmix_alpha)
        self.prob = float(prob)
        self.num_classes = int(num_classes)
        self.label_smoothing = float(label_smoothing)

    @property
    def active(self) -> bool:
        """False when both alphas are 0 (the caller can skip mixing entirely)."""
        return (self.mixup_alpha > 0 or self.cutmix_alpha > 0) and self.prob > 0

    def _lam(self, alpha: float, g: torch.Generator | None) -> float:
        # torch's Beta sampler takes no generator; seed numpy from the torch stream to stay reproducible.
        seed = int(torch.randint(0, 2**62, (1,), generator=g))
        return float(np.random.default_rng(seed).beta(alpha, alpha))

    def __call__(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mixed images, soft targets [B, num_classes]) for a float batch x and int64 labels y."""
        target = smooth_one_hot(y, self.num_classes, self.label_smoothing)
        if not self.active or float(torch.rand(1, generator=generator)) >= self.prob:
            return x, target
        use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha <= 0 or float(torch.rand(1, generator=generator)) < 0.5)
        lam = self._lam(self.cutmix_alpha if use_cutmix else self.mixup_alpha, generator)
        if use_cutmix:
            x, lam = self._cutmix(x, lam, generator)
        else:
            x = x * lam + x.flip(0) * (1.0 - lam)
        return x, target * lam + target.flip(0) * (1.0 - lam)

    def _cutmix(self, x: torch.Tensor, lam: float, g: torch.Generator | None) -> tuple[torch.Tensor, float]:
        h, w = x.shape[-2:]
        cut = (1.0 - lam) ** 0.5
        ch, cw = int(h * cut), int(w * cut)
        cy = int(torch.randint(0, h, (1,), generator=g))
        cx = int(torch.randint(0, w, (1,), generator=g))
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        out = x.clone()
        out[..., y0:y1, x0:x1] = x.flip(0)[..., y0:y1, x0:x1]
        return out, 1.0 - (y1 - y0) * (x1 - x0) / (h * w)  # the box may be clipped: lam follows its real area
