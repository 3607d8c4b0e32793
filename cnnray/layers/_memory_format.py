"""Keep the caller's memory format on outputs that a reduction would otherwise return as NCHW."""

from __future__ import annotations

import torch
from torch import Tensor


def like_input_format(out: Tensor, x: Tensor) -> Tensor:
    """`out` in channels_last when `x` is, so the next conv need not convert it back."""
    # A (B, C, 1, 1) or C == 1 tensor is trivially both formats; only convert real NHWC inputs.
    if x.ndim == 4 and x.shape[1] > 1 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return out.contiguous(memory_format=torch.channels_last)
    return out
