"""What a compressed model costs: size in memory and on disk, parameters, FLOPs, CPU latency and throughput."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from cnnray.layers._checks import check_non_negative_int, check_positive_int
from cnnray.models.complexity import count_flops, count_params
from cnnray.threads import torch_threads

MB = 1024 * 1024
THROUGHPUT_BATCH = 64


def model_size(model: nn.Module) -> dict[str, Any]:
    """Parameter count, and bytes / MB of parameters, buffers and both together (the in-memory state)."""
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    buffer_bytes = sum(b.numel() * b.element_size() for b in model.buffers())
    return {"params": count_params(model), "param_bytes": param_bytes, "buffer_bytes": buffer_bytes,
            "size_bytes": param_bytes + buffer_bytes, "size_mb": (param_bytes + buffer_bytes) / MB}


def file_size_mb(path: str | os.PathLike[str]) -> float:
    """Size of the file at `path` in MB (MiB, as `model_size`)."""
    return os.path.getsize(path) / MB


def flops(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """FLOPs of one (C, H, W) image, as `cnnray.models.count_flops` counts them (square images only)."""
    chans, height, width = input_shape
    if height != width:
        raise ValueError(f"input_shape: count_flops measures square images, got {height}x{width}")
    return count_flops(model, height, chans)


def _percentile(sorted_values: list[float], q: float) -> float:
    # Nearest rank: a reported p90 is a time that was actually measured.
    return sorted_values[min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))]


@contextmanager
def _eval(fn: Callable[[Tensor], Any]) -> Iterator[None]:
    # A train-mode model would update BN statistics and run its regularizers while being timed.
    was_training = isinstance(fn, nn.Module) and fn.training
    if was_training:
        fn.eval()
    try:
        yield
    finally:
        if was_training:
            fn.train()


def _time_calls(fn: Callable[[Tensor], Any], batch: Tensor, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(batch)
        times.append(time.perf_counter() - start)
    if min(times) <= 0:  # a zero reading would become an infinite throughput
        raise RuntimeError(f"timer returned {min(times)} s for a call: too coarse to measure this model")
    return sorted(times)


def _batch_of(example: Tensor, size: int) -> Tensor:
    # Real rows, cycled: a throughput measured on zeros can flatter data-dependent kernels.
    return example[torch.arange(size) % example.shape[0]].contiguous()


def measure_latency(model: Callable[[Tensor], Any], example: Tensor, *, warmup: int = 5, repeats: int = 20,
                    threads: int | None = None) -> dict[str, Any]:
    """CPU seconds per call at batch 1 (median, p90) and images/s at batch 64, median of `repeats` after `warmup`."""
    repeats, warmup = check_positive_int("repeats", repeats), check_non_negative_int("warmup", warmup)
    threads = torch.get_num_threads() if threads is None else check_positive_int("threads", threads)
    if example.ndim < 1 or example.shape[0] < 1 or example.device.type != "cpu":
        raise ValueError(f"example: expected a non-empty CPU batch, got {tuple(example.shape)} on {example.device}")
    with torch_threads(threads), _eval(model), torch.inference_mode():
        single = _time_calls(model, _batch_of(example, 1), warmup, repeats)
        big = _time_calls(model, _batch_of(example, THROUGHPUT_BATCH), warmup, repeats)
    big_median = statistics.median(big)
    return {"latency_median_s": statistics.median(single), "latency_p90_s": _percentile(single, 0.9),
            "batch": THROUGHPUT_BATCH, "batch_median_s": big_median, "throughput_ips": THROUGHPUT_BATCH / big_median,
            "threads": threads, "warmup": warmup, "repeats": repeats}
