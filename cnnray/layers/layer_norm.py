"""LayerNorm (Ba et al. 2016, https://arxiv.org/abs/1607.06450) over the channels of each position of a
(B, C, H, W) map (as in ConvNeXt)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_positive_int


class LayerNorm2d(nn.LayerNorm):
    """Normalises each (b, :, h, w) channel vector; per-channel affine `weight` and `bias`.

    Layer normalization (Ba et al. 2016, https://arxiv.org/abs/1607.06450), over C only at each position.
    """

    def __init__(self, channels: int, eps: float = 1e-6, elementwise_affine: bool = True) -> None:
        super().__init__(check_positive_int("channels", channels), eps=eps, elementwise_affine=elementwise_affine)

    def forward(self, x: Tensor) -> Tensor:
        # NCHW -> NHWC makes C the last dim; for a channels_last input this permute is free.
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)
