"""V1 simple cells: a bank of oriented Gabor filters on a grating of known orientation and on a real digit."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from cnnray.layers import gabor_bank
from cnnray.insight.simple_cell import simulate_simple_cell

WAVELENGTH = 4.0
KERNEL_SIZE = 9


def oriented_grating(size: int, theta: float, wavelength: float = WAVELENGTH) -> Tensor:
    """(size, size) cosine grating in [0, 1] varying along direction theta (gabor_kernel's convention)."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    across = x * math.cos(theta) + y * math.sin(theta)
    return (0.5 + 0.5 * torch.cos(2 * math.pi * across / wavelength)).float()


def bank_kernels(num_orientations: int) -> Tensor:
    """(K, size, size) kernels exactly as simulate_simple_cell builds them (sigma = wavelength / 2, zero mean)."""
    bank = gabor_bank(num_orientations, size=KERNEL_SIZE, sigma=0.5 * WAVELENGTH, lambd=WAVELENGTH)[:, 0]
    return bank - bank.mean(dim=(1, 2), keepdim=True)


def simple_cells(digit: Tensor, num_orientations: int = 8, true_index: int = 3, grating_size: int = 64) -> dict[str, Any]:
    """Responses of the bank to a grating at orientation `true_index` and to `digit`, with the grating's tuning curve."""
    thetas = [i * math.pi / num_orientations for i in range(num_orientations)]
    grating = oriented_grating(grating_size, thetas[true_index])
    grating_maps = torch.stack([simulate_simple_cell(grating, t, WAVELENGTH, KERNEL_SIZE) for t in thetas])
    digit_maps = torch.stack([simulate_simple_cell(digit, t, WAVELENGTH, KERNEL_SIZE) for t in thetas])
    # The border rows see zero padding, not the grating: leave them out of the tuning curve.
    margin = KERNEL_SIZE // 2
    tuning = grating_maps[:, margin:-margin, margin:-margin].mean(dim=(1, 2))
    preferred = int(torch.argmax(tuning))
    step = 180.0 / num_orientations
    return {
        "kernels": bank_kernels(num_orientations), "grating": grating, "digit": digit,
        "grating_maps": grating_maps, "digit_maps": digit_maps,
        "orientations_deg": [i * step for i in range(num_orientations)],
        "tuning": [float(v) for v in tuning],
        "digit_mean_response": [float(v) for v in digit_maps.mean(dim=(1, 2))],
        "preferred_deg": preferred * step, "true_deg": true_index * step, "step_deg": step,
        "selectivity": float(tuning.max() / tuning.mean()),
    }
