"""Every registered model trains a step under bf16 autocast + channels_last, and round-trips its weights."""

from __future__ import annotations

import io
import pickle

import pytest
import torch

from cnnray.models import create_model, list_models

SMALL = {"num_classes": 10, "stem": "cifar", "width": 0.25}


def _batch(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, 32, 32, generator=g).contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("name", list_models())
def test_train_step_bf16_channels_last(name):
    torch.manual_seed(0)
    model = create_model(name, **SMALL).to(memory_format=torch.channels_last).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(_batch())
    assert out.shape == (2, 10)
    loss = torch.nn.functional.cross_entropy(out.float(), torch.tensor([1, 7]))
    loss.backward()
    assert torch.isfinite(loss)
    # DDP with find_unused_parameters=False needs a gradient for every parameter.
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", list_models())
def test_state_dict_and_pickle_round_trip(name):
    torch.manual_seed(0)
    model = create_model(name, **SMALL).eval()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(1)
    restored = create_model(name, **SMALL).eval()
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    copy = pickle.loads(pickle.dumps(model)).eval()
    x = _batch(1)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(restored(x), expected, rtol=0, atol=0)
        torch.testing.assert_close(copy(x), expected, rtol=0, atol=0)
