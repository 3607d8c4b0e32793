"""FReLU, funnel activation (Ma et al. 2020, https://arxiv.org/abs/2007.11824): max(x, T(x)) with a spatial
condition T."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._checks import check_positive_int


class FReLU(nn.Module):
    """max(x, BN(depthwise 3x3 conv(x))): ReLU's fixed 0 replaced by a learned look at the neighbourhood.

    FReLU (Ma et al. 2020, https://arxiv.org/abs/2007.11824).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        channels = check_positive_int("channels", channels)
        # No conv bias: the BatchNorm right after it has its own.
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        funnel = self.bn(self.conv(x))
        # Under autocast the funnel may be bf16 while x is fp32; compare in a common dtype.
        return torch.maximum(x, funnel.to(x.dtype))
