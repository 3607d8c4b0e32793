"""Max and average pooling with 'same' padding (see padding.py) where padded cells never count."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_positive_int
from .padding import pad_same


class MaxPool2dSame(nn.Module):
    """Max pooling giving ceil(H / stride) x ceil(W / stride); padding is -inf so it never wins."""

    def __init__(self, kernel_size: int = 2, stride: int = 2) -> None:
        super().__init__()
        self.kernel_size = check_positive_int("kernel_size", kernel_size)
        self.stride = check_positive_int("stride", stride)

    def forward(self, x: Tensor) -> Tensor:
        x = pad_same(x, self.kernel_size, self.stride, value=float("-inf"))
        return F.max_pool2d(x, self.kernel_size, self.stride)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class AvgPool2dSame(nn.Module):
    """Average pooling giving ceil(H / stride) x ceil(W / stride); border windows average real cells only."""

    def __init__(self, kernel_size: int = 2, stride: int = 2) -> None:
        super().__init__()
        self.kernel_size = check_positive_int("kernel_size", kernel_size)
        self.stride = check_positive_int("stride", stride)

    def forward(self, x: Tensor) -> Tensor:
        k, s = self.kernel_size, self.stride
        padded = pad_same(x, k, s)
        out = F.avg_pool2d(padded, k, s)
        if padded is x:
            return out
        # Divide by the fraction of real cells per window (count_include_pad=False for asymmetric padding).
        ones = torch.ones((1, 1) + tuple(x.shape[-2:]), device=x.device, dtype=out.dtype)
        return out / F.avg_pool2d(pad_same(ones, k, s), k, s)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"
