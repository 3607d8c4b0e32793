"""Hand-made convolution kernels: a Gabor filter bank and the classic 3x3 image filters.

Coordinates follow OpenCV's getGaborKernel: x runs along columns, y along rows (downwards), and
theta = 0 gives a carrier that varies along x, i.e. a filter tuned to vertical stripes/edges.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._checks import check_positive_float, check_positive_int


def gabor_kernel(
    size: int, sigma: float, theta: float, lambd: float, gamma: float = 0.5, psi: float = 0.0
) -> Tensor:
    """A (size, size) Gabor kernel: exp(-(x'^2 + gamma^2 y'^2) / (2 sigma^2)) * cos(2 pi x' / lambd + psi)."""
    size = check_positive_int("size", size)
    sigma = check_positive_float("sigma", sigma)
    lambd = check_positive_float("lambd", lambd)
    gamma = check_positive_float("gamma", gamma)
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    # Rotate the frame by theta: x' is across the stripes the filter likes, y' along them.
    x_rot = x * math.cos(theta) + y * math.sin(theta)
    y_rot = -x * math.sin(theta) + y * math.cos(theta)
    envelope = torch.exp(-(x_rot**2 + (gamma * y_rot) ** 2) / (2 * sigma**2))
    carrier = torch.cos(2 * math.pi * x_rot / lambd + psi)
    return (envelope * carrier).float()


def gabor_bank(
    num_orientations: int = 8,
    size: int = 7,
    sigma: float = 2.0,
    lambd: float = 4.0,
    gamma: float = 0.5,
    psi: float = 0.0,
) -> Tensor:
    """(num_orientations, 1, size, size) Gabor kernels with theta = i * pi / num_orientations."""
    num_orientations = check_positive_int("num_orientations", num_orientations)
    # Orientations repeat after pi (theta and theta + pi give the same cosine filter).
    kernels = [
        gabor_kernel(size, sigma, i * math.pi / num_orientations, lambd, gamma, psi) for i in range(num_orientations)
    ]
    return torch.stack(kernels).unsqueeze(1)


def classic_kernels() -> dict[str, Tensor]:
    """Fresh (3, 3) float kernels: sobel_x/y, laplacian, box_blur, gaussian_blur, sharpen, identity."""
    sobel_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    binomial = torch.tensor([1.0, 2.0, 1.0])
    return {
        "identity": torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]),
        # sobel_x is a horizontal derivative (responds to vertical edges); sobel_y its transpose.
        "sobel_x": sobel_x,
        "sobel_y": sobel_x.t().contiguous(),
        "laplacian": torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]),
        "box_blur": torch.full((3, 3), 1.0 / 9.0),
        "gaussian_blur": torch.outer(binomial, binomial) / 16.0,
        "sharpen": torch.tensor([[0.0, -1.0, 0.0], [-1.0, 5.0, -1.0], [0.0, -1.0, 0.0]]),
    }
