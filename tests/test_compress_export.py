"""TorchScript and ONNX exports load, keep a dynamic batch axis, and match the eager model's logits."""

from __future__ import annotations

import onnx
import pytest
import torch
from torch import nn

from cnnray.compress import ONNX_OPSET, check_parity, export_onnx, export_torchscript, fuse_conv_bn, run_onnx
from cnnray.models import create_model

TOL = 1e-4  # max abs logit difference; exports only reorder float32 arithmetic (seen: ~1e-7)


def _batch(n: int) -> torch.Tensor:
    return torch.randn(n, 1, 16, 16, generator=torch.Generator().manual_seed(n))


@pytest.fixture(scope="module")
def model() -> nn.Module:
    """A fused CBAM ResNet-18 with non-trivial BN statistics: what the compress step exports."""
    torch.manual_seed(0)
    source = create_model("cbam_resnet18", num_classes=10, in_chans=1, stem="cifar", width=0.125)
    with torch.no_grad():
        source.fc.weight.normal_(0.0, 0.25)  # logits of order 5 (init: ~0.1), so TOL is a real bound
        for _ in range(3):
            source(torch.randn(8, 1, 16, 16) * 2 + 0.5)
    return fuse_conv_bn(source).model


@pytest.fixture(scope="module")
def onnx_path(model, tmp_path_factory):
    """One ONNX export per module: the exporter takes seconds."""
    return export_onnx(model, _batch(2), tmp_path_factory.mktemp("onnx") / "model.onnx")


def _eager(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def test_torchscript_matches_eager_at_other_batch_sizes(model, tmp_path):
    path = export_torchscript(model, _batch(2), tmp_path / "model.pt")
    loaded = torch.jit.load(str(path))
    for n in (1, 5):
        parity = check_parity(_eager(model, _batch(n)), _eager(loaded, _batch(n)))
        assert parity["max_abs_diff"] < TOL and parity["top1_agreement"] == 1.0


def test_onnx_file_is_valid_with_dynamic_batch(onnx_path):
    proto = onnx.load(str(onnx_path))
    onnx.checker.check_model(proto)
    assert {o.domain: o.version for o in proto.opset_import}[""] == ONNX_OPSET
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.HasField("dim_value")


@pytest.mark.parametrize("n", [1, 7])
def test_onnxruntime_matches_eager(model, onnx_path, n):
    parity = check_parity(_eager(model, _batch(n)), run_onnx(onnx_path, _batch(n)))
    assert parity["max_abs_diff"] < TOL and parity["top1_agreement"] == 1.0 and parity["n"] == n


def test_export_leaves_a_train_mode_source_alone(tmp_path):
    source = create_model("resnet18", num_classes=3, in_chans=1, stem="cifar", width=0.125, drop_path_rate=0.5)
    export_torchscript(source, _batch(2), tmp_path / "m.pt")
    assert source.training
    loaded = torch.jit.load(str(tmp_path / "m.pt"))
    assert torch.equal(_eager(loaded, _batch(4)), _eager(loaded, _batch(4)))  # eval mode: no random drops


def test_check_parity():
    parity = check_parity(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), [[1.0, 0.5], [1.0, 0.0]])
    assert parity == {"max_abs_diff": 1.0, "top1_agreement": 0.5, "n": 2}
    with pytest.raises(ValueError, match="shape"):
        check_parity(torch.zeros(2, 3), torch.zeros(3, 3))
