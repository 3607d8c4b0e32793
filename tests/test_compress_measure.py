"""Size, FLOPs and CPU timing of a model: real numbers, never a zero time or an infinite throughput."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cnnray.compress import file_size_mb, flops, measure_latency, model_size
from cnnray.models import count_flops, count_params, create_model


def _small() -> nn.Module:
    torch.manual_seed(0)
    return create_model("resnet18", num_classes=10, in_chans=1, stem="cifar", width=0.125)


def test_model_size_counts_parameters_and_buffers():
    bn = nn.BatchNorm2d(4)  # 8 fp32 parameters; running mean/var (8 fp32) and an int64 batch counter
    size = model_size(bn)
    assert (size["params"], size["param_bytes"], size["buffer_bytes"]) == (8, 32, 40)
    assert size["size_bytes"] == 72 and size["size_mb"] == pytest.approx(72 / 2**20)
    model = _small()
    assert model_size(model)["params"] == count_params(model)
    assert model_size(model.half())["param_bytes"] == 2 * count_params(model)


def test_file_size_mb(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(b"\0" * 2**20 * 3)
    assert file_size_mb(path) == 3.0


def test_flops_reuses_count_flops():
    model = _small()
    assert flops(model, (1, 16, 16)) == count_flops(model, 16, 1) > 0
    with pytest.raises(ValueError, match="square"):
        flops(model, (1, 16, 32))


def test_latency_is_positive_and_restores_state():
    model = _small()  # train mode: timing must neither update BN statistics nor leave eval mode on
    stats = model.bn1.running_mean.clone()
    threads = torch.get_num_threads()
    result = measure_latency(model, torch.randn(3, 1, 16, 16), warmup=1, repeats=3, threads=2)
    assert 0 < result["latency_median_s"] <= result["latency_p90_s"]
    assert 0 < result["throughput_ips"] < math.inf and result["batch"] == 64
    assert result["throughput_ips"] == pytest.approx(64 / result["batch_median_s"])
    assert (result["threads"], result["warmup"], result["repeats"]) == (2, 1, 3)
    assert torch.get_num_threads() == threads and model.training
    assert torch.equal(model.bn1.running_mean, stats)


def test_latency_of_a_plain_callable():
    result = measure_latency(lambda x: x.sum(), torch.randn(2, 4), warmup=0, repeats=1)
    assert result["latency_median_s"] > 0 and result["threads"] == torch.get_num_threads()


@pytest.mark.parametrize("kwargs", [{"repeats": 0}, {"repeats": -1}, {"warmup": -1}, {"threads": 0}])
def test_latency_refuses_bad_counts(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        measure_latency(_small().eval(), torch.randn(1, 1, 16, 16), **kwargs)
