"""Each layer choice builds and trains; regularizers act in training only; pooling replaces strides."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnray.models import BasicBlock, Bottleneck, create_model

ACTS = ["relu", "leaky_relu", "elu", "silu", "swish", "mish", "gelu", "frelu", "prelu"]
NORMS = ["batch", "group", "layer", "layer_channels", "instance", "switchable"]
ATTNS = ["none", "se", "cbam", "channel", "spatial"]
POOLS = ["max", "avg", "mixed", "stochastic", "learnable", "attention"]
TINY = {"num_classes": 5, "stem": "cifar", "width": 0.125}


def _train_step(model: nn.Module, size: int = 16) -> torch.Tensor:
    torch.manual_seed(0)
    out = model.train()(torch.randn(2, 3, size, size))
    out.float().square().mean().backward()
    assert torch.isfinite(out).all()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    return out


@pytest.mark.parametrize("option,name", [("act", a) for a in ACTS] + [("norm", n) for n in NORMS]
                         + [("attn", a) for a in ATTNS])
def test_layer_choice_builds_and_trains(option, name):
    model = create_model("resnet18", **TINY, **{option: name})
    assert _train_step(model).shape == (2, 5)
    with torch.no_grad():
        assert torch.isfinite(model.eval()(torch.randn(1, 3, 16, 16))).all()


@pytest.mark.parametrize("norm", NORMS)
def test_every_act_after_every_norm_backprops(norm):
    # Activations run in place after norms and additions; autograd refuses any unsafe pairing.
    for act in ACTS:
        blocks = nn.Sequential(BasicBlock(8, 16, stride=2, act=act, norm=norm), BasicBlock(16, 16, act=act, norm=norm))
        x = torch.randn(2, 8, 8, 8, requires_grad=True)
        blocks(x).sum().backward()
        assert torch.isfinite(x.grad).all(), act


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("model_name", ["resnet18", "resnet50"])
def test_pool_replaces_every_stride(model_name, pool):
    model = create_model(model_name, **TINY, pool=pool)
    # With the cifar stem no block conv is strided; only a pooling layer (a learnable one is a conv) may be.
    strided = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.stride != (1, 1)
               and ".pool." not in n and ".downsample.0." not in n]
    assert strided == [], strided
    for layer in (model.layer2, model.layer3, model.layer4):
        assert not isinstance(layer[0].pool, nn.Identity)
        assert not isinstance(layer[0].downsample[0], nn.Conv2d)  # pooling, then the 1x1 conv
        assert isinstance(layer[0].downsample[1], nn.Conv2d)
    assert isinstance(model.layer1[0].pool, nn.Identity)
    assert _train_step(model).shape == (2, 5)


def test_default_downsampling_is_strided_conv():
    model = create_model("resnet50", **TINY)
    assert model.layer2[0].conv2.stride == (2, 2) and model.layer2[0].downsample[0].stride == (2, 2)
    assert model.layer1[0].downsample[0].stride == (1, 1)  # channel change only


def _train_and_eval_differences(**option) -> tuple[bool, bool]:
    torch.manual_seed(0)
    plain = create_model("resnet18", **TINY)
    regularized = create_model("resnet18", **TINY, **option)
    regularized.load_state_dict(plain.state_dict())
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        same_eval = torch.equal(plain.eval()(x), regularized.eval()(x))
        torch.manual_seed(1)
        differ_train = not torch.equal(plain.train()(x), regularized.train()(x))
    return same_eval, differ_train


@pytest.mark.parametrize("option", [{"drop_path_rate": 0.5}, {"drop_block": 0.3, "drop_block_size": 3},
                                    {"drop_rate": 0.5}])
def test_regularizers_change_training_outputs_only(option):
    assert _train_and_eval_differences(**option) == (True, True)


def test_regularizer_placement():
    model = create_model("resnet18", **TINY, drop_path_rate=0.3, drop_block=0.1, drop_block_size=5)
    blocks = [b for layer in (model.layer1, model.layer2, model.layer3, model.layer4) for b in layer]
    rates = [b.drop_path.drop_prob if not isinstance(b.drop_path, nn.Identity) else 0.0 for b in blocks]
    assert rates == pytest.approx([0.3 * i / 7 for i in range(8)])  # linear over the blocks, 0 first
    has_drop_block = [not isinstance(b.drop_block, nn.Identity) for b in blocks]
    assert has_drop_block == [False] * 4 + [True] * 4  # stages 3 and 4 only
    assert model.head_drop.p == 0.0


def test_layer_classes_accepted():
    block = Bottleneck(16, 4, stride=2, act=nn.SiLU, norm=nn.BatchNorm2d, pool=lambda channels: nn.AvgPool2d(2))
    assert isinstance(block.act1, nn.SiLU) and isinstance(block.bn3, nn.BatchNorm2d)
    assert block(torch.randn(2, 16, 8, 8)).shape == (2, 16, 4, 4)


def test_ddp_step_with_every_option(tmp_path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    try:
        model = DistributedDataParallel(create_model(
            "cbam_resnet18", **TINY, act="frelu", pool="mixed", drop_rate=0.1, drop_path_rate=0.2,
            drop_block=0.1, drop_block_size=3))
        for step in range(2):  # unused parameters would fail the second step
            model(torch.randn(2, 3, 16, 16)).sum().backward()
    finally:
        dist.destroy_process_group()
