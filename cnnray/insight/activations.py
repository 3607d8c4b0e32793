"""Activation curves, their gradients on a dense grid, dead (zero-gradient) fractions and throughput."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch import Tensor, nn

from cnnray.threads import torch_threads
from cnnray.insight.activation_comparison import ActivationComparison

NAMES = ("relu", "leaky_relu", "swish", "mish", "gelu", "frelu", "prelu")
SHAPE = (64, 32, 32, 32)  # (N, C, H, W) of the throughput measurement


def _values(module: nn.Module, grid: Tensor, channels: int) -> Tensor:
    # The same (1, C, 1, W) ramp layout as ActivationComparison's gradients, so FReLU sees its neighbours.
    with torch.no_grad():
        return module(grid.repeat(channels, 1).view(1, channels, 1, -1))[0, 0, 0]


def _cuda_throughput(modules: dict[str, nn.Module], repeats: int) -> dict[str, float]:
    """Elements/s of each activation on a CUDA tensor of SHAPE, median of `repeats` synchronized calls."""
    x = torch.randn(SHAPE, device="cuda")
    out = {}
    for name, module in modules.items():
        module = module.to("cuda").eval()
        times = []
        with torch.inference_mode():
            for i in range(repeats + 3):  # the first calls pay for kernel selection and caching
                torch.cuda.synchronize()
                start = time.perf_counter()
                module(x)
                torch.cuda.synchronize()  # the launch returns early: wait for the kernel itself
                if i >= 3:
                    times.append(time.perf_counter() - start)
        if min(times) <= 0:
            raise RuntimeError(f"{name}: timer returned {min(times)} s on CUDA, too coarse to measure")
        out[name] = x.numel() / statistics.median(times)
        module.to("cpu")
    return out


def compare_activations(repeats: int, threads: int = 1, low: float = -5.0, high: float = 5.0,
                        num_points: int = 2001) -> dict[str, Any]:
    """Curves, autograd gradients and zero-gradient fractions on [low, high]; CPU (and CUDA) elements/s."""
    torch.manual_seed(0)  # FReLU's funnel conv and PReLU are freshly initialized: make the pictures repeatable
    comparison = ActivationComparison(NAMES, channels=SHAPE[1])
    grid = torch.linspace(low, high, num_points)
    grads = comparison.compare_gradients(low, high, num_points)
    # The same threads for every activation: a per-element cost, comparable across them.
    with torch_threads(threads):
        timings = comparison.benchmark_performance(SHAPE[1:], warmup=min(3, repeats), repeats=repeats)
    per_image = SHAPE[1] * SHAPE[2] * SHAPE[3]
    cuda = _cuda_throughput(comparison.modules, repeats) if torch.cuda.is_available() else {}
    rows = {}
    for name in NAMES:
        t = timings[name]
        rows[name] = {
            "zero_grad_fraction": grads[name]["dead_fraction"], "grad_min": grads[name]["min"],
            "grad_max": grads[name]["max"], "grad_at_zero": grads[name]["at_zero"],
            "cpu_median_s": t["batch_median_s"], "cpu_elements_per_s": t["throughput_ips"] * per_image,
            **({"cuda_elements_per_s": cuda[name]} if cuda else {}),
        }
    return {
        "grid": grid, "values": {n: _values(comparison.modules[n], grid, SHAPE[1]) for n in NAMES},
        "grads": {n: grads[n]["grad"] for n in NAMES}, "rows": rows,
        "grid_points": num_points, "range": [low, high], "shape": list(SHAPE), "threads": threads,
        "repeats": repeats, "cuda": bool(cuda),
    }
