"""Initial weights for `model.init_from`: reading files safely, torchvision's cache, and loading into a model that
differs (head, input channels, stem, attention, classes) — cnnray/models/weights_file.py, torchvision_weights.py,
adapt_weights.py, and the attention modules' near_identity_()."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from cnnray.errors import UserInputError
from cnnray.layers.cbam import CBAM, ChannelAttention, SpatialAttention
from cnnray.layers.squeeze_excite import SqueezeExcite
from cnnray.models import (
    WeightsError, create_model, guess_architecture, load_initial_weights, read_state_file, sha256_file,
    torchvision_classes, torchvision_state,
)

torch.manual_seed(0)


@pytest.fixture(scope="module")
def tv18() -> dict[str, torch.Tensor]:
    """torchvision's resnet18 weights (random init, but torchvision's own keys and shapes)."""
    torch.manual_seed(1)
    return torchvision.models.resnet18(weights=None).state_dict()


def _rgb18(**kw) -> torch.nn.Module:
    return create_model("resnet18", **{"num_classes": 1000, "in_chans": 3, "stem": "imagenet", "width": 1.0, **kw})


def _backbone_equal(model: torch.nn.Module, state: dict[str, torch.Tensor], skip: tuple[str, ...] = ("fc.",)) -> None:
    own = model.state_dict()
    for k, v in state.items():
        if k in own and not k.startswith(skip):
            assert torch.equal(own[k], v), k


class Custom:  # a pickled object: loading it needs this code
    def __init__(self) -> None:
        self.weights = torch.zeros(2)


# --- loading into a model ---------------------------------------------------------------------------------------

def test_torchvision_resnet18_loads_strictly_and_gives_the_same_logits(tv18):
    model = _rgb18().eval()
    report = load_initial_weights(model, tv18)
    assert report.loaded == len(tv18)
    assert report.head is None and report.input_conv is None and not report.skipped and not report.near_identity
    reference = torchvision.models.resnet18(weights=None)
    reference.load_state_dict(tv18)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), reference.eval()(x), atol=1e-5)


def test_head_replaced_for_other_class_count(tv18):
    model = _rgb18(num_classes=10)
    before = model.fc.weight.detach().clone()
    report = load_initial_weights(model, tv18)
    assert report.head == "replaced: 1000 -> 10 classes (new head from the data)"
    _backbone_equal(model, tv18)
    assert torch.equal(model.fc.weight, before)  # the model's own init, not a slice of the source


def test_grayscale_input_conv_sums_rgb_and_matches_identical_channels(tv18):
    grey = _rgb18(in_chans=1).eval()
    report = load_initial_weights(grey, tv18)
    assert report.input_conv == "conv1 adapted from 3 to 1 input channels (summed over RGB)"
    assert torch.allclose(grey.conv1.weight, tv18["conv1.weight"].sum(1, keepdim=True))
    _backbone_equal(grey, tv18, skip=("conv1.",))
    rgb = _rgb18().eval()
    load_initial_weights(rgb, tv18)
    x = torch.randn(2, 1, 48, 48)
    with torch.no_grad():
        assert torch.allclose(grey.forward_features(x), rgb.forward_features(x.repeat(1, 3, 1, 1)), atol=1e-4)


def test_five_channel_input_conv_repeats_and_scales(tv18):
    model = _rgb18(in_chans=5)
    report = load_initial_weights(model, tv18)
    assert "from 3 to 5" in report.input_conv and "3/5" in report.input_conv
    src = tv18["conv1.weight"]
    expected = torch.cat([src, src[:, :2]], dim=1) * (3 / 5)
    assert torch.allclose(model.conv1.weight, expected)
    assert not torch.allclose(model.conv1.weight[:, :3], src)  # scaled, not copied


def test_cbam_model_from_plain_weights_starts_near_identity(tv18):
    model = create_model("cbam_resnet18", num_classes=10, in_chans=3, stem="imagenet", width=1.0).eval()
    report = load_initial_weights(model, tv18)
    assert "layer1.0.attn" in report.near_identity and len(report.near_identity) == 8
    _backbone_equal(model, tv18)
    x = torch.randn(2, 64, 8, 8)
    attn = model.layer1[0].attn
    with torch.no_grad():
        assert torch.allclose(attn.channel.attention(x), torch.full((2, 64, 1, 1), 0.95), atol=1e-4)
        assert torch.allclose(attn.spatial.attention(x), torch.full((2, 1, 8, 8), 0.95), atol=1e-4)
        assert torch.allclose(attn(x), x * 0.95 ** 2, atol=1e-4)
    assert any("near identity" in line for line in report.lines())


def test_se_model_from_plain_weights_starts_near_identity(tv18):
    model = create_model("se_resnet18", num_classes=1000, in_chans=3, stem="imagenet", width=1.0)
    report = load_initial_weights(model, tv18)
    assert len(report.near_identity) == 8
    x = torch.randn(1, 128, 4, 4)
    with torch.no_grad():
        assert torch.allclose(model.layer2[1].attn(x), x * 0.95, atol=1e-4)


@pytest.mark.parametrize("module", [ChannelAttention(32), SpatialAttention(7), CBAM(32), SqueezeExcite(32)])
def test_near_identity_gate_is_095_and_still_learns(module):
    module.near_identity_()
    x = torch.randn(3, 32, 5, 5)
    gate = 0.95 ** 2 if isinstance(module, CBAM) else 0.95
    out = module(x)
    assert torch.allclose(out, x * gate, atol=1e-4)
    out.square().sum().backward()
    last = [p for n, p in module.named_parameters() if n.endswith("weight")][-1]
    assert last.grad is not None and last.grad.abs().sum() > 0  # the zeroed weight gets gradient
    assert math.isclose(math.log(0.95 / 0.05), 2.944, abs_tol=1e-3)


def test_stem_mismatch_names_model_stem_and_non_strict_skips_conv1(tv18):
    model = create_model("resnet18", num_classes=10, in_chans=3, stem="cifar", width=1.0)
    with pytest.raises(WeightsError, match="model.stem=imagenet") as e:
        load_initial_weights(model, tv18)
    assert "model.init_strict=false" in str(e.value)
    before = model.conv1.weight.detach().clone()
    report = load_initial_weights(model, tv18, strict=False)
    assert report.skipped == ["conv1.weight"]
    assert torch.equal(model.conv1.weight, before)
    _backbone_equal(model, tv18, skip=("fc.", "conv1."))


def test_resnet34_weights_into_resnet18_raise_with_the_guess():
    state = torchvision.models.resnet34(weights=None).state_dict()
    model = _rgb18()
    with pytest.raises(WeightsError) as e:
        load_initial_weights(model, state)
    msg = str(e.value)
    assert "The weights look like: resnet34 (BasicBlock 3-4-6-3" in msg
    assert "the model is: resnet18" in msg and "layer1.2.conv1.weight" in msg and "more)" in msg
    report = load_initial_weights(model, state, strict=False)
    assert "layer1.2.conv1.weight" in report.skipped and report.loaded > 100
    assert isinstance(e.value, UserInputError) and isinstance(e.value, ValueError)


def test_continual_superset_copies_known_class_rows_by_name():
    src_model = create_model("resnet18", num_classes=5, in_chans=1, stem="cifar", width=0.125)
    state = src_model.state_dict()
    target = create_model("resnet18", num_classes=10, in_chans=1, stem="cifar", width=0.125)
    new_classes = [str(i) for i in (9, 8, 7, 6, 5, 4, 3, 2, 1, 0)]  # another order: rows follow the names
    report = load_initial_weights(target, state, source_classes=[str(i) for i in range(5)],
                                  target_classes=new_classes)
    assert report.head == "kept 5 of 10 class rows, 5 new (matched by class name)"
    for j, name in enumerate(new_classes):
        i = int(name)
        same = torch.equal(target.fc.weight[j], state["fc.weight"][i]) if i < 5 else False
        assert same == (i < 5), name
        if i < 5:
            assert torch.equal(target.fc.bias[j], state["fc.bias"][i])
    for j in range(5):  # the new classes' rows are the model's init, not anything from the source
        assert not any(torch.equal(target.fc.weight[j], state["fc.weight"][i]) for i in range(5))


def test_class_lists_of_the_wrong_length_raise():
    state = create_model("resnet18", num_classes=5, in_chans=1, stem="cifar", width=0.125).state_dict()
    target = create_model("resnet18", num_classes=5, in_chans=1, stem="cifar", width=0.125)
    with pytest.raises(WeightsError, match="source_classes names 3 classes"):
        load_initial_weights(target, state, source_classes=["a", "b", "c"], target_classes=list("abcde"))


def test_wrapped_keys_other_dtype_and_no_batches_tracked_load():
    src = create_model("resnet18", num_classes=10, in_chans=1, stem="cifar", width=0.125)
    state = {f"module.{k}": v.double() for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    model = create_model("resnet18", num_classes=10, in_chans=1, stem="cifar", width=0.125)
    load_initial_weights(model, state)
    assert model.conv1.weight.dtype == torch.float32
    assert torch.equal(model.conv1.weight, src.conv1.weight)


def test_guess_architecture_of_other_things():
    assert guess_architecture({"a.weight": torch.zeros(1)}).startswith("not a ResNet: first keys a.weight")
    se = create_model("se_resnet50", num_classes=7, in_chans=1, stem="cifar", width=0.25).state_dict()
    assert guess_architecture(se) == ("se_resnet50 (Bottleneck 3-4-6-3, width 0.25, cifar 3x3 stem, 1 input channel, "
                                      "7 classes, se attention)")


# --- reading files --------------------------------------------------------------------------------------------

def _small_state() -> dict[str, torch.Tensor]:
    return {"conv1.weight": torch.randn(8, 1, 3, 3), "fc.bias": torch.randn(4)}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_read_pt_and_wrapped_pth_and_safetensors(tmp_path: Path):
    state = _small_state()
    torch.save(state, tmp_path / "w.pt")
    assert _same(read_state_file(tmp_path / "w.pt"), state)
    wrapped = {"state_dict": {f"module._orig_mod.{k}": v for k, v in state.items()}, "epoch": 3}
    torch.save(wrapped, tmp_path / "w.pth")
    assert _same(read_state_file(str(tmp_path / "w.pth")), state)
    torch.save({"model": state, "optimizer": {"lr": 0.1}}, tmp_path / "ckpt.bin")
    assert _same(read_state_file(tmp_path / "ckpt.bin"), state)
    save_file(state, str(tmp_path / "w.safetensors"))
    assert _same(read_state_file(tmp_path / "w.safetensors"), state)
    assert sha256_file(tmp_path / "w.pt") == hashlib.sha256((tmp_path / "w.pt").read_bytes()).hexdigest()


def test_read_refuses_a_pickled_object(tmp_path: Path):
    torch.save(Custom(), tmp_path / "obj.pt")
    with pytest.raises(WeightsError, match="needs Python code to unpickle") as e:
        read_state_file(tmp_path / "obj.pt")
    assert str(tmp_path / "obj.pt") in str(e.value) and "weights_only=True" in str(e.value)


@pytest.mark.parametrize("name, content, expected", [
    ("trunc.pt", "half", "truncated or corrupt"),
    ("empty.pt", b"", "truncated or corrupt"),
    ("bad.safetensors", b"not a safetensors file at all", "not a readable .safetensors"),
    ("list.pt", [torch.zeros(1)], "a list of 1 items"),
    ("tensor.pt", torch.zeros(2, 3), "a single tensor of shape (2, 3)"),
    ("mixed.pt", {"a": torch.zeros(1), "epoch": 3}, "'epoch' (int)"),
    ("nothing.pt", {}, "empty dict"),
])
def test_read_bad_files_name_the_problem_and_the_path(tmp_path: Path, name, content, expected):
    path = tmp_path / name
    if content == "half":
        torch.save(_small_state(), path)
        blob = path.read_bytes()
        path.write_bytes(blob[: len(blob) // 2])
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(WeightsError, match=expected.replace("(", r"\(").replace(")", r"\)")) as e:
        read_state_file(path)
    assert str(path) in str(e.value)


def test_read_missing_file(tmp_path: Path):
    with pytest.raises(WeightsError, match="no such file") as e:
        read_state_file(tmp_path / "absent.pt")
    assert "absent.pt" in str(e.value)


# --- torchvision's weights ------------------------------------------------------------------------------------

@pytest.fixture()
def hub_dir(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    # torch.hub.get_dir() reads $TORCH_HOME unless set_dir was called; the cache then is $TORCH_HOME/hub
    assert torch.hub.get_dir() == str(tmp_path / "hub")
    return tmp_path / "hub" / "checkpoints"


def test_torchvision_state_from_the_cache(hub_dir: Path, tv18):
    hub_dir.mkdir(parents=True)
    torch.save(tv18, hub_dir / "resnet18-f37072fd.pth")
    state = torchvision_state("ResNet18_Weights.IMAGENET1K_V1")
    assert _same(state, tv18)
    load_initial_weights(_rgb18(), state)
    classes = torchvision_classes("ResNet18_Weights.IMAGENET1K_V1")
    assert len(classes) == 1000 and classes[0] == "tench"


def test_torchvision_state_without_cache_or_network_names_the_path(hub_dir: Path, monkeypatch):
    def offline(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)  # deterministic: never touch the network
    with pytest.raises(WeightsError) as e:
        torchvision_state("ResNet50_Weights.IMAGENET1K_V2")
    msg = str(e.value)
    assert str(hub_dir / "resnet50-11ad3fa6.pth") in msg
    assert "https://download.pytorch.org/models/resnet50-11ad3fa6.pth" in msg and "no network" in msg


def test_torchvision_unknown_names_list_the_valid_ones():
    with pytest.raises(WeightsError, match="IMAGENET1K_V1"):
        torchvision_state("ResNet18_Weights.NOPE")
    with pytest.raises(WeightsError, match="ResNet50_Weights"):
        torchvision_state("Nope_Weights.IMAGENET1K_V1")
    with pytest.raises(WeightsError, match="ResNet34_Weights"):
        torchvision_classes("resnet18")
