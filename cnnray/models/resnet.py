"""ResNet (He et al. 2016) with pluggable activation, norm, attention and downsampling, plus regularizers.

With the defaults (imagenet stem, width 1, relu, batch norm, no attention, no pool) the network is
torchvision's ResNet v1.5: same parameters, same state-dict keys, same outputs.

Options:
- `stem`: 'imagenet' = 7x7/2 conv, norm, act, 3x3/2 max pool (input / 4); 'cifar' = 3x3/1 conv,
  norm, act, no pool (input / 1), for 32x32-sized images. The stem's max pool is never replaced by `pool`.
- `width`: stage widths round(64, 128, 256, 512 x width), at least 8; the stem has the first stage's width.
- `act`, `norm`: layer names (`cnnray.layers.get_act` / `get_norm`) or classes, used everywhere.
- `attn`: per-block attention (`get_attn` name) on the residual branch after its last norm, before the addition.
- `pool`: None downsamples with stride-2 convs. A `get_pool` name changes the first block of stages 2-4:
  its main path applies that pooling (kernel 2, stride 2) right before the conv that was strided
  (the first 3x3 in BasicBlock, the middle 3x3 in Bottleneck), which then runs at stride 1, and its
  shortcut becomes pooling + 1x1 conv (stride 1) + norm. Each pooling is its own module instance.
- `drop_rate`: dropout on the pooled features before `fc`.
- `drop_path_rate`: stochastic depth on each residual branch, rising linearly from 0 to this value over the blocks.
- `drop_block`, `drop_block_size`: DropBlock (drop probability, block size) after every norm of the
  residual branches in stages 3 and 4 (as in the DropBlock paper's ResNet-50); off when 0.
- `zero_init_residual`: zero each branch's last norm weight, so every block starts as act(shortcut).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from cnnray.layers import drop_path_rates
from cnnray.layers._checks import check_drop_prob, check_int, check_positive_float
from cnnray.models.blocks import BasicBlock, Bottleneck
from cnnray.models.factories import LayerSpec, act_factory, norm_factory
from cnnray.models.init import init_classifier, init_weights, zero_init_last_norms

STEMS = ("imagenet", "cifar")
BASE_WIDTHS = (64, 128, 256, 512)


def scale_width(channels: int, width: float) -> int:
    """`channels` x `width`, rounded, at least 8."""
    return max(8, int(round(channels * width)))


def _check_options(layers: Sequence[int], num_classes: int, in_chans: int, stem: str, width: float,
                   drop_rate: float, drop_path_rate: float, drop_block: float, drop_block_size: int,
                   zero_init_residual: bool) -> None:
    if len(layers) != 4:
        raise ValueError(f"layers: expected 4 block counts, got {layers!r}")
    for n in layers:
        check_int("layers", n)
    check_int("num_classes", num_classes)
    check_int("in_chans", in_chans)
    check_int("drop_block_size", drop_block_size)
    if stem not in STEMS:
        raise ValueError(f"stem: expected one of {', '.join(STEMS)}, got {stem!r}")
    check_positive_float("width", width)
    for arg, rate in (("drop_rate", drop_rate), ("drop_path_rate", drop_path_rate), ("drop_block", drop_block)):
        check_drop_prob(arg, rate)
    if not isinstance(zero_init_residual, bool):
        raise ValueError(f"zero_init_residual: expected true or false, got {zero_init_residual!r}")


class ResNet(nn.Module):
    """ResNet of `block`s (BasicBlock or Bottleneck), `layers[i]` of them in stage i; options in the module doc."""

    def __init__(self, block: type[BasicBlock | Bottleneck], layers: Sequence[int], num_classes: int = 1000,
                 in_chans: int = 3, stem: str = "imagenet", width: float = 1.0, act: LayerSpec = "relu",
                 norm: LayerSpec = "batch", attn: LayerSpec = None, pool: LayerSpec = None, drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, drop_block: float = 0.0, drop_block_size: int = 7,
                 zero_init_residual: bool = False) -> None:
        super().__init__()
        _check_options(layers, num_classes, in_chans, stem, width, drop_rate, drop_path_rate, drop_block,
                       drop_block_size, zero_init_residual)
        widths = [scale_width(c, width) for c in BASE_WIDTHS]
        # Stem modules sit at the top level under torchvision's names, so its state dicts load.
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_chans, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
        else:  # small images: keep full resolution into stage 1
            self.conv1 = nn.Conv2d(in_chans, widths[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = norm_factory(norm)(widths[0])
        self.act1 = act_factory(act)(widths[0])
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if stem == "imagenet" else nn.Identity()

        path_rates = iter(drop_path_rates(drop_path_rate, sum(layers)))
        in_chs = widths[0]
        for stage, (planes, depth) in enumerate(zip(widths, layers)):
            blocks = []
            for i in range(depth):
                blocks.append(block(
                    in_chs, planes, stride=2 if stage > 0 and i == 0 else 1, act=act, norm=norm, attn=attn,
                    pool=pool, drop_block=drop_block if stage >= 2 else 0.0, drop_block_size=drop_block_size,
                    drop_path=next(path_rates)))
                in_chs = planes * block.expansion
            self.add_module(f"layer{stage + 1}", nn.Sequential(*blocks))

        self.num_features = in_chs
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(in_chs, num_classes)

        init_weights(self)
        init_classifier(self.fc)
        if zero_init_residual:
            zero_init_last_norms(self)

    def forward_features(self, x: Tensor) -> Tensor:
        """Feature map after stage 4, shape (N, num_features, H', W')."""
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, x: Tensor) -> Tensor:
        """Logits from a stage-4 feature map: global average pool, dropout, linear."""
        return self.fc(self.head_drop(torch.flatten(self.avgpool(x), 1)))

    def forward(self, x: Tensor) -> Tensor:
        """Logits, shape (N, num_classes)."""
        return self.forward_head(self.forward_features(x))
