"""CBAM (Woo et al. 2018, https://arxiv.org/abs/1807.06521): channel attention, then spatial attention,
refining a feature map.

forward() returns the refined map; attention() returns the gate itself, for plotting attention maps.

Max pooling goes through ops that return indices (`adaptive_max_pool2d`, `max(dim)`), not `amax`:
amax's backward finds the maximum again by comparing the input with the result and divides by the
count of ties — several full-size passes in eager mode, and under torch.compile with bf16 the
recomputed input can differ from the stored maximum in its last bits, so the count is 0 and the
gradient 0/0 = NaN (seen on an H200, torch 2.11). The index form scatters the gradient to the argmax.

near_identity_() (on each module) starts a gate at a constant ~0.95, for loading weights of a network without
attention (`cnnray.models.load_initial_weights`): randomly initialized sigmoid gates start near 0.5 and halve
every residual branch (twice with CBAM), distorting the pretrained features; a gate near 1 makes each block
start as (almost) the pretrained block. Only the last conv's weight is zeroed (its bias sets the gate), so it
still gets gradient, as zero-initialized residual branches do, and attention is learned from there.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_positive_int
from ._hidden import reduced_channels
from .create_act import get_act

NEAR_IDENTITY_GATE = 0.95


def gate_logit(gate: float) -> float:
    """The pre-sigmoid value whose sigmoid is `gate` (in (0, 1)): logit(0.95) ~= 2.94."""
    if not 0.0 < gate < 1.0:
        raise ValueError(f"gate: expected a value in (0, 1), got {gate!r}")
    return math.log(gate / (1.0 - gate))


class ChannelAttention(nn.Module):
    """CBAM's channel attention (Woo et al. 2018, https://arxiv.org/abs/1807.06521): gate channels by
    sigmoid(MLP(avg_pool(x)) + MLP(max_pool(x))), one MLP (1x1 convs) shared by both."""

    def __init__(self, channels: int, reduction: int = 16, min_hidden: int = 8, act: str = "relu") -> None:
        super().__init__()
        hidden = reduced_channels(channels, reduction, min_hidden)
        # 1x1 convs on (B, C, 1, 1) rather than Linear: no flatten/reshape, and channels_last friendly.
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = get_act(act, channels=hidden)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def _mlp(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))

    def attention(self, x: Tensor) -> Tensor:
        """The (B, C, 1, 1) channel gate in (0, 1)."""
        # Average pooling sees the extent of a feature, max pooling its most salient cue.
        avg = F.adaptive_avg_pool2d(x, 1)
        mx = F.adaptive_max_pool2d(x, 1)
        # One MLP call over both descriptors stacked on the batch axis: half the launches, and a graph where
        # each conv is called once, which PT2E's x86 quantizer needs to annotate them (`cnnray compress`).
        both = self._mlp(torch.cat([avg, mx], dim=0))
        return torch.sigmoid(both[: x.shape[0]] + both[x.shape[0]:])

    @torch.no_grad()
    def near_identity_(self, gate: float = NEAR_IDENTITY_GATE) -> ChannelAttention:
        """Start the gate at the constant `gate` (why: the module doc); in place, returns self."""
        self.fc2.weight.zero_()
        # The gate is sigmoid(MLP(avg) + MLP(max)): with fc2's weight zero each MLP output is fc2's bias,
        # counted twice, so the bias is half the logit.
        self.fc2.bias.fill_(gate_logit(gate) / 2)
        return self

    def forward(self, x: Tensor) -> Tensor:
        return x * self.attention(x).to(x.dtype)


class SpatialAttention(nn.Module):
    """CBAM's spatial attention (Woo et al. 2018, https://arxiv.org/abs/1807.06521): gate positions by
    sigmoid(k x k conv([mean over C, max over C]))."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        kernel_size = check_positive_int("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (so the map keeps its size), got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def attention(self, x: Tensor) -> Tensor:
        """The (B, 1, H, W) spatial gate in (0, 1)."""
        pooled = torch.cat([x.mean(1, keepdim=True), x.max(1, keepdim=True).values], dim=1)
        return torch.sigmoid(self.conv(pooled))

    @torch.no_grad()
    def near_identity_(self, gate: float = NEAR_IDENTITY_GATE) -> SpatialAttention:
        """Start the gate at the constant `gate` (why: the module doc); in place, returns self."""
        self.conv.weight.zero_()
        self.conv.bias.fill_(gate_logit(gate))
        return self

    def forward(self, x: Tensor) -> Tensor:
        return x * self.attention(x).to(x.dtype)


class CBAM(nn.Module):
    """CBAM (Woo et al. 2018, https://arxiv.org/abs/1807.06521): channel attention followed by spatial attention
    (the order the paper found best)."""

    def __init__(
        self, channels: int, reduction: int = 16, spatial_kernel: int = 7, min_hidden: int = 8, act: str = "relu"
    ) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction, min_hidden=min_hidden, act=act)
        self.spatial = SpatialAttention(spatial_kernel)

    def near_identity_(self, gate: float = NEAR_IDENTITY_GATE) -> CBAM:
        """Start both gates at the constant `gate` (why: the module doc), so the map is scaled by about gate**2;
        in place, returns self."""
        self.channel.near_identity_(gate)
        self.spatial.near_identity_(gate)
        return self

    def forward(self, x: Tensor) -> Tensor:
        return self.spatial(self.channel(x))
