"""The classic 3x3 filters through cnnray's explicit sliding-window convolution and through F.conv2d."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from cnnray.compress.measure import measure_latency
from cnnray.layers import classic_kernels, conv2d_reference

# Display order: derivatives first (signed maps), then the smoothing/sharpening filters.
ORDER = ("sobel_x", "sobel_y", "prewitt_vertical", "prewitt_horizontal", "diagonal_45", "diagonal_135",
         "laplacian", "box_blur", "gaussian_blur", "sharpen")


def edge_kernels() -> dict[str, Tensor]:
    """The classic kernels plus Prewitt and the two Sobel diagonals, which classic_kernels does not ship."""
    kernels = classic_kernels()
    prewitt = torch.tensor([[-1.0, 0.0, 1.0]] * 3)
    # Named by the edges they respond to, as sobel_x (a horizontal derivative) responds to vertical edges.
    kernels["prewitt_vertical"] = prewitt
    kernels["prewitt_horizontal"] = prewitt.t().contiguous()
    kernels["diagonal_45"] = torch.tensor([[0.0, 1.0, 2.0], [-1.0, 0.0, 1.0], [-2.0, -1.0, 0.0]])
    kernels["diagonal_135"] = torch.tensor([[2.0, 1.0, 0.0], [1.0, 0.0, -1.0], [0.0, -1.0, -2.0]])
    return {name: kernels[name] for name in ORDER}


def compare_convolutions(images: Tensor, repeats: int, threads: int = 1) -> dict[str, Any]:
    """conv2d_reference vs F.conv2d on `images` (N, 1, H, W) floats: max |difference| and median speed of each."""
    kernels = edge_kernels()
    weight = torch.stack(list(kernels.values())).unsqueeze(1)
    reference = conv2d_reference(images, weight, padding=1)
    library = F.conv2d(images, weight, padding=1)
    warmup = min(3, repeats)
    # One thread by default: the ratio compares two algorithms, not how many cores happened to be free.
    fast = measure_latency(lambda x: F.conv2d(x, weight, padding=1), images, warmup=warmup, repeats=repeats,
                           threads=threads)
    slow = measure_latency(lambda x: conv2d_reference(x, weight, padding=1), images, warmup=warmup,
                           repeats=repeats, threads=threads)
    return {
        "kernels": kernels, "images": images, "maps": library,
        "kernel_names": list(kernels), "batch": images.shape[0], "image_size": list(images.shape[-2:]),
        "max_abs_diff": float((reference - library).abs().max()),
        "allclose_atol_1e-5": bool(torch.allclose(reference, library, atol=1e-5)),
        "timing_batch": fast["batch"], "threads": threads, "repeats": repeats,
        "conv2d_median_s": fast["batch_median_s"], "reference_median_s": slow["batch_median_s"],
        "conv2d_latency_median_s": fast["latency_median_s"], "reference_latency_median_s": slow["latency_median_s"],
        # > 1: F.conv2d is that many times faster than the explicit sum over kernel taps.
        "speed_ratio": slow["batch_median_s"] / fast["batch_median_s"],
    }
