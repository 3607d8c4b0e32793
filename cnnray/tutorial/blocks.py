"""The tutorial's network blocks and its ModernCNN, as configurations of cnnray's residual blocks and ResNet."""

from __future__ import annotations

from torch import nn

from cnnray.models import BasicBlock, ResNet


class ResidualBlock(BasicBlock):
    """Tutorial pitfall: `downsample` must be passed by hand or the addition fails on a shape change; here
    cnnray's BasicBlock builds the 1x1-conv + BN projection itself whenever stride or width changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__(in_channels, out_channels, stride)
        if downsample is not None:  # an explicit shortcut from the caller still wins
            self.downsample = downsample


class AttentionConvBlock(BasicBlock):
    """Tutorial pitfall: attention applied after the residual addition, gating the identity path too; here
    CBAM refines the branch after its last norm, before the addition (Woo et al.), in cnnray's BasicBlock."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__(in_channels, out_channels, stride, attn="cbam")


class RegularizedConvBlock(BasicBlock):
    """Tutorial pitfall: stochastic depth dropping the whole block (shortcut included) and DropBlock left on
    in eval; here DropPath drops only the residual branch and both are identities in eval mode."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, drop_block_rate: float = 0.1,
                 block_size: int = 5, drop_path_rate: float = 0.1) -> None:
        super().__init__(in_channels, out_channels, stride, drop_block=drop_block_rate,
                         drop_block_size=block_size, drop_path=drop_path_rate)


class ModernCNN(ResNet):
    """Tutorial pitfall: a fixed stack whose flatten size ties it to one input size; here cbam_resnet18 (cifar
    stem, Mish, mixed-pool downsampling, DropBlock, linear drop path, global pooling: any input size)."""

    def __init__(self, num_classes: int, dropout_rate: float = 0.5, *, in_chans: int = 3,
                 width: float = 1.0) -> None:
        # The models package documents this configuration as the tutorial's ModernCNN.
        super().__init__(BasicBlock, (2, 2, 2, 2), num_classes=num_classes, in_chans=in_chans, stem="cifar",
                         width=width, act="mish", attn="cbam", pool="mixed", drop_rate=dropout_rate,
                         drop_path_rate=0.1, drop_block=0.1, drop_block_size=5, zero_init_residual=True)
