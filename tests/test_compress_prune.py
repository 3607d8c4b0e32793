"""Structured channel pruning: whole channels go (smaller model, same interface), the right ones go, the
pruned weights load into a rebuilt structure, and the residual stream and attention are left alone."""

from __future__ import annotations

import io
import json

import pytest
import torch
from torch import nn

from cnnray.compress.channel_slice import slice_channels
from cnnray.compress.prune import CRITERIA, prunable_chains, prune_channels, pruned_structure, sparsity
from cnnray.layers.activations import AdaptivePReLU
from cnnray.layers.attention_pool import AttentionPool2d
from cnnray.layers.frelu import FReLU
from cnnray.layers.learnable_pool import LearnablePool2d
from cnnray.layers.mixed_pool import MixedPool2d
from cnnray.layers.squeeze_excite import SqueezeExcite
from cnnray.models import count_flops, count_params, create_model

X = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def _model(name: str, **options) -> nn.Module:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_chans=3, stem="cifar", width=0.125, **options)
    with torch.no_grad():  # non-trivial norm state, so slicing the wrong channels would show
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                if m.affine:
                    m.weight.uniform_(0.5, 1.5)
                m.running_mean.uniform_(-0.5, 0.5)
    return model


def _state_bytes(model: nn.Module) -> int:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()


def _expected_params(source: nn.Module, channels: dict[str, int]) -> float:
    """Parameters after pruning if only conv weights shrank: each producer's filters and consumer's inputs."""
    scale = {name: 1.0 for name, _ in source.named_modules()}
    for chain in prunable_chains(source):
        frac = channels[chain.producer] / source.get_submodule(chain.producer).out_channels
        scale[chain.producer] *= frac
        scale[chain.consumer] *= frac  # a Bottleneck's conv2 is both: it shrinks on both sides
    return sum(p.numel() * (scale[m] if p_name == "weight" else 1.0)
               for m, mod in source.named_modules() for p_name, p in mod.named_parameters(recurse=False))


def _reloaded(name: str, options: dict, result) -> nn.Module:
    fresh = pruned_structure(create_model(name, num_classes=10, in_chans=3, stem="cifar", width=0.125, **options),
                             result.channels)
    fresh.load_state_dict(result.model.state_dict(), strict=True)
    return fresh.eval()


CASES = [("resnet18", {}), ("resnet18", {"act": "prelu"}), ("resnet18", {"act": "frelu"}),
         ("resnet18", {"norm": "group"}), ("resnet18", {"attn": "cbam"}), ("resnet50", {}),
         ("resnet50", {"act": "frelu", "attn": "cbam"}), ("resnet50", {"norm": "group", "pool": "mixed"})]


@pytest.mark.parametrize("name,options", CASES)
def test_pruned_model_is_smaller_runs_and_reloads(name, options):
    source = _model(name, **options)
    result = prune_channels(source, 0.5)
    out = result.model(X)
    assert out.shape == (2, 10) and torch.isfinite(out).all() and not result.model.training
    params, pruned_params = count_params(source), count_params(result.model)
    assert pruned_params < params
    assert abs(pruned_params - _expected_params(source, result.channels)) / params < 0.03
    assert 0.3 < count_flops(result.model, 16) / count_flops(source, 16) < 0.75
    assert _state_bytes(result.model) < 0.75 * _state_bytes(source)
    blocks = 8 if name == "resnet18" else 16
    assert len(result.channels) == blocks * (1 if name == "resnet18" else 2)
    assert result.removed == sum(source.get_submodule(n).out_channels - k for n, k in result.channels.items())
    with torch.no_grad():
        assert torch.equal(_reloaded(name, options, result)(X), result.model(X))


@pytest.mark.parametrize("options", [{"pool": "attention"}, {"pool": "learnable"}, {"norm": "instance"},
                                     {"norm": "switchable"}, {"norm": "layer"}, {"norm": "layer_channels"}])
def test_other_layers_between_the_convs(options):
    """Bottleneck's pool sits between conv1 and conv2; every norm sits after each pruned conv."""
    result = prune_channels(_model("resnet50", **options), 0.5)
    with torch.no_grad():
        assert torch.equal(_reloaded("resnet50", options, result)(X), result.model(X))


