"""train.compile=true: the Engine trains through torch.compile on CPU and saves plain (unprefixed) weights."""

import pytest
import torch
from torch import nn

from cnnray.config.schema import Config, OptimConfig, ScheduleConfig, TrainConfig
from cnnray.train.engine import Engine


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def blobs(n=128, seed=0):
    """Two classes of 1x8x8 images: a bright or dark upper half plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 1, 8, 8, generator=g) * 0.5
    x[:, :, :4] += (2 * y - 1).float()[:, None, None, None]
    return x, y


def batches(x, y, bs):
    return [(x[i : i + bs], y[i : i + bs]) for i in range(0, len(y), bs)]


def _engine(compile_: bool) -> Engine:
    cfg = Config(optim=OptimConfig(lr=0.01), schedule=ScheduleConfig(name="constant", warmup_epochs=0),
                 train=TrainConfig(epochs=2, precision="fp32", ema=True, label_smoothing=0.0, compile=compile_))
    torch.manual_seed(0)
    return Engine(TinyNet(), cfg, steps_per_epoch=8, num_classes=2, device="cpu")


def test_compiled_engine_learns_and_saves_unprefixed_weights():
    x, y = blobs()
    e = _engine(True)
    assert isinstance(e.model, torch._dynamo.eval_frame.OptimizedModule)  # the flag really compiled the model
    # What the compiled module itself would save carries the wrapper's prefix: the Engine must strip it.
    assert all(k.startswith("_orig_mod.") for k in e.model.state_dict())
    before = e.evaluate(batches(x, y, 32))["val_loss"]
    for _ in range(2):
        e.train_epoch(batches(x, y, 16))
    after = e.evaluate(batches(x, y, 32))["val_loss"]
    assert after < 0.7 * before, (before, after)

    plain_keys = set(TinyNet().state_dict())
    sd = e.state_dict()
    assert set(sd["model"]) == plain_keys
    assert set(e.weights_state("raw")) == plain_keys and set(e.weights_state("ema")) == plain_keys
    assert set(sd["ema"]["module"]) == plain_keys

    # The saved state loads into a plain (uncompiled) engine and predicts the same.
    plain = _engine(False)
    plain.load_state_dict(sd)
    with torch.no_grad():
        assert torch.allclose(plain.module(x), e.module(x), atol=1e-6)
    assert plain.evaluate(batches(x, y, 32))["val_loss"] == pytest.approx(after, rel=1e-5)
