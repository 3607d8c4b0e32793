"""Gabor kernels and the classic 3x3 filters, checked by what they respond to."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cnnray.layers import classic_kernels, gabor_bank, gabor_kernel


def test_gabor_kernel_shape_and_formula_at_centre():
    k = gabor_kernel(7, sigma=2.0, theta=0.3, lambd=4.0, psi=0.5)
    assert k.shape == (7, 7) and k.dtype == torch.float32
    assert k[3, 3].item() == pytest.approx(math.cos(0.5))  # x' = y' = 0 at the centre
    # Off-centre: one pixel right of centre, theta = 0 -> x' = 1, y' = 0.
    k0 = gabor_kernel(7, sigma=2.0, theta=0.0, lambd=4.0)
    assert k0[3, 4].item() == pytest.approx(math.exp(-1 / 8) * math.cos(2 * math.pi / 4), abs=1e-6)
    assert gabor_kernel(5, 1.0, math.pi / 2, 3.0).shape == (5, 5)


def test_gabor_rotation_by_90_degrees_is_a_transpose():
    k0 = gabor_kernel(9, 2.0, 0.0, 4.0)
    k90 = gabor_kernel(9, 2.0, math.pi / 2, 4.0)
    torch.testing.assert_close(k90, k0.t(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("peak", [0, 2, 4, 6])
def test_bank_response_peaks_at_matching_orientation(peak):
    n = 8
    bank = gabor_bank(num_orientations=n, size=9, sigma=2.5, lambd=5.0)
    assert bank.shape == (n, 1, 9, 9)
    theta = peak * math.pi / n
    coords = torch.arange(48, dtype=torch.float32)
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    # Zero-mean stripes whose intensity varies along the direction theta (theta = 0: vertical stripes).
    image = torch.cos(2 * math.pi * (x * math.cos(theta) + y * math.sin(theta)) / 5.0)[None, None]
    energy = F.conv2d(image, bank)[..., 8:-8, 8:-8].abs().mean((0, 2, 3))
    assert energy.argmax().item() == peak


def test_bad_gabor_arguments():
    with pytest.raises(ValueError, match="sigma"):
        gabor_kernel(7, 0.0, 0.0, 4.0)
    with pytest.raises(ValueError, match="num_orientations"):
        gabor_bank(0)


def test_classic_kernels():
    kernels = classic_kernels()
    for name in ["sobel_x", "sobel_y", "laplacian", "box_blur", "gaussian_blur", "sharpen"]:
        assert kernels[name].shape == (3, 3)
    image = torch.zeros(1, 1, 8, 8)
    image[..., 4:] = 1.0  # a vertical edge between columns 3 and 4
    gx = F.conv2d(image, kernels["sobel_x"][None, None])
    gy = F.conv2d(image, kernels["sobel_y"][None, None])
    assert gx.abs().max() > 0 and gy.abs().max() == 0
    assert gx[..., 2:4].abs().min() > 0 and gx[..., :2].abs().max() == 0  # only at the edge
    const = torch.full((1, 1, 6, 6), 3.0)
    for name in ["box_blur", "gaussian_blur", "sharpen", "identity"]:
        torch.testing.assert_close(F.conv2d(const, kernels[name][None, None]), torch.full((1, 1, 4, 4), 3.0))
    assert F.conv2d(const, kernels["laplacian"][None, None]).abs().max() < 1e-6
    kernels["sobel_x"].zero_()  # callers get fresh tensors: mutating one leaves the next call intact
    assert classic_kernels()["sobel_x"].abs().sum() == 8
