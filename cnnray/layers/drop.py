"""DropBlock (Ghiasi et al. 2018, https://arxiv.org/abs/1810.12890) and DropPath / stochastic depth
(Huang et al. 2016, https://arxiv.org/abs/1603.09382).

DropBlock zeroes contiguous block_size x block_size squares of a feature map instead of single
activations: neighbouring activations are correlated, so dropping single pixels barely removes
information from a conv net.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_drop_prob, check_non_negative_int, check_positive_int


def effective_block_size(block_size: int, h: int, w: int) -> int:
    """The block actually dropped on an h x w map: a block that would cover the whole map is clamped.

    With a block as large as the map there is one seed position and DropBlock degenerates into
    dropping whole maps with probability drop_prob (stage 4 of a cifar-stem ResNet is 4x4, far below
    the usual 7): the block is clamped to half the map's shorter side (rounded up) instead.
    """
    side = min(h, w)
    return block_size if block_size < side else max(1, (side + 1) // 2)


def drop_block_2d(
    x: Tensor, drop_prob: float, block_size: int, training: bool = True, per_channel: bool = True
) -> Tensor:
    """Zero random block_size squares of `x` (B, C, H, W) so that about `drop_prob` of it is dropped.

    DropBlock (Ghiasi et al. 2018, https://arxiv.org/abs/1810.12890). One mask per channel by default, as
    in Ghiasi et al.'s Algorithm 1 (and timm), which the paper found to work better; `per_channel=False`
    shares one mask across a sample's channels.
    """
    drop_prob = check_drop_prob("drop_prob", drop_prob)
    block_size = check_positive_int("block_size", block_size)
    if not training or drop_prob == 0.0:
        return x
    b, c, h, w = x.shape
    bs = effective_block_size(block_size, h, w)
    valid_h, valid_w = h - bs + 1, w - bs + 1
    # Seeds live only where a whole block fits; the (H*W)/valid-area factor makes up for the
    # border where no seed may fall, so the expected dropped fraction stays near drop_prob.
    gamma = drop_prob / (bs * bs) * (h * w) / (valid_h * valid_w)
    mask_c = c if per_channel else 1
    seeds = torch.rand((b, mask_c, valid_h, valid_w), device=x.device) < gamma
    # A seed marks a block's top-left corner; padding bs-1 on every side and a stride-1 max pool
    # grows each seed into the bs x bs square below and to the right of it, inside the map.
    dropped = F.max_pool2d(F.pad(seeds.float(), (bs - 1,) * 4), kernel_size=bs, stride=1)
    keep = 1.0 - dropped
    # Rescale by the kept fraction actually drawn (not 1 - drop_prob) so every batch keeps its scale.
    scale = keep.numel() / keep.sum().clamp_min(1.0)
    return x * (keep * scale).to(x.dtype)


class DropBlock2d(nn.Module):
    """DropBlock (Ghiasi et al. 2018, https://arxiv.org/abs/1810.12890) as a module: active in training,
    identity in eval."""

    def __init__(self, drop_prob: float = 0.1, block_size: int = 7, per_channel: bool = True) -> None:
        super().__init__()
        self.drop_prob = check_drop_prob("drop_prob", drop_prob)
        self.block_size = check_positive_int("block_size", block_size)
        self.per_channel = bool(per_channel)

    def forward(self, x: Tensor) -> Tensor:
        return drop_block_2d(x, self.drop_prob, self.block_size, self.training, self.per_channel)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}, block_size={self.block_size}, per_channel={self.per_channel}"


def drop_path(x: Tensor, drop_prob: float = 0.0, training: bool = False) -> Tensor:
    """Zero whole samples of a residual branch with probability `drop_prob`, scaling survivors by 1/keep.

    Stochastic depth (Huang et al. 2016, https://arxiv.org/abs/1603.09382), drawn per sample.
    """
    drop_prob = check_drop_prob("drop_prob", drop_prob)
    if not training or drop_prob == 0.0:
        return x
    keep_prob = 1.0 - drop_prob
    # One draw per sample, broadcast over every other dim: the branch is dropped for that sample.
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    mask = (torch.rand(shape, device=x.device) < keep_prob).to(x.dtype)
    return x * mask / keep_prob


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016, https://arxiv.org/abs/1603.09382) per sample, for the main path
    of a residual block."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = check_drop_prob("drop_prob", drop_prob)

    def forward(self, x: Tensor) -> Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


def drop_path_rates(drop_path_rate: float, num_blocks: int) -> list[float]:
    """Per-block drop-path rates rising linearly from 0 (first block) to `drop_path_rate` (last).

    The linear decay rule of stochastic depth (Huang et al. 2016, https://arxiv.org/abs/1603.09382).
    """
    drop_path_rate = check_drop_prob("drop_path_rate", drop_path_rate)
    num_blocks = check_non_negative_int("num_blocks", num_blocks)
    if num_blocks == 1:
        return [0.0]
    # Deeper blocks refine less essential features, so they can be skipped more often.
    return [drop_path_rate * i / (num_blocks - 1) for i in range(num_blocks)]
