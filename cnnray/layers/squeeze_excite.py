"""Squeeze-and-Excitation (Hu et al. 2018, https://arxiv.org/abs/1709.01507): the channel-gating baseline CBAM
is compared with."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._hidden import reduced_channels
from .cbam import NEAR_IDENTITY_GATE, gate_logit


class SqueezeExcite(nn.Module):
    """Squeeze-and-Excitation (Hu et al. 2018, https://arxiv.org/abs/1709.01507): gate channels by
    sigmoid(MLP(avg_pool(x))); hidden width max(channels // reduction, min_hidden)."""

    def __init__(self, channels: int, reduction: int = 16, min_hidden: int = 8) -> None:
        super().__init__()
        hidden = reduced_channels(channels, reduction, min_hidden)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def attention(self, x: Tensor) -> Tensor:
        """The (B, C, 1, 1) channel gate in (0, 1)."""
        return torch.sigmoid(self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True)))))

    @torch.no_grad()
    def near_identity_(self, gate: float = NEAR_IDENTITY_GATE) -> SqueezeExcite:
        """Start the gate at the constant `gate`, in place (returns self). Why: random sigmoid gates start near 0.5
        and halve every residual branch of pretrained weights loaded without attention; near 1 each block starts
        as (almost) the pretrained one, and the zeroed weight still gets gradient, so attention is learned."""
        self.fc2.weight.zero_()
        self.fc2.bias.fill_(gate_logit(gate))
        return self

    def forward(self, x: Tensor) -> Tensor:
        return x * self.attention(x).to(x.dtype)
