"""Pooling layers: 'same' output sizes, stochastic pooling against explicit loops, learned pools at init."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnray.layers import (POOLS, AttentionPool2d, LearnablePool2d, MixedPool2d, StochasticPool2d, get_pool,
                           same_pad_amounts)


def windows_by_loop(x: torch.Tensor, k: int, s: int) -> list[list[list[list[list[float]]]]]:
    """Real (unpadded) values of each 'same' window, gathered with plain Python loops."""
    b, c, h, w = x.shape
    top, _ = same_pad_amounts(h, k, s)
    left, _ = same_pad_amounts(w, k, s)
    out_h, out_w = math.ceil(h / s), math.ceil(w / s)
    return [[[[[x[n, ch, i, j].item()
                for i in range(oi * s - top, oi * s - top + k) if 0 <= i < h
                for j in range(oj * s - left, oj * s - left + k) if 0 <= j < w]
               for oj in range(out_w)] for oi in range(out_h)] for ch in range(c)] for n in range(b)]


def test_stochastic_eval_is_probability_weighted_average():
    torch.manual_seed(0)
    x = torch.randn(2, 2, 5, 5)
    x[0, 0, :2, :2] = -1.0  # an all-negative window
    out = StochasticPool2d(2, 2).eval()(x)
    assert out.shape == (2, 2, 3, 3)
    for n, per_sample in enumerate(windows_by_loop(x, 2, 2)):
        for c, rows in enumerate(per_sample):
            for i, row in enumerate(rows):
                for j, values in enumerate(row):
                    pos = [max(v, 0.0) for v in values]
                    total = sum(pos)
                    expected = sum(p / total * v for p, v in zip(pos, values)) if total > 0 else 0.0
                    assert out[n, c, i, j].item() == pytest.approx(expected, abs=1e-6)
    assert out[0, 0, 0, 0] == 0


@pytest.mark.parametrize("k,s", [(2, 2), (3, 2)])
def test_stochastic_train_picks_a_window_member(k, s):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 7, 6)
    pool = StochasticPool2d(k, s).train()
    windows = windows_by_loop(x, k, s)
    for _ in range(3):
        out = pool(x)
        for n, c, i, j in torch.cartesian_prod(*(torch.arange(d) for d in out.shape)).tolist():
            values = windows[n][c][i][j]
            value = out[n, c, i, j].item()
            if max(values) <= 0:
                assert value == 0.0
            else:
                assert value > 0 and any(value == pytest.approx(v, abs=1e-7) for v in values)


def test_stochastic_sampling_frequency():
    torch.manual_seed(2)
    n = 20000
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).expand(n, 1, 2, 2)
    out = StochasticPool2d(2, 2).train()(x).flatten()
    freq = torch.stack([(out == v).float().mean() for v in (1.0, 2.0, 3.0, 4.0)])
    # p = a / sum(a) = [.1, .2, .3, .4]; 20000 draws give std <= 0.0035, so 0.015 is > 4 sigma.
    torch.testing.assert_close(freq, torch.tensor([0.1, 0.2, 0.3, 0.4]), atol=0.015, rtol=0)


@pytest.mark.parametrize("training", [True, False])
def test_stochastic_zero_windows_no_nan(training):
    x = torch.zeros(1, 2, 4, 4, requires_grad=True)
    out = StochasticPool2d().train(training)(x)
    out.sum().backward()
    assert torch.equal(out, torch.zeros(1, 2, 2, 2)) and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", POOLS.names())
@pytest.mark.parametrize("k,s,size,expected", [(2, 2, 8, 4), (2, 2, 7, 4), (3, 2, 7, 4), (3, 2, 8, 4), (3, 1, 5, 5)])
def test_same_output_size(name, k, s, size, expected):
    out = get_pool(name, 4, k, s)(torch.randn(2, 4, size, size + 1))
    assert out.shape == (2, 4, expected, math.ceil((size + 1) / s))


@pytest.mark.parametrize("size", [7, 8])
def test_max_and_avg_match_pytorch_padding_rule(size):
    torch.manual_seed(3)
    x = torch.randn(2, 3, size, size)
    torch.testing.assert_close(get_pool("max", 3, 3, 2)(x), nn.MaxPool2d(3, 2, 1)(x))
    torch.testing.assert_close(get_pool("avg", 3, 3, 2)(x), nn.AvgPool2d(3, 2, 1, count_include_pad=False)(x))
    torch.testing.assert_close(get_pool("max", 3, 2, 2)(x), nn.MaxPool2d(2, 2, ceil_mode=True)(x))
    torch.testing.assert_close(get_pool("avg", 3, 2, 2)(x), nn.AvgPool2d(2, 2, ceil_mode=True)(x))


def test_learned_pools_start_from_known_pools():
    torch.manual_seed(4)
    x = torch.randn(2, 3, 6, 6)
    avg, mx = F.avg_pool2d(x, 2), F.max_pool2d(x, 2)
    torch.testing.assert_close(AttentionPool2d(3)(x), avg)
    torch.testing.assert_close(LearnablePool2d(3)(x), avg)
    torch.testing.assert_close(MixedPool2d(3)(x), 0.5 * (avg + mx))


def test_attention_pool_with_sharp_logits_approaches_max():
    torch.manual_seed(5)
    x = torch.randn(2, 3, 6, 6)
    pool = AttentionPool2d(3)
    with torch.no_grad():
        pool.logit.weight.copy_(200.0 * torch.eye(3).view(3, 3, 1, 1))  # logit = 200 x, per channel
    torch.testing.assert_close(pool(x), F.max_pool2d(x, 2), atol=1e-3, rtol=0)


def test_bad_names_and_sizes():
    with pytest.raises(ValueError, match="valid names: attention, avg, learnable, max, mixed, stochastic"):
        get_pool("median", 4)
    for kwargs, name in [({"kernel_size": 0}, "kernel_size"), ({"stride": -1}, "stride")]:
        with pytest.raises(ValueError, match=name):
            get_pool("learnable", 4, **kwargs)
    with pytest.raises(ValueError, match="channels"):
        get_pool("mixed", 0)
