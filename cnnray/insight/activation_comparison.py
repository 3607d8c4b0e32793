"""The tutorial's comparison of activation functions, done right: gradients on a dense grid, a timer that
refuses a zero reading. `cnnray.tutorial.ActivationComparison` is this class under the tutorial's name."""

from __future__ import annotations

from typing import Any

import torch

from cnnray.compress.measure import measure_latency
from cnnray.layers import get_act

COMPARED = ("relu", "leaky_relu", "elu", "swish", "mish", "gelu", "frelu")


class ActivationComparison:
    """The tutorial measures gradients at a few points and times a CPU call without a usable timer (zero time,
    infinite throughput); here autograd on a dense grid, and cnnray's measure_latency (refuses a zero reading)."""

    def __init__(self, activations: tuple[str, ...] = COMPARED, channels: int = 8) -> None:
        # frelu has per-channel weights: every activation is built for the same channel count.
        self.modules = {name: get_act(name, channels=channels) for name in activations}
        self.channels = channels

    def compare_gradients(self, low: float = -5.0, high: float = 5.0, num_points: int = 2001) -> dict[str, Any]:
        """Per activation: d act / dx on `num_points` points of [low, high], its min/max, the value at 0 and the
        fraction of points where it is 0 (dead)."""
        out = {}
        for name, module in self.modules.items():
            x = torch.linspace(low, high, num_points).repeat(self.channels, 1).view(1, self.channels, 1, -1)
            x.requires_grad_(True)
            module.eval()  # frelu's BN: running statistics, so each point's gradient is its own
            module(x).sum().backward()
            grad = x.grad[0, 0, 0]
            zero = int(torch.argmin(torch.linspace(low, high, num_points).abs()))
            out[name] = {"grad": grad.detach(), "min": float(grad.min()), "max": float(grad.max()),
                         "at_zero": float(grad[zero]), "dead_fraction": float((grad == 0).float().mean())}
        return out

    def benchmark_performance(self, input_size: tuple[int, int, int] = (8, 32, 32), warmup: int = 3,
                              repeats: int = 10) -> dict[str, dict[str, Any]]:
        """measure_latency of each activation on (C, H, W) = `input_size` images (C must equal `channels`)."""
        if input_size[0] != self.channels:
            raise ValueError(f"input_size: {input_size[0]} channels, but the activations were built for "
                             f"{self.channels}")
        example = torch.randn(2, *input_size)
        return {name: measure_latency(module, example, warmup=warmup, repeats=repeats)
                for name, module in self.modules.items()}
