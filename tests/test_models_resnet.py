"""ResNet family against torchvision and the CBAM paper: sizes, outputs, FLOPs, shapes, initialization."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from cnnray.models import count_flops, count_params, create_model

PAPER_SE_CBAM_RESNET50 = 28.09e6  # CBAM paper (Woo et al. 2018), Table 3


def _meta(name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **kwargs)


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "resnet101"])
def test_param_count_equals_torchvision(name):
    with torch.device("meta"):
        reference = getattr(torchvision.models, name)()
    assert count_params(_meta(name)) == count_params(reference)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_torchvision_state_dict_gives_same_outputs(name):
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)().eval()
    model = create_model(name).eval()
    model.load_state_dict(reference.state_dict())  # strict: same keys and shapes
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))


@pytest.mark.parametrize("name", ["cbam_resnet50", "se_resnet50"])
def test_attention_resnet50_size_matches_paper(name):
    params = count_params(_meta(name))
    assert abs(params - PAPER_SE_CBAM_RESNET50) / PAPER_SE_CBAM_RESNET50 < 0.01, params


@pytest.mark.parametrize("stem", ["cifar", "imagenet"])
def test_output_shape_32px(stem):
    model = create_model("resnet18", num_classes=10, stem=stem).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_output_shape_224px_and_in_chans():
    model = create_model("resnet18", in_chans=1).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 224, 224)).shape == (1, 1000)


def test_flops_match_torchvision_macs():
    # torchvision's model cards: 1.814 and 4.089 GMACs ("GFLOPS") at 224; we count 2 FLOPs per MAC.
    assert count_flops(_meta("resnet18"), 224, 3) == pytest.approx(2 * 1.814e9, rel=0.01)
    assert count_flops(_meta("resnet50"), 224, 3) == pytest.approx(2 * 4.089e9, rel=0.01)


def test_flops_meta_equals_real_and_restores_mode():
    model = create_model("cbam_resnet18", stem="cifar", width=0.25, num_classes=10)
    assert model.training
    on_meta = _meta("cbam_resnet18", stem="cifar", width=0.25, num_classes=10)
    assert count_flops(model, 32, 3) == count_flops(on_meta, 32, 3)
    assert model.training
    with pytest.raises(ValueError, match="input_size: expected an integer >= 1"):
        count_flops(model, 0, 3)


def test_width_scales_channels():
    model = _meta("resnet50", width=0.25, stem="cifar")
    assert model.conv1.out_channels == 16
    assert model.layer4[-1].conv3.out_channels == 512 and model.num_features == 512
    assert _meta("resnet18", width=0.01).conv1.out_channels == 8  # floor of 8 channels


def test_initialization():
    torch.manual_seed(0)
    model = create_model("resnet50")
    conv = model.layer3[0].conv2  # 256 -> 256, 3x3: fan_out = 256 * 9
    assert conv.weight.std().item() == pytest.approx((2 / (256 * 9)) ** 0.5, rel=0.05)
    assert torch.all(model.layer2[1].bn3.weight == 1) and torch.all(model.layer2[1].bn3.bias == 0)
    assert model.fc.weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert torch.all(model.fc.bias == 0)


def test_zero_init_residual_makes_blocks_start_as_shortcut():
    model = create_model("resnet18", stem="cifar", width=0.25, zero_init_residual=True).eval()
    assert all(torch.all(b.bn2.weight == 0) for layer in (model.layer1, model.layer2, model.layer3, model.layer4)
               for b in layer)
    assert torch.all(create_model("resnet50", width=0.25, zero_init_residual=True).layer3[2].bn3.weight == 0)
    block = model.layer2[1]  # identity shortcut: the block starts as relu(x)
    x = torch.randn(2, block.conv1.in_channels, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x), torch.relu(x))
    assert torch.all(create_model("resnet18", width=0.25).layer1[0].bn2.weight == 1)  # off by default