def test_residual_stream_and_attention_untouched():
    source = _model("resnet50", attn="cbam")
    result = prune_channels(source, 0.5, "bn_gamma")
    before, after = source.state_dict(), result.model.state_dict()
    assert before.keys() == after.keys()
    for key, value in before.items():
        if ".attn." in key or ".downsample." in key or ".bn3." in key or "layer" not in key:
            assert torch.equal(value, after[key]), key
    for name, m in result.model.named_modules():
        if name.endswith("conv3"):
            assert m.out_channels == source.get_submodule(name).out_channels
    assert result.channels["layer1.0.conv1"] == 4 and result.channels["layer1.0.conv2"] == 4


def test_source_untouched():
    source = _model("resnet18", act="prelu").train()
    before = {k: v.clone() for k, v in source.state_dict().items()}
    prune_channels(source, 0.5)
    assert source.training
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in before.items())


def test_l1_keeps_the_largest_filters():
    source = _model("resnet18")
    conv = source.layer1[0].conv1  # 8 filters, 4 kept
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([3.0, 0, 5, 1, 0, 4, 0, 2]).view(8, 1, 1, 1).expand_as(conv.weight))
    block = prune_channels(source, 0.5, "l1").model.layer1[0]
    keep = [0, 2, 5, 7]
    assert torch.equal(block.conv1.weight, conv.weight[keep])
    assert torch.equal(block.bn1.weight, source.layer1[0].bn1.weight[keep])
    assert torch.equal(block.bn1.running_mean, source.layer1[0].bn1.running_mean[keep])
    assert torch.equal(block.conv2.weight, source.layer1[0].conv2.weight[:, keep])


def test_bn_gamma_keeps_the_largest_scales():
    source = _model("resnet50")
    bn = source.layer1[0].bn2
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.1, -5, 0.2, 4, 3, 0.3, -2, 0.4]))
    block = prune_channels(source, 0.5, "bn_gamma").model.layer1[0]
    keep = [1, 3, 4, 6]
    assert torch.equal(block.bn2.weight, bn.weight[keep])
    assert torch.equal(block.conv3.weight, source.layer1[0].conv3.weight[:, keep])


def test_bn_gamma_needs_an_affine_norm():
    source = _model("resnet18", norm=lambda c: nn.BatchNorm2d(c, affine=False))
    with pytest.raises(ValueError, match="bn_gamma.*layer1.0.bn1"):
        prune_channels(source, 0.5, "bn_gamma")
    assert prune_channels(source, 0.5, "l1").model(X).shape == (2, 10)


def test_group_norm_keeps_whole_groups():
    options = {"norm": lambda c: nn.GroupNorm(4, c)}
    result = prune_channels(_model("resnet18", **options), 0.7)
    assert result.channels["layer1.0.conv1"] == 4 and all(k % 4 == 0 for k in result.channels.values())
    with torch.no_grad():
        assert torch.equal(_reloaded("resnet18", options, result)(X), result.model(X))
    fresh = create_model("resnet18", num_classes=10, stem="cifar", width=0.125, **options)
    with pytest.raises(ValueError, match="layer1.0.bn1: GroupNorm with 4 groups cannot hold 6"):
        pruned_structure(fresh, {"layer1.0.conv1": 6})


def test_min_channels():
    result = prune_channels(_model("resnet18"), 0.99, min_channels=3)
    assert set(result.channels.values()) == {3}


@pytest.mark.parametrize("module", [
    nn.BatchNorm2d(8), AdaptivePReLU(8), FReLU(8), LearnablePool2d(8), nn.InstanceNorm2d(8, affine=True),
    nn.GroupNorm(8, 8), nn.PReLU(8), nn.InstanceNorm2d(8), nn.GroupNorm(8, 8, affine=False), MixedPool2d(8),
    AttentionPool2d(8), SqueezeExcite(16)])
