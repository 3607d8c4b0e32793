"""The projection shortcut of a residual block whose shape changes."""

from __future__ import annotations

from torch import nn

from cnnray.models.factories import LayerFactory


def conv1x1(in_chs: int, out_chs: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution without bias (a norm follows)."""
    return nn.Conv2d(in_chs, out_chs, kernel_size=1, stride=stride, bias=False)


def conv3x3(in_chs: int, out_chs: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1, without bias (a norm follows)."""
    return nn.Conv2d(in_chs, out_chs, kernel_size=3, stride=stride, padding=1, bias=False)


def make_shortcut(
    in_chs: int, out_chs: int, stride: int, norm: LayerFactory, pool: LayerFactory | None = None
) -> nn.Module:
    """Identity when the shape is kept; else 1x1 conv + norm, strided, or after `pool` when one is given."""
    if stride == 1 and in_chs == out_chs:
        return nn.Identity()
    if stride != 1 and pool is not None:
        # ResNet-D style: downsample by pooling first so the 1x1 conv sees every input position.
        return nn.Sequential(pool(in_chs), conv1x1(in_chs, out_chs), norm(out_chs))
    # Keys downsample.0 / downsample.1 match torchvision, so its state dicts load unchanged.
    return nn.Sequential(conv1x1(in_chs, out_chs, stride), norm(out_chs))
