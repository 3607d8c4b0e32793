"""The tutorial's attention modules and its pooling choice, by their tutorial names over cnnray's layers."""

from __future__ import annotations

from torch import Tensor, nn

from cnnray.layers import CBAM as _CBAM
from cnnray.layers import ChannelAttention as _ChannelAttention
from cnnray.layers import SpatialAttention as _SpatialAttention
from cnnray.layers import get_pool


class ChannelAttention(_ChannelAttention):
    """The tutorial's version gives average and max pooling a separate MLP each; here one MLP is shared by
    both descriptors, as in CBAM (Woo et al. 2018), half the parameters."""

    def __init__(self, in_channels: int, reduction: int = 16) -> None:
        super().__init__(in_channels, reduction)


class SpatialAttention(_SpatialAttention):
    """Tutorial pitfall: padding kernel_size // 2 silently changes the map size for an even kernel; here even
    sizes are refused, H x W is kept, and the channel max goes through an op with indices (finite bf16 grads)."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__(kernel_size)


class CBAM(_CBAM):
    """The tutorial's CBAM inherits its channel attention's two unshared MLPs; here cnnray's CBAM: one shared
    MLP, then spatial attention (channel first, the order the paper found best)."""

    def __init__(self, in_channels: int, reduction: int = 16, kernel_size: int = 7) -> None:
        super().__init__(in_channels, reduction, kernel_size)


class AdvancedPooling(nn.Module):
    """Tutorial pitfall: stochastic pooling that still samples at test time and sizes that floor odd maps; here
    cnnray's pools ('max', 'avg', 'mixed', 'stochastic', 'learnable', 'attention'): 'same' padding, eval averages."""

    def __init__(self, in_channels: int, pool_type: str = "max", kernel_size: int = 2, stride: int = 2) -> None:
        super().__init__()
        self.pool_type = pool_type
        self.pool = get_pool(pool_type, in_channels, kernel_size, stride)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(x)
