"""ModelEma against the closed-form EMA on a one-scalar model."""

import pytest
import torch
from torch import nn

from cnnray.loop.ema import ModelEma


class Scalar(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(2.0, dtype=torch.float64))
        self.register_buffer("b", torch.tensor(0.0, dtype=torch.float64))


def _values(n):
    return [float(k) ** 0.5 - 1.5 for k in range(1, n + 1)]


def test_closed_form_constant_decay():
    m, d = Scalar(), 0.9
    ema = ModelEma(m, d)
    vals = _values(12)
    for k, v in enumerate(vals):
        with torch.no_grad():
            m.w.fill_(v)
            m.b.fill_(k)
        ema.update(m)
    n = len(vals)
    expected = d**n * 2.0 + sum((1 - d) * d ** (n - k) * v for k, v in enumerate(vals, start=1))
    assert ema.module.w.item() == pytest.approx(expected, rel=1e-12)
    assert ema.module.b.item() == n - 1  # buffers are copied, not averaged
    assert not ema.module.training and not ema.module.w.requires_grad


def test_warmup_decay_and_state_round_trip():
    m, d = Scalar(), 0.99
    ema = ModelEma(m, d, warmup=True)
    e = 2.0
    for n, v in enumerate(_values(6)):
        dn = min(d, (1 + n) / (10 + n))
        e = dn * e + (1 - dn) * v
        with torch.no_grad():
            m.w.fill_(v)
        ema.update(m)
    assert ema.module.w.item() == pytest.approx(e, rel=1e-12)
    other = ModelEma(Scalar(), d, warmup=True)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 6 and other.module.w.item() == ema.module.w.item()


def test_unwraps_compile_wrapper():
    m = Scalar()
    ema = ModelEma(torch.compile(m), 0.5)  # compile is lazy: nothing is compiled until a forward
    with torch.no_grad():
        m.w.fill_(4.0)
    ema.update(torch.compile(m))
    assert ema.module.w.item() == pytest.approx(3.0)
