"""Attention pooling: a softmax-weighted average within each window, weights from a 1x1 conv logit."""

from __future__ import annotations

from torch import Tensor, nn

from ._checks import check_positive_int
from ._memory_format import like_input_format
from .padding import pad_same, window_view


class AttentionPool2d(nn.Module):
    """Pool each window by softmax(logits) weights, per channel; logits = 1x1 conv of the input."""

    def __init__(self, channels: int, kernel_size: int = 2, stride: int = 2) -> None:
        super().__init__()
        channels = check_positive_int("channels", channels)
        self.kernel_size = check_positive_int("kernel_size", kernel_size)
        self.stride = check_positive_int("stride", stride)
        self.logit = nn.Conv2d(channels, channels, 1)
        # Zero logits make it start as average pooling; training then learns where to look.
        nn.init.zeros_(self.logit.weight)
        nn.init.zeros_(self.logit.bias)

    def forward(self, x: Tensor) -> Tensor:
        k, s = self.kernel_size, self.stride
        logits = window_view(pad_same(self.logit(x), k, s, value=float("-inf")), k, s)
        values = window_view(pad_same(x, k, s), k, s)
        # Padded cells get -inf logits, i.e. zero weight; every window holds a real cell (padding.py).
        out = (logits.softmax(dim=-1) * values).sum(-1)
        return like_input_format(out, x)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"
