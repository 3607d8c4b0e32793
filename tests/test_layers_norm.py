"""get_norm, LayerNorm2d and SwitchableNorm2d against PyTorch's own normalisers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnray.layers import NORMS, LayerNorm2d, SwitchableNorm2d, get_norm, group_norm_groups

DOMINATE = torch.tensor([-1e4, -1e4, -1e4])


def dominated(which: int, channels: int = 6) -> SwitchableNorm2d:
    """A SwitchableNorm2d whose mean and variance logits both select one of (IN, LN, BN)."""
    norm = SwitchableNorm2d(channels)
    logits = DOMINATE.clone()
    logits[which] = 1e4
    with torch.no_grad():
        norm.mean_logits.copy_(logits)
        norm.var_logits.copy_(logits)
    return norm


def test_mixing_weights_sum_to_one():
    norm = SwitchableNorm2d(4)
    with torch.no_grad():
        norm.mean_logits.copy_(torch.tensor([0.3, -2.0, 1.0]))
        norm.var_logits.copy_(torch.tensor([5.0, 0.0, -1.0]))
    w_mean, w_var = norm.mixing_weights()
    assert w_mean.sum().item() == pytest.approx(1.0) and w_var.sum().item() == pytest.approx(1.0)
    assert not torch.allclose(w_mean, w_var)  # separate softmaxes
    torch.testing.assert_close(SwitchableNorm2d(4).mixing_weights()[0], torch.full((3,), 1 / 3))


def test_reduces_to_batchnorm_train_and_eval():
    torch.manual_seed(0)
    norm, bn = dominated(2), nn.BatchNorm2d(6)
    for _ in range(3):
        x = torch.randn(4, 6, 5, 5) * 3 + 1
        torch.testing.assert_close(norm(x), bn(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(norm.running_mean, bn.running_mean)
    torch.testing.assert_close(norm.running_var, bn.running_var)
    norm.eval(), bn.eval()
    x = torch.randn(2, 6, 5, 5)
    torch.testing.assert_close(norm(x), bn(x), atol=1e-5, rtol=1e-5)


def test_reduces_to_instance_and_layer_norm():
    torch.manual_seed(1)
    x = torch.randn(3, 6, 4, 5) * 2 - 1
    torch.testing.assert_close(dominated(0)(x), F.instance_norm(x, eps=1e-5), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dominated(1)(x), F.layer_norm(x, x.shape[1:], eps=1e-5), atol=1e-5, rtol=1e-5)


def test_eval_uses_running_stats():
    torch.manual_seed(2)
    norm = SwitchableNorm2d(6)
    for _ in range(5):
        norm(torch.randn(8, 6, 4, 4) + 2)
    assert norm.running_mean.mean().item() > 0.5  # the running stats did move
    norm.eval()
    x = torch.randn(4, 6, 4, 4)
    # With running BN statistics every sample is normalised on its own: no batch coupling in eval.
    torch.testing.assert_close(norm(x)[:1], norm(x[:1]), atol=1e-5, rtol=1e-5)
    before = norm.running_mean.clone()
    norm(x)
    assert torch.equal(norm.running_mean, before)
    norm.train()
    assert not torch.allclose(norm(x)[:1], norm(x[:1]), atol=1e-3)  # batch statistics in training


def test_group_rule():
    assert [group_norm_groups(c) for c in (64, 48, 30, 7, 97, 256)] == [32, 24, 30, 7, 1, 32]
    assert get_norm("group", 48).num_groups == 24
    assert get_norm("group", 48, num_groups=4).num_groups == 4
    with pytest.raises(ValueError, match="num_groups"):
        get_norm("group", 48, num_groups=5)


def test_layer_norms_match_references():
    torch.manual_seed(3)
    x = torch.randn(2, 6, 4, 5)
    torch.testing.assert_close(get_norm("layer", 6)(x), F.layer_norm(x, (6, 4, 5)), atol=1e-5, rtol=1e-5)
    ln = LayerNorm2d(6)
    expected = F.layer_norm(x.permute(0, 2, 3, 1), (6,), eps=1e-6).permute(0, 3, 1, 2)
    torch.testing.assert_close(ln(x), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ln(x.contiguous(memory_format=torch.channels_last)), expected, atol=1e-5, rtol=1e-5)
    assert isinstance(get_norm("instance", 6), nn.InstanceNorm2d) and get_norm("instance", 6).affine


@pytest.mark.parametrize("name", NORMS.names())
def test_zero_weight_silences_every_norm(name):
    norm = get_norm(name, 8).train()
    nn.init.zeros_(norm.weight)
    out = norm(torch.randn(2, 8, 4, 4))
    assert torch.equal(out, torch.zeros_like(out))  # bias is zero at init


def test_bad_names_and_channels():
    with pytest.raises(ValueError, match="valid names: batch, group, instance, layer, layer_channels, switchable"):
        get_norm("batchnorm", 8)
    with pytest.raises(ValueError, match="channels"):
        get_norm("batch", 0)
