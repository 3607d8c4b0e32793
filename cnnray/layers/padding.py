"""'Same' padding for strided windows: out = ceil(size / stride), so odd sizes lose no row or column.

The padding a window needs is split like PyTorch's symmetric `padding=(k - 1) // 2` at the
top/left, with any remainder at the bottom/right. Hence k=3, s=2 matches nn.MaxPool2d(3, 2, 1) for
every size, and k=2, s=2 matches ceil_mode=True (odd sizes get one extra, partial window at the end).
Every window overlaps the input, so a pool that ignores padded cells never sees an empty window.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor


def same_pad_amounts(size: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """(before, after) padding for one spatial dim so that a strided window gives ceil(size / stride)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel_size - size, 0)
    before = min(total, (kernel_size - 1) // 2)
    return before, total - before


def pad_same(x: Tensor, kernel_size: int, stride: int, value: float = 0.0) -> Tensor:
    """`x` (..., H, W) padded with `value` for a 'same' strided window; unchanged when none is needed."""
    top, bottom = same_pad_amounts(x.shape[-2], kernel_size, stride)
    left, right = same_pad_amounts(x.shape[-1], kernel_size, stride)
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom), value=value)


def window_view(x: Tensor, kernel_size: int, stride: int) -> Tensor:
    """Windows of an already padded `x` (B, C, H, W) as (B, C, H_out, W_out, k*k), without a Python loop."""
    windows = x.unfold(2, kernel_size, stride).unfold(3, kernel_size, stride)
    return windows.flatten(-2)