def test_slice_channels_equals_zeroing_the_removed_channels(module):
    """Per-channel modules ignore the removed channels; channel-mixing ones (MixedPool's 1x1 conv over
    [max, avg], SE's MLP) saw them as zeros. SE uses 16 channels: its hidden width is 8 (see limitations)."""
    torch.manual_seed(0)
    for p in module.parameters():
        nn.init.normal_(p)
    module.eval()
    counts = {a: getattr(module, a) for a in ("num_features", "num_channels", "num_parameters") if hasattr(module, a)}
    channels = 16 if isinstance(module, SqueezeExcite) else 8
    keep, x = torch.tensor([1, 2, 6]), torch.randn(2, channels, 6, 6)
    mask = torch.zeros(channels).index_fill(0, keep, 1.0).view(1, -1, 1, 1)
    with torch.no_grad():
        full = module(x * mask)[:, keep]
        slice_channels(module, keep, channels)
        assert torch.allclose(module(x[:, keep]), full, atol=1e-5)
    assert all(getattr(module, a) == 3 for a in counts)


class _Odd(nn.Module):
    def __init__(self, shape: tuple[int, ...], channels: int | None = None) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(shape))
        if channels is not None:
            self.channels = channels


@pytest.mark.parametrize("module,match", [(_Odd((2, 8)), r"odd: w of shape \(2, 8\)"),
                                          (_Odd((8,), channels=8), "odd: attribute channels=8"),
                                          (nn.Conv2d(8, 8, 3, groups=2), "grouped conv")])
def test_slice_channels_refuses_unknown_state(module, match):
    with pytest.raises(ValueError, match=match):
        slice_channels(module, torch.tensor([0, 1]), 8, "odd")


@pytest.mark.parametrize("kwargs,match", [
    ({"amount": 0.0}, "amount"), ({"amount": 1.0}, "amount"), ({"amount": -0.5}, "amount"),
    ({"amount": True}, "amount"), ({"amount": "0.5"}, "amount"),
    ({"amount": 0.5, "criterion": "l2"}, "l2.*l1, bn_gamma"), ({"amount": 0.5, "min_channels": 0}, "min_channels")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        prune_channels(_model("resnet18"), **kwargs)


def test_shared_stateful_module_refused():
    source = _model("resnet18")
    source.layer1[0].act1 = source.layer1[0].bn2  # one norm, called after conv1 and after conv2
    with pytest.raises(ValueError, match="layer1.0.act1: called 2 times"):
        prune_channels(source, 0.5)


def test_no_prunable_block():
    with pytest.raises(ValueError, match="no prunable block"):
        prune_channels(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 8, 3)), 0.5)


@pytest.mark.parametrize("channels,match", [({"layer1.0.conv3": 4}, "'layer1.0.conv3' is not a prunable conv"),
                                            ({"layer1.0.conv2": 4}, "'layer1.0.conv2' is not a prunable conv"),
                                            ({"layer1.0.conv1": 9}, "layer1.0.conv1: expected 1..8")])
def test_pruned_structure_refuses_unknown_convs(channels, match):
    with pytest.raises(ValueError, match=match):
        pruned_structure(create_model("resnet18", stem="cifar", width=0.125), channels)


def test_step_is_json():
    result = prune_channels(_model("resnet18"), 0.5)
    step = json.loads(json.dumps(result.step(0.5, "l1")))
    assert step == {"method": "prune", "amount": 0.5, "criterion": "l1", "channels": result.channels}
    assert CRITERIA == ("l1", "bn_gamma")


def test_sparsity_counts_zero_weights():
    model = nn.Sequential(nn.Conv2d(2, 2, 1), nn.Flatten(), nn.Linear(4, 4))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].weight[0].zero_()  # 2 of 4
        model[2].weight.fill_(1.0)
        model[2].weight[:, :3].zero_()  # 12 of 16
        model[0].bias.zero_()  # biases are not weights
    assert sparsity(model) == pytest.approx(14 / 20)
    assert sparsity(prune_channels(_model("resnet18"), 0.5).model) == 0.0
    with pytest.raises(ValueError, match="no conv or linear"):
        sparsity(nn.Sequential(nn.ReLU()))

