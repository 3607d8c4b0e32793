"""A V1 simple cell as a rectified Gabor filter response (the tutorial's lesson); `cnnray.tutorial` re-exports it."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from cnnray.layers import gabor_kernel


def _as_map(image: Any) -> Tensor:
    """A float (1, 1, H, W) tensor from an (H, W) array or tensor."""
    x = torch.as_tensor(image, dtype=torch.float32)
    if x.ndim != 2:
        raise ValueError(f"image: expected a 2D (H, W) array, got shape {tuple(x.shape)}")
    return x[None, None]


def simulate_simple_cell(image: Any, orientation: float, wavelength: float = 4.0, size: int = 9) -> Tensor:
    """Tutorial pitfall: an unrectified Gabor response whose angle convention is left unstated; here cnnray's
    gabor_kernel (theta = 0 prefers vertical stripes, radians), 'same' size, half-wave rectified as a V1 cell fires."""
    kernel = gabor_kernel(size, sigma=0.5 * wavelength, theta=float(orientation), lambd=wavelength)
    kernel = kernel - kernel.mean()  # a zero-DC filter: uniform brightness alone must not excite the cell
    response = F.conv2d(_as_map(image), kernel[None, None], padding=size // 2)[0, 0]
    # A firing rate cannot be negative: the cell responds only to the preferred polarity.
    return response.clamp_min(0.0) / math.sqrt(float((kernel**2).sum()))
