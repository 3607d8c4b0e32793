"""The tutorial's first steps: a convolution by hand, classic filters as feature maps, a V1 simple cell."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from cnnray.insight.simple_cell import simulate_simple_cell  # noqa: F401 - the tutorial's name
from cnnray.layers import classic_kernels, conv2d_reference


def _as_map(image: Any) -> Tensor:
    """A float (1, 1, H, W) tensor from an (H, W) array or tensor."""
    x = torch.as_tensor(image, dtype=torch.float32)
    if x.ndim != 2:
        raise ValueError(f"image: expected a 2D (H, W) array, got shape {tuple(x.shape)}")
    return x[None, None]


class ConvolutionDemo:
    """Tutorial pitfall: a hand-written loop that flips the kernel or miscounts the output size; here
    cnnray's conv2d_reference computes exactly what F.conv2d does (cross-correlation, (H + 2p - k) // s + 1)."""

    def manual_convolution(self, image: Any, kernel: Any, stride: int = 1, padding: int = 0) -> Tensor:
        """The (H', W') map of one 2D kernel slid over one 2D image, as F.conv2d computes it."""
        weight = _as_map(kernel)
        return conv2d_reference(_as_map(image), weight, stride=stride, padding=padding)[0, 0]

    def demonstrate_feature_maps(self, image: Any) -> dict[str, Tensor]:
        """Each classic 3x3 filter (edges, blur, sharpen, ...) applied to `image`, same size as the image."""
        x = _as_map(image)
        # Returned as tensors, not drawn: plotting them is the caller's (or cnnray insight's) concern.
        return {name: F.conv2d(x, k[None, None], padding=1)[0, 0] for name, k in classic_kernels().items()}
