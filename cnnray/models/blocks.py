"""Residual blocks: `BasicBlock` (two 3x3 convs) and `Bottleneck` (1x1-3x3-1x1, stride on the 3x3)."""

from __future__ import annotations

from torch import Tensor, nn

from cnnray.layers import DropBlock2d, DropPath
from cnnray.models.factories import LayerFactory, LayerSpec, act_factory, attn_factory, norm_factory, pool_factory
from cnnray.models.shortcut import conv1x1, conv3x3, make_shortcut

# Submodule names follow torchvision (bn1, downsample, ...) whatever the norm, so that with the
# default options a torchvision ResNet state dict loads into these blocks as is.


def _main_pool(pool: LayerSpec, stride: int) -> LayerFactory | None:
    """The pooling that replaces the main path's stride: only in a downsampling block with `pool` set."""
    if stride not in (1, 2):
        raise ValueError(f"stride: expected 1 or 2, got {stride!r}")
    return pool_factory(pool) if stride == 2 else None


class _Residual(nn.Module):
    """What both blocks share after the main path: attention, drop path, shortcut, add, activation."""

    def _build_tail(self, in_chs: int, out_chs: int, stride: int, act: LayerSpec, norm: LayerSpec,
                    attn: LayerSpec, pool: LayerSpec, drop_path: float) -> None:
        self.attn = attn_factory(attn)(out_chs)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.downsample = make_shortcut(in_chs, out_chs, stride, norm_factory(norm), pool_factory(pool))
        self.act_out = act_factory(act)(out_chs)

    def _finish(self, branch: Tensor, x: Tensor) -> Tensor:
        # Attention recalibrates the branch before the addition, as in the SE and CBAM papers.
        branch = self.drop_path(self.attn(branch))
        return self.act_out(branch + self.downsample(x))


def _drop_block(drop_prob: float, block_size: int) -> nn.Module:
    # No parameters, so one instance serves every position in the branch.
    return DropBlock2d(drop_prob, block_size) if drop_prob > 0 else nn.Identity()


class BasicBlock(_Residual):
    """Two 3x3 conv-norm layers; the first one downsamples (strided, or after pooling when `pool` is set)."""

    expansion = 1

    def __init__(self, in_chs: int, planes: int, stride: int = 1, act: LayerSpec = "relu", norm: LayerSpec = "batch",
                 attn: LayerSpec = None, pool: LayerSpec = None, drop_block: float = 0.0, drop_block_size: int = 7,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        make_pool, make_norm, make_act = _main_pool(pool, stride), norm_factory(norm), act_factory(act)
        self.pool = make_pool(in_chs) if make_pool else nn.Identity()
        self.conv1 = conv3x3(in_chs, planes, 1 if make_pool else stride)
        self.bn1 = make_norm(planes)
        self.act1 = make_act(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = make_norm(planes)
        self.drop_block = _drop_block(drop_block, drop_block_size)
        self._build_tail(in_chs, planes, stride, act, norm, attn, pool, drop_path)

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.drop_block(self.bn1(self.conv1(self.pool(x)))))
        out = self.drop_block(self.bn2(self.conv2(out)))
        return self._finish(out, x)

    def zero_init_last(self) -> None:
        """Zero the branch's last norm weight, so the block starts as act(shortcut)."""
        nn.init.zeros_(self.bn2.weight)


class Bottleneck(_Residual):
    """1x1 reduce, 3x3 that downsamples (ResNet v1.5, as torchvision), 1x1 expand by `expansion`."""

    expansion = 4

    def __init__(self, in_chs: int, planes: int, stride: int = 1, act: LayerSpec = "relu", norm: LayerSpec = "batch",
                 attn: LayerSpec = None, pool: LayerSpec = None, drop_block: float = 0.0, drop_block_size: int = 7,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        make_pool, make_norm, make_act = _main_pool(pool, stride), norm_factory(norm), act_factory(act)
        out_chs = planes * self.expansion
        self.conv1 = conv1x1(in_chs, planes)
        self.bn1 = make_norm(planes)
        self.act1 = make_act(planes)
        self.pool = make_pool(planes) if make_pool else nn.Identity()
        self.conv2 = conv3x3(planes, planes, 1 if make_pool else stride)
        self.bn2 = make_norm(planes)
        self.act2 = make_act(planes)
        self.conv3 = conv1x1(planes, out_chs)
        self.bn3 = make_norm(out_chs)
        self.drop_block = _drop_block(drop_block, drop_block_size)
        self._build_tail(in_chs, out_chs, stride, act, norm, attn, pool, drop_path)

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.drop_block(self.bn1(self.conv1(x))))
        out = self.act2(self.drop_block(self.bn2(self.conv2(self.pool(out)))))
        out = self.drop_block(self.bn3(self.conv3(out)))
        return self._finish(out, x)

    def zero_init_last(self) -> None:
        """Zero the branch's last norm weight, so the block starts as act(shortcut)."""
        nn.init.zeros_(self.bn3.weight)
