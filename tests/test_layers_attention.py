"""SE, channel/spatial attention and CBAM, checked against hand-written forward passes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from cnnray.layers import CBAM, ChannelAttention, SpatialAttention, SqueezeExcite, conv2d_reference, get_attn


def mlp(x: torch.Tensor, fc1: nn.Conv2d, fc2: nn.Conv2d) -> torch.Tensor:
    """The 1x1-conv MLP on (B, C) vectors, written with matrices."""
    hidden = F.relu(x @ fc1.weight.flatten(1).t() + fc1.bias)
    return hidden @ fc2.weight.flatten(1).t() + fc2.bias


def test_channel_attention_matches_hand_computation():
    torch.manual_seed(0)
    x = torch.randn(2, 32, 5, 6)
    att = ChannelAttention(32, reduction=4)
    avg, mx = x.mean((2, 3)), x.flatten(2).max(-1).values
    gate = torch.sigmoid(mlp(avg, att.fc1, att.fc2) + mlp(mx, att.fc1, att.fc2))
    torch.testing.assert_close(att(x), x * gate[:, :, None, None])


def test_spatial_attention_matches_hand_computation():
    torch.manual_seed(1)
    x = torch.randn(2, 5, 8, 7)
    att = SpatialAttention(7)
    pooled = torch.stack([x.mean(1), x.max(1).values], dim=1)
    gate = torch.sigmoid(conv2d_reference(pooled, att.conv.weight, att.conv.bias, padding=3))
    torch.testing.assert_close(att(x), x * gate, atol=1e-5, rtol=1e-5)


def test_squeeze_excite_and_cbam():
    torch.manual_seed(2)
    x = torch.randn(2, 64, 5, 5)
    se = SqueezeExcite(64)
    gate = torch.sigmoid(mlp(x.mean((2, 3)), se.fc1, se.fc2))
    torch.testing.assert_close(se(x), x * gate[:, :, None, None])
    cbam = CBAM(64, reduction=8, spatial_kernel=3)
    torch.testing.assert_close(cbam(x), cbam.spatial(cbam.channel(x)))
    assert cbam.channel.fc1.out_channels == 8 and cbam.spatial.conv.kernel_size == (3, 3)


@pytest.mark.parametrize("name", ["none", "se", "cbam", "channel", "spatial", None])
def test_shapes_preserved(name):
    x = torch.randn(2, 16, 7, 9)
    assert get_attn(name, 16)(x).shape == x.shape
    assert isinstance(get_attn(None, 16), nn.Identity)


def test_hidden_width_rule():
    assert ChannelAttention(64).fc1.out_channels == 8  # 64 // 16 = 4, lifted to min_hidden=8
    assert ChannelAttention(256).fc1.out_channels == 16
    assert ChannelAttention(8, reduction=16, min_hidden=1).fc1.out_channels == 1
    with pytest.raises(ValueError, match="reduction=16 leaves no hidden units"):
        ChannelAttention(8, reduction=16, min_hidden=0)
    with pytest.raises(ValueError, match="reduction"):
        SqueezeExcite(8, reduction=0)
    with pytest.raises(ValueError, match="channels"):
        get_attn("se", 0)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        SpatialAttention(4)
    with pytest.raises(ValueError, match="valid names: cbam, channel, none, se, spatial"):
        get_attn("eca", 8)


def test_cbam_resnet50_parameter_budget():
    # CBAM after each of ResNet-50's bottlenecks (Woo et al. 2018, Table: 28.09M parameters).
    resnet50 = sum(p.numel() for p in torchvision.models.resnet50().parameters())
    widths = [256] * 3 + [512] * 4 + [1024] * 6 + [2048] * 3
    extra = sum(p.numel() for c in widths for p in CBAM(c).parameters())
    assert abs(resnet50 + extra - 28.09e6) / 28.09e6 < 0.01
