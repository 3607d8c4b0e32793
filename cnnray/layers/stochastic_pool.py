"""Stochastic pooling (Zeiler & Fergus 2013, https://arxiv.org/abs/1301.3557): sample one activation per
window, in proportion to it."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._checks import check_positive_int
from ._memory_format import like_input_format
from .padding import pad_same, window_view


def stochastic_pool2d(x: Tensor, kernel_size: int = 2, stride: int = 2, training: bool = True) -> Tensor:
    """Stochastic pooling (Zeiler & Fergus 2013, https://arxiv.org/abs/1301.3557) of `x` (B, C, H, W) to
    ceil(H / stride) x ceil(W / stride) ('same' padding)."""
    kernel_size = check_positive_int("kernel_size", kernel_size)
    stride = check_positive_int("stride", stride)
    # Probabilities come from the relu'd activations; zero padding therefore is never picked,
    # and a window with no positive activation pools to 0 instead of dividing by zero.
    weights = window_view(pad_same(x.relu(), kernel_size, stride), kernel_size, stride)
    if training:
        # Exponential race (equivalent to Gumbel-max): argmax_i w_i / E_i with E_i ~ Exp(1) picks i with
        # probability w_i / sum(w). Zero weights never win; all-zero windows pick a 0.
        noise = torch.empty(weights.shape, device=x.device, dtype=torch.float32).exponential_()
        index = (weights.float() / noise.clamp_min(1e-30)).argmax(dim=-1, keepdim=True)
        out = weights.gather(-1, index).squeeze(-1)
    else:
        # Test time: the probability-weighted average sum(p_i * a_i) = sum(w^2) / sum(w).
        total = weights.sum(-1)
        out = (weights * weights).sum(-1) / total.clamp_min(torch.finfo(total.dtype).tiny)
    return like_input_format(out, x)


class StochasticPool2d(nn.Module):
    """Stochastic pooling (Zeiler & Fergus 2013, https://arxiv.org/abs/1301.3557): a sampled activation in
    training, the probability-weighted average in eval."""

    def __init__(self, kernel_size: int = 2, stride: int = 2) -> None:
        super().__init__()
        self.kernel_size = check_positive_int("kernel_size", kernel_size)
        self.stride = check_positive_int("stride", stride)

    def forward(self, x: Tensor) -> Tensor:
        return stochastic_pool2d(x, self.kernel_size, self.stride, self.training)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"
