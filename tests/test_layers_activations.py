"""Activations against their closed forms and PyTorch's own modules."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnray.layers import GELU, AdaptivePReLU, FReLU, Mish, Swish, get_act


def test_closed_forms():
    x = torch.linspace(-6, 6, 241)
    torch.testing.assert_close(Swish()(x), x * torch.sigmoid(x))
    torch.testing.assert_close(Swish(beta=2.0)(x), x / (1 + torch.exp(-2 * x)))
    torch.testing.assert_close(Mish()(x), x * torch.tanh(torch.log1p(torch.exp(x))))
    tanh_gelu = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    torch.testing.assert_close(GELU()(x), tanh_gelu)
    assert not torch.allclose(GELU()(x), F.gelu(x), atol=1e-5)  # really the approximation, not erf


def test_learnable_swish_trains_beta():
    act = Swish(beta=1.5, learnable=True)
    assert [n for n, _ in act.named_parameters()] == ["beta"]
    act(torch.randn(10)).sum().backward()
    assert act.beta.grad is not None and act.beta.grad != 0
    assert list(Swish().parameters()) == [] and "beta" in Swish().state_dict()


def test_adaptive_prelu_is_per_channel():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 4)
    act = AdaptivePReLU(3)
    torch.testing.assert_close(act(x), nn.PReLU(3, init=0.25)(x))
    with torch.no_grad():
        act.weight.copy_(torch.tensor([0.0, 0.5, -1.0]))
    slopes = torch.tensor([0.0, 0.5, -1.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(act(x), torch.where(x >= 0, x, slopes * x))


@pytest.mark.parametrize("training", [True, False])
def test_frelu_is_max_of_x_and_funnel(training):
    torch.manual_seed(1)
    act = FReLU(4).train(training)
    with torch.no_grad():
        act.conv.weight.normal_()
    x = torch.randn(2, 4, 6, 6)
    out = act(x)
    assert (out >= x).all()
    funnel = act.bn(act.conv(x))
    assert (out > x).any() and torch.allclose(out[out > x], funnel[out > x])


def test_get_act_names_and_channels():
    assert isinstance(get_act("silu"), nn.SiLU) and get_act("relu", inplace=True).inplace
    assert get_act("prelu", channels=5).weight.shape == (5,)
    for name in ("frelu", "prelu"):
        with pytest.raises(ValueError, match="channels"):
            get_act(name)
    with pytest.raises(ValueError, match="valid names: elu, frelu, gelu, leaky_relu, mish, prelu, relu, silu, swish"):
        get_act("tanh")
