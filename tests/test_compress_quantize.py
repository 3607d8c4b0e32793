"""PT2E int8 quantization (cnnray.compress.quantize) and onnxruntime int8 (cnnray.compress.onnx_int8)."""

from __future__ import annotations

import io
import json

import pytest
import torch
from torch import nn

from cnnray.compress import quantize as quantize_module
from cnnray.compress.export import check_parity, export_onnx, run_onnx
from cnnray.compress.measure import model_size
from cnnray.compress.onnx_int8 import quantize_onnx
from cnnray.compress.quantize import (compiled, finish_quantized, int8_size, quantize_pt2e, quantized_structure)
from cnnray.models import create_model

SHAPE = (1, 16, 16)


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = create_model("cbam_resnet18", num_classes=10, in_chans=1, stem="cifar", width=0.125)
    model.train()
    with torch.no_grad():  # non-trivial BN statistics, so folding them into the convs matters
        for _ in range(3):
            model(torch.randn(16, *SHAPE) * 2 + 0.5)
    return model.eval()


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return _model(0)


@pytest.fixture(scope="module")
def quantized(model: nn.Module) -> quantize_module.Quantized:
    return quantize_pt2e(model, _images(64, 1), batch=16)


@pytest.fixture(scope="module")
def inputs() -> torch.Tensor:
    return _images(128, 2)


def _saved(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@torch.no_grad()
def test_int8_outputs_close_to_fp32(quantized, model, inputs):
    fp32, int8 = model(inputs), quantized.model(inputs)
    parity = check_parity(fp32, int8)
    assert parity["top1_agreement"] >= 0.9
    assert parity["max_abs_diff"] <= 0.2 * float(fp32.abs().max())


def test_step_is_a_json_card_entry(quantized):
    step = json.loads(json.dumps(quantized.step))
    assert step["method"] == "quantize" and step["scheme"] == "pt2e-x86-inductor"
    assert step["input_shape"] == list(SHAPE) and step["dynamic_head"] is True
    assert step["torch"] == torch.__version__ and step["torchao"]
    # The head's activation qparams are chosen per batch at run time: dynamic quantization is in the graph.
    assert "choose_qparams" in quantized.model.code


def test_int8_model_and_state_are_smaller_than_fp32(quantized, model):
    size, fp32 = int8_size(quantized.model), model_size(model)
    assert size["size_bytes"] < fp32["size_bytes"] / 2  # conv weights int8 and no fp32 copy left behind
    assert size["size_mb"] == pytest.approx(size["size_bytes"] / 2**20)
    assert quantized.state["conv1.weight"].dtype == torch.int8
    assert len(_saved(quantized.state)) < len(_saved(model.state_dict())) / 2


@torch.no_grad()
def test_rebuild_from_state_reproduces_the_int8_model(quantized):
    state = torch.load(io.BytesIO(_saved(quantized.state)), weights_only=True)
    prepared = quantized_structure(_model(7), quantized.step)  # other random weights, other BN statistics
    prepared.load_state_dict(state, strict=True)
    rebuilt = finish_quantized(prepared, quantized.step)
    for n in (1, 64):
        x = _images(n, 3 + n)
        expected = quantized.model(x)
        assert expected.shape == (n, 10)
        assert torch.equal(rebuilt(x), expected)


def test_state_with_missing_or_renamed_keys_fails_to_load(quantized):
    prepared = quantized_structure(_model(7), quantized.step)
    renamed = dict(quantized.state)
    renamed["conv1.weight_renamed"] = renamed.pop("conv1.weight")
    with pytest.raises(RuntimeError, match="Missing key.*conv1.weight"):
        prepared.load_state_dict(renamed, strict=True)
    no_scale = {k: v for k, v in quantized.state.items() if k != "activation_post_process_1.scale"}
    with pytest.raises(RuntimeError, match="int8 weight without its qparams"):
        prepared.load_state_dict(no_scale, strict=False)  # even non-strict: int8 codes are not weights


def test_structure_refuses_another_method(model):
    with pytest.raises(ValueError, match="method 'quantize'"):
        quantized_structure(model, {"method": "fuse", "pairs": []})
    with pytest.raises(ValueError, match="input_shape"):
        quantized_structure(model, {"method": "quantize", "scheme": "pt2e-x86-inductor", "input_shape": [16, 16]})


def test_int8_model_is_inference_only(quantized):
    assert quantized.model.eval() is quantized.model and not quantized.model.training
    with pytest.raises(RuntimeError, match="inference-only"):
        quantized.model.train()


@pytest.mark.parametrize(("calibration", "match"), [
    (torch.empty(0, *SHAPE), "empty"),
    (torch.randn(8, 16, 16), r"\(N, C, H, W\)"),
    (torch.randn(8, 3, 16, 16), "do not fit the model"),
    (torch.full((8, *SHAPE), float("nan")), "finite"),
])
def test_quantize_refuses_bad_calibration(model, calibration, match):
    with pytest.raises(ValueError, match=match):
        quantize_pt2e(model, calibration)


def test_quantize_refuses_bad_batch(model):
    with pytest.raises(ValueError, match="batch"):
        quantize_pt2e(model, _images(4, 0), batch=0)


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 4)).eval()


def test_dynamic_head_falls_back_to_static_and_says_why(monkeypatch):
    static_only = quantize_module._quantizer

    def failing(dynamic_head: bool):
        if dynamic_head:
            raise RuntimeError("mixed configs unsupported")
        return static_only(False)

    monkeypatch.setattr(quantize_module, "_quantizer", failing)
    result = quantize_pt2e(_tiny(), torch.randn(16, 1, 8, 8))
    assert result.step["dynamic_head"] is False
    assert "mixed configs unsupported" in result.step["dynamic_head_reason"]
    assert "choose_qparams" not in result.model.code


@pytest.mark.slow
def test_compiled_runs_the_int8_model_with_freezing_patched_locally():
    import torch._inductor.config as inductor_config

    result = quantize_pt2e(_tiny(), torch.randn(16, 1, 8, 8), dynamic_head=False)
    x = torch.randn(4, 1, 8, 8)
    before = inductor_config.freezing
    fast = compiled(result.model)(x)  # the one torch.compile of this file (tiny model: a few seconds)
    assert inductor_config.freezing == before
    with torch.no_grad():
        assert torch.allclose(fast, result.model(x), atol=1e-4)


@pytest.mark.slow
def test_onnx_int8_is_smaller_and_agrees(model, inputs, tmp_path):
    fp32_path = export_onnx(model, inputs[:2], tmp_path / "model.onnx")
    int8_path = quantize_onnx(fp32_path, _images(64, 1).numpy(), tmp_path / "model.int8.onnx", batch=16)
    assert int8_path.stat().st_size < fp32_path.stat().st_size
    with torch.no_grad():
        parity = check_parity(model(inputs), run_onnx(int8_path, inputs))
    assert parity["top1_agreement"] >= 0.9


def test_quantize_onnx_refuses_bad_calibration(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        quantize_onnx(tmp_path / "absent.onnx", torch.empty(0, *SHAPE).numpy(), tmp_path / "out.onnx")
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        quantize_onnx(tmp_path / "absent.onnx", torch.randn(4, 16, 16).numpy(), tmp_path / "out.onnx")
