"""Mixed pooling: max and average pooling fused by a learned 1x1 conv over their concatenation."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._checks import check_positive_int
from .pool_same import AvgPool2dSame, MaxPool2dSame


class MixedPool2d(nn.Module):
    """1x1 conv over [max_pool(x), avg_pool(x)]; starts as their mean, 0.5 * (max + avg)."""

    def __init__(self, channels: int, kernel_size: int = 2, stride: int = 2) -> None:
        super().__init__()
        channels = check_positive_int("channels", channels)
        self.max_pool = MaxPool2dSame(kernel_size, stride)
        self.avg_pool = AvgPool2dSame(kernel_size, stride)
        self.fuse = nn.Conv2d(2 * channels, channels, 1)
        # Mean-of-both initialisation: each output channel starts from its own max and avg.
        with torch.no_grad():
            eye = torch.eye(channels).view(channels, channels, 1, 1)
            self.fuse.weight.copy_(0.5 * torch.cat([eye, eye], dim=1))
            self.fuse.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return self.fuse(torch.cat([self.max_pool(x), self.avg_pool(x)], dim=1))
