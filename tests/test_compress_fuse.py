"""Conv-BN folding: the folded copy computes what the source computes, and the right modules are replaced."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from cnnray.compress import conv_bn_pairs, fuse_conv_bn
from cnnray.models import count_params, create_model

TOL = 1e-4  # max abs logit difference; folding only reorders float32 arithmetic (seen: ~1e-7)


def _trained_ish(name: str, **options) -> nn.Module:
    """A small model whose BNs have non-trivial affine parameters and running statistics, in train mode."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_chans=3, stem="cifar", width=0.125, **options)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
        model.fc.weight.normal_(0.0, 0.25)  # logits of order 5 (init: ~0.1), so TOL is a real bound
        for _ in range(3):  # shifted, scaled inputs move the running stats far from (0, 1)
            model(torch.randn(8, 3, 16, 16) * 2 + 0.5)
    return model


def _inputs() -> list[Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(4, 3, 16, 16, generator=g), torch.rand(4, 3, 16, 16, generator=g) * 3 - 1]


def _max_diff(a: nn.Module, b: nn.Module, x: Tensor) -> float:
    with torch.no_grad():
        return float((a(x) - b(x)).abs().max())


def _with_params(model: nn.Module) -> int:
    return sum(1 for m in model.modules() if next(m.parameters(recurse=False), None) is not None)


@pytest.mark.parametrize("name,pairs", [("resnet18", 20), ("cbam_resnet18", 20), ("resnet50", 53)])
def test_fused_model_equals_source(name, pairs):
    source = _trained_ish(name)
    result = fuse_conv_bn(source)
    source.eval()
    assert result.fused == pairs  # stem + two per BasicBlock / three per Bottleneck + shortcut convs
    for x in _inputs():
        assert _max_diff(source, result.model, x) < TOL
    assert not any(isinstance(m, nn.BatchNorm2d) for m in result.model.modules())
    assert count_params(result.model) < count_params(source)
    assert _with_params(result.model) < _with_params(source)
    assert type(result.model) is type(source) and not result.model.training


def test_bottleneck_pairs_follow_the_data_flow():
    """Bottleneck registers act1 and pool between bn1 and conv2: pairs come from the graph, not the order."""
    pairs = set(conv_bn_pairs(_trained_ish("resnet50", pool="avg").eval()))
    assert {("layer2.0.conv1", "layer2.0.bn1"), ("layer2.0.conv2", "layer2.0.bn2"),
            ("layer2.0.conv3", "layer2.0.bn3"), ("layer2.0.downsample.1", "layer2.0.downsample.2")} <= pairs
    assert all(c.rpartition(".")[0] == b.rpartition(".")[0] for c, b in pairs)  # same block


class _Misleading(nn.Module):
    """Registration order pairs conv_a with bn_b; the forward pass pairs conv_a with bn_a."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a, self.bn_b = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(5)
        self.conv_b, self.bn_a = nn.Conv2d(4, 5, 1), nn.BatchNorm2d(4)
        self.tap, self.bn_tap = nn.Conv2d(5, 5, 1), nn.BatchNorm2d(5)

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn_b(self.conv_b(torch.relu(self.bn_a(self.conv_a(x)))))
        t = self.tap(y)
        return self.bn_tap(t) + t  # tap has a second consumer: folding bn_tap into it would change `+ t`


def test_the_right_module_is_replaced():
    source = _Misleading()
    with torch.no_grad():
        source(torch.randn(8, 3, 8, 8) * 2 + 1)
    result = fuse_conv_bn(source)
    assert result.pairs == (("conv_a", "bn_a"), ("conv_b", "bn_b"))
    assert isinstance(result.model.bn_tap, nn.BatchNorm2d) and isinstance(result.model.bn_a, nn.Identity)
    assert _max_diff(source.eval(), result.model, torch.randn(2, 3, 8, 8)) < TOL


def test_source_is_not_modified():
    source = _trained_ish("resnet18")
    before = {k: v.clone() for k, v in source.state_dict().items()}
    fuse_conv_bn(source)
    assert source.training and isinstance(source.bn1, nn.BatchNorm2d)
    after = source.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("norm", ["group", "switchable"])
def test_other_norms_are_left_alone(norm):
    source = _trained_ish("resnet18", norm=norm).eval()
    result = fuse_conv_bn(source)
    assert result.fused == 0
    assert count_params(result.model) == count_params(source)
    assert [type(m) for m in result.model.modules()] == [type(m) for m in source.modules()]
    for x in _inputs():
        assert _max_diff(source, result.model, x) == 0.0
