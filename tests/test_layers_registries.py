"""Every registered layer works in train and eval, channels_last, bf16 autocast, and pickles."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

from cnnray.layers import (ACTIVATIONS, ATTENTIONS, NORMS, POOLS, DropBlock2d, DropPath, get_act, get_attn, get_norm,
                           get_pool)

C = 8
BUILDERS = (
    [(f"act:{n}", lambda n=n: get_act(n, channels=C)) for n in ACTIVATIONS.names()]
    + [(f"attn:{n}", lambda n=n: get_attn(n, C)) for n in ATTENTIONS.names()]
    + [(f"norm:{n}", lambda n=n: get_norm(n, C)) for n in NORMS.names()]
    + [(f"pool:{n}", lambda n=n: get_pool(n, C, 3, 2)) for n in POOLS.names()]
    + [("drop:block", lambda: DropBlock2d(0.2, 3)), ("drop:path", lambda: DropPath(0.2))]
)
IDS = [name for name, _ in BUILDERS]


def run(module: nn.Module, x: torch.Tensor, autocast: bool) -> torch.Tensor:
    """Forward and backward; returns the output (as float) after checking that gradients are finite."""
    x = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = module(x)
    out.float().square().mean().backward()
    assert torch.isfinite(x.grad).all()
    for name, p in module.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name
    module.zero_grad()
    return out.float()


@pytest.mark.parametrize("build", [b for _, b in BUILDERS], ids=IDS)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("autocast", [False, True])
@pytest.mark.parametrize("training", [True, False])
def test_forward_backward_finite(build, channels_last, autocast, training):
    torch.manual_seed(0)
    module = build().train(training)
    x = torch.randn(2, C, 9, 9)  # odd size: exercises the pools' padding
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = run(module, x, autocast)
    assert torch.isfinite(out).all() and out.shape[:2] == (2, C)


@pytest.mark.parametrize("build", [b for _, b in BUILDERS], ids=IDS)
def test_channels_last_gives_the_same_eval_output(build):
    torch.manual_seed(1)
    module = build().eval()
    x = torch.randn(2, C, 9, 9)
    torch.testing.assert_close(module(x.contiguous(memory_format=torch.channels_last)), module(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("build", [b for _, b in BUILDERS], ids=IDS)
def test_pickles(build):
    torch.manual_seed(2)
    module = build().eval()
    copy = pickle.loads(pickle.dumps(module))
    x = torch.randn(2, C, 9, 9)
    torch.testing.assert_close(copy(x), module(x))
    assert copy.state_dict().keys() == module.state_dict().keys()
