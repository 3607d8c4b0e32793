"""The tutorial's normalization switch and its regularizers, over cnnray's layers."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from cnnray.layers import DropBlock2d, DropPath, get_norm


class AdvancedNormalization(nn.Module):
    """Tutorial pitfall: layer norm over a fixed (C, H, W) and switchable norm without running statistics, so
    eval depends on the batch; here cnnray's get_norm ('batch', 'group', 'layer', 'instance', 'switchable', ...)."""

    def __init__(self, num_features: int, norm_type: str = "batch", **kwargs: Any) -> None:
        super().__init__()
        self.norm_type = norm_type
        self.norm = get_norm(norm_type, num_features, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x)


class DropBlock2D(DropBlock2d):
    """The tutorial's mask ignores the border where no block fits and rescales by 1 - p (or runs in eval); here
    cnnray's DropBlock: gamma corrected for the valid seed area, rescaled by the kept fraction, identity in eval."""

    def __init__(self, drop_rate: float = 0.1, block_size: int = 7) -> None:
        super().__init__(drop_rate, block_size)


class StochasticDepth(DropPath):
    """The tutorial's version also drops in eval or leaves survivors unscaled; here cnnray's DropPath: one draw per
    sample, survivors scaled by 1 / (1 - p) so the expectation is kept, identity in eval."""

    def __init__(self, drop_prob: float = 0.1) -> None:
        super().__init__(drop_prob)
