"""conv2d_reference against F.conv2d."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from cnnray.layers import conv2d_reference

GRID = list(itertools.product(
    [(1, 2, 7, 6), (2, 4, 9, 8)],  # (B, C_in, H, W)
    [(3, 3), (1, 1), (2, 3)],       # kernel
    [1, 2, (2, 1)],                 # stride
    [0, 1, (2, 0)],                 # padding
    [1, 2],                         # dilation
    [1, 2],                         # groups
))


@pytest.mark.parametrize("shape,kernel,stride,padding,dilation,groups", GRID)
def test_matches_f_conv2d(shape, kernel, stride, padding, dilation, groups):
    torch.manual_seed(0)
    x = torch.randn(shape)
    weight = torch.randn(4, shape[1] // groups, *kernel)
    bias = torch.randn(4)
    expected = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    got = conv2d_reference(x, weight, bias, stride, padding, dilation, groups)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # F.conv2d's own note
@pytest.mark.parametrize("padding,kernel,dilation", [("same", (4, 3), 1), ("same", (3, 2), 2), ("valid", (3, 3), 1)])
def test_string_padding(padding, kernel, dilation):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 8, 7)
    weight = torch.randn(5, 3, *kernel)
    expected = F.conv2d(x, weight, padding=padding, dilation=dilation)
    got = conv2d_reference(x, weight, padding=padding, dilation=dilation)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_unbatched_and_depthwise():
    torch.manual_seed(2)
    x = torch.randn(6, 5, 5)
    weight = torch.randn(6, 1, 3, 3)
    torch.testing.assert_close(conv2d_reference(x, weight, padding=1, groups=6),
                               F.conv2d(x, weight, padding=1, groups=6), atol=1e-5, rtol=1e-5)


def test_bad_groups_and_stride():
    x = torch.randn(1, 4, 5, 5)
    with pytest.raises(ValueError, match="groups"):
        conv2d_reference(x, torch.randn(3, 2, 3, 3), groups=2)
    with pytest.raises(ValueError, match="stride"):
        conv2d_reference(x, torch.randn(2, 4, 3, 3), stride=0)
