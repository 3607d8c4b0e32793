"""Model registry: names, option checking, None dropping, duplicates, and option validation."""

from __future__ import annotations

import pytest
from torch import nn

import cnnray.models.registry as registry
from cnnray.models import ResNet, create_model, list_models, model_options, register_model

EXPECTED = {"resnet18", "resnet34", "resnet50", "resnet101", "cbam_resnet18", "cbam_resnet34", "cbam_resnet50",
            "se_resnet18", "se_resnet50"}
TINY = {"stem": "cifar", "width": 0.125, "num_classes": 3}


def test_registered_names():
    assert EXPECTED <= set(list_models())
    assert list_models() == sorted(list_models())


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError, match="unknown model 'resnet7'.*resnet18.*se_resnet50"):
        create_model("resnet7")


def test_unknown_option_lists_valid_options():
    with pytest.raises(ValueError, match="unknown option.*depth.*'resnet18'.*num_classes.*drop_block_size"):
        create_model("resnet18", depth=3)


def test_none_options_mean_model_default():
    model = create_model("cbam_resnet18", **{**TINY, "attn": None, "num_classes": None, "act": None})
    assert model.fc.out_features == 1000
    assert type(model.layer1[0].attn).__name__ != "Identity"  # cbam default kept, not overridden by None
    assert type(create_model("resnet18", **TINY).layer1[0].attn) is nn.Identity
    assert model_options("se_resnet50")["attn"] == "se"


def test_register_model_and_duplicate(monkeypatch):
    monkeypatch.setattr(registry.MODELS, "_items", dict(registry.MODELS._items))  # forget additions afterwards

    @register_model("tiny_test_net")
    def tiny(num_classes: int = 2) -> nn.Module:
        return nn.Linear(4, num_classes)

    assert create_model("tiny_test_net", num_classes=5).out_features == 5
    with pytest.raises(ValueError, match="unknown option.*width.*valid options: num_classes"):
        create_model("tiny_test_net", width=2)
    with pytest.raises(ValueError, match="already registered"):
        register_model("resnet18", tiny)
    with pytest.raises(ValueError, match="already registered"):
        register_model("tiny_test_net")(tiny)


@pytest.mark.parametrize(("option", "value", "message"), [
    ("stem", "big", "stem: expected one of imagenet, cifar"),
    ("width", 0, "width: expected a number > 0"),
    ("width", float("inf"), "width: expected a number > 0"),
    ("num_classes", 0, "num_classes: expected an integer >= 1"),
    ("in_chans", 1.5, "in_chans: expected an integer >= 1"),
    ("drop_rate", 1.0, r"drop_rate: expected a number in \[0, 1\)"),
    ("drop_path_rate", -0.1, "drop_path_rate"),
    ("drop_block", 2, "drop_block: expected"),
    ("drop_block_size", 0, "drop_block_size: expected an integer >= 1"),
    ("zero_init_residual", "yes", "zero_init_residual: expected true or false"),
    ("act", "sigmoidish", "act: .*relu"),
    ("norm", "fancy", "norm: .*batch"),
    ("attn", "eca9", "attn: .*cbam"),
    ("pool", "median", "pool: .*max"),
    ("act", 3, "act: expected a layer name or a class"),
])
def test_bad_option_values_name_the_option(option, value, message):
    with pytest.raises(ValueError, match=message):
        create_model("resnet18", **{**TINY, option: value})


def test_layers_argument_checked():
    from cnnray.models import BasicBlock

    with pytest.raises(ValueError, match="layers: expected 4 block counts"):
        ResNet(BasicBlock, (2, 2, 2))
    with pytest.raises(ValueError, match="stride: expected 1 or 2"):
        BasicBlock(8, 8, stride=3)
