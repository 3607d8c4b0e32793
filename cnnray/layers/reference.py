"""A from-first-principles 2D convolution, to check and to teach what F.conv2d computes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

IntPair = int | tuple[int, int]


def _pair(name: str, value: IntPair, minimum: int) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in pair):
        raise ValueError(f"{name} must be an int or a pair of ints >= {minimum}, got {value!r}")
    return pair  # type: ignore[return-value]


def _padding(padding: IntPair | str, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]):
    """(top, bottom, left, right) padding, including F.conv2d's 'valid' and 'same' strings."""
    if padding == "valid":
        return 0, 0, 0, 0
    if padding == "same":
        if stride != (1, 1):
            raise ValueError(f"padding='same' needs stride=1, got stride={stride}")
        # As ATen: total = dilation * (k - 1), the odd one out goes to the bottom/right.
        totals = [d * (k - 1) for d, k in zip(dilation, kernel)]
        return totals[0] // 2, totals[0] - totals[0] // 2, totals[1] // 2, totals[1] - totals[1] // 2
    if isinstance(padding, str):
        raise ValueError(f"padding must be an int, a pair of ints, 'valid' or 'same', got {padding!r}")
    ph, pw = _pair("padding", padding, 0)
    return ph, ph, pw, pw


def conv2d_reference(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair | str = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> Tensor:
    """F.conv2d computed as an explicit sum over kernel offsets: out = sum_{i,j} w[:, :, i, j] . x_shifted."""
    unbatched = input.ndim == 3
    x = input.unsqueeze(0) if unbatched else input
    batch, in_ch, height, width = x.shape
    out_ch, group_in, kh, kw = weight.shape
    if groups < 1 or in_ch % groups or out_ch % groups or group_in * groups != in_ch:
        raise ValueError(
            f"groups={groups} must divide in_channels={in_ch} and out_channels={out_ch}, "
            f"with weight.shape[1] == in_channels / groups (got {group_in})"
        )
    sh, sw = _pair("stride", stride, 1)
    dh, dw = _pair("dilation", dilation, 1)
    top, bottom, left, right = _padding(padding, (kh, kw), (sh, sw), (dh, dw))
    x = F.pad(x, (left, right, top, bottom))
    # Output size: the number of stride steps a dilated kernel of extent d*(k-1)+1 can take.
    out_h = (height + top + bottom - dh * (kh - 1) - 1) // sh + 1
    out_w = (width + left + right - dw * (kw - 1) - 1) // sw + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f"kernel ({kh}x{kw}, dilation {dh}x{dw}) is larger than the padded input")
    out = x.new_zeros((batch, out_ch, out_h, out_w))
    group_out = out_ch // groups
    for g in range(groups):
        xs = x[:, g * group_in : (g + 1) * group_in]
        ws = weight[g * group_out : (g + 1) * group_out]
        for i in range(kh):
            for j in range(kw):
                # Kernel tap (i, j) sees the input shifted by (i*d, j*d), sampled every stride.
                rows = slice(i * dh, i * dh + sh * (out_h - 1) + 1, sh)
                cols = slice(j * dw, j * dw + sw * (out_w - 1) + 1, sw)
                patch = xs[:, :, rows, cols]
                out[:, g * group_out : (g + 1) * group_out] += torch.einsum("bchw,oc->bohw", patch, ws[:, :, i, j])
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out.squeeze(0) if unbatched else out
