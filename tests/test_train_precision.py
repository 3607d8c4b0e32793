"""Precision resolution per device, and the refusals that name the config key."""

import pytest
import torch

from cnnray.errors import ConfigError
from cnnray.loop import precision as prec
from cnnray.loop.precision import resolve_precision


def test_cpu_choices(monkeypatch):
    assert resolve_precision("fp32", torch.device("cpu")).autocast_dtype is None
    p = resolve_precision("bf16", "cpu")
    assert (p.name, p.autocast_dtype, p.use_grad_scaler) == ("bf16", torch.bfloat16, False)
    with p.autocast():
        assert torch.nn.Linear(4, 2)(torch.randn(3, 4)).dtype == torch.bfloat16
    monkeypatch.setattr(prec, "_cpu_bf16_fast", lambda: True)
    assert resolve_precision("auto", "cpu").name == "bf16"
    monkeypatch.setattr(prec, "_cpu_bf16_fast", lambda: False)
    assert resolve_precision("auto", "cpu").name == "fp32"


def test_fp16_on_cpu_refused():
    with pytest.raises(ConfigError, match="train.precision"):
        resolve_precision("fp16", "cpu")


def test_cuda_auto(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", "cuda").name == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    p = resolve_precision("auto", "cuda")
    assert (p.name, p.autocast_dtype, p.use_grad_scaler) == ("fp16", torch.float16, True)
    with pytest.raises(ConfigError, match="train.precision"):
        resolve_precision("bf16", "cuda")
