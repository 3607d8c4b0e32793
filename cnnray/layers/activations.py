"""Smooth and parametric activations: Swish, Mish, GELU (tanh), and a per-channel PReLU."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_positive_int


class Swish(nn.Module):
    """x * sigmoid(beta * x) (Ramachandran et al. 2017, https://arxiv.org/abs/1710.05941); beta = 1 is SiLU,
    `learnable` trains beta."""

    def __init__(self, beta: float = 1.0, learnable: bool = False) -> None:
        super().__init__()
        if learnable:
            self.beta = nn.Parameter(torch.tensor(float(beta)))
        else:
            # A buffer (not a float) so it follows .to(device) and is saved with the state dict.
            self.register_buffer("beta", torch.tensor(float(beta)))

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(self.beta.to(x.dtype) * x)


class Mish(nn.Module):
    """x * tanh(softplus(x)) (Misra 2019, https://arxiv.org/abs/1908.08681)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.mish(x)


class GELU(nn.Module):
    """GELU with the tanh approximation (Hendrycks & Gimpel 2016, https://arxiv.org/abs/1606.08415), as in
    BERT/GPT-2."""

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x, approximate="tanh")


class AdaptivePReLU(nn.Module):
    """PReLU (He et al. 2015, https://arxiv.org/abs/1502.01852) with one learned negative slope per channel of a
    (B, C, ...) input."""

    def __init__(self, channels: int, init: float = 0.25) -> None:
        super().__init__()
        channels = check_positive_int("channels", channels)
        self.weight = nn.Parameter(torch.full((channels,), float(init)))

    def forward(self, x: Tensor) -> Tensor:
        # Written out rather than F.prelu so bf16 activations with an fp32 slope stay bf16.
        slope = self.weight.to(x.dtype).view((1, -1) + (1,) * (x.ndim - 2))
        return torch.where(x >= 0, x, x * slope)
