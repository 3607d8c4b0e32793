"""Building blocks for conv nets: attention, pooling, activations, norms, regularisers, reference maths."""

from .activations import GELU, AdaptivePReLU, Mish, Swish
from .attention_pool import AttentionPool2d
from .cbam import CBAM, ChannelAttention, SpatialAttention
from .create_act import ACTIVATIONS, get_act
from .create_attn import ATTENTIONS, get_attn
from .create_norm import NORMS, get_norm, group_norm_groups
from .create_pool import POOLS, get_pool
from .drop import DropBlock2d, DropPath, drop_block_2d, drop_path, drop_path_rates
from .filters import classic_kernels, gabor_bank, gabor_kernel
from .frelu import FReLU
from .layer_norm import LayerNorm2d
from .learnable_pool import LearnablePool2d
from .mixed_pool import MixedPool2d
from .padding import pad_same, same_pad_amounts
from .pool_same import AvgPool2dSame, MaxPool2dSame
from .reference import conv2d_reference
from .squeeze_excite import SqueezeExcite
from .stochastic_pool import StochasticPool2d, stochastic_pool2d
from .switchable_norm import SwitchableNorm2d

__all__ = [
    "ACTIVATIONS", "ATTENTIONS", "NORMS", "POOLS",
    "AdaptivePReLU", "AttentionPool2d", "AvgPool2dSame", "CBAM", "ChannelAttention", "DropBlock2d", "DropPath",
    "FReLU", "GELU", "LayerNorm2d", "LearnablePool2d", "MaxPool2dSame", "Mish", "MixedPool2d", "SpatialAttention",
    "SqueezeExcite", "StochasticPool2d", "Swish", "SwitchableNorm2d",
    "classic_kernels", "conv2d_reference", "drop_block_2d", "drop_path", "drop_path_rates", "gabor_bank",
    "gabor_kernel", "get_act", "get_attn", "get_norm", "get_pool", "group_norm_groups", "pad_same",
    "same_pad_amounts", "stochastic_pool2d",
]
