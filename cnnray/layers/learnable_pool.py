"""Learnable pooling: a depthwise strided conv, one k x k filter per channel."""

from __future__ import annotations

from torch import Tensor, nn

from ._checks import check_positive_int
from .padding import pad_same


class LearnablePool2d(nn.Module):
    """Depthwise k x k stride-s conv with 'same' zero padding; starts as average pooling."""

    def __init__(self, channels: int, kernel_size: int = 2, stride: int = 2) -> None:
        super().__init__()
        channels = check_positive_int("channels", channels)
        self.kernel_size = check_positive_int("kernel_size", kernel_size)
        self.stride = check_positive_int("stride", stride)
        self.conv = nn.Conv2d(channels, channels, kernel_size, stride, groups=channels, bias=False)
        # Average-pool initialisation: a known-good downsampler to learn away from.
        nn.init.constant_(self.conv.weight, 1.0 / (kernel_size * kernel_size))

    def forward(self, x: Tensor) -> Tensor:
        # Zero padding here does count in border windows (it is a conv); 'same' keeps odd sizes whole.
        return self.conv(pad_same(x, self.kernel_size, self.stride))
