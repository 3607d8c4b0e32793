"""Conv-BN folding for inference: each BatchNorm2d that directly consumes a Conv2d goes into its weights.

Pairs are found from the data flow, not from attribute names or registration order: the model is
traced with torch.fx (leaf modules kept opaque) and a pair is a conv whose only consumer is a
BatchNorm2d, each module called exactly once. Registration order lies in cnnray's own blocks
(Bottleneck registers `act1` and `pool` between `bn1` and `conv2`), and pairing by position is how
a fusion ends up replacing the wrong module. The result keeps the model's own classes (not an fx
GraphModule): the folded conv gets a bias and the BN becomes nn.Identity. A ReLU after the BN stays
as is; merging it into the conv needs quantized/fused kernels, not float arithmetic.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


@dataclass(frozen=True)
class FuseResult:
    """The fused copy and the qualified names of the (conv, bn) pairs folded into it."""

    model: nn.Module
    pairs: tuple[tuple[str, str], ...]

    @property
    def fused(self) -> int:
        """Number of folded Conv2d-BatchNorm2d pairs."""
        return len(self.pairs)


class _LeafTracer(fx.Tracer):
    """Traces through containers only: a module without children is one opaque call."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        # Childless custom layers (DropBlock, SwitchableNorm, ...) may branch on values; never trace into them.
        return next(m.children(), None) is None


def _foldable(bn: nn.Module) -> bool:
    # Without running statistics an eval-mode BN normalizes by the batch: nothing constant to fold.
    return isinstance(bn, nn.BatchNorm2d) and bn.running_mean is not None and bn.running_var is not None


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """Qualified names of (Conv2d, BatchNorm2d) pairs where the BN is the conv output's only consumer."""
    graph = _LeafTracer().trace(model)
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(model.get_submodule(node.target), nn.Conv2d):
            continue
        users = list(node.users)
        if len(users) != 1 or users[0].op != "call_module" or users[0].args[:1] != (node,):
            continue
        conv_name, bn_name = node.target, users[0].target
        # A module called twice (weight sharing) would change its other call site too.
        if _foldable(model.get_submodule(bn_name)) and calls[conv_name] == 1 and calls[bn_name] == 1:
            pairs.append((conv_name, bn_name))
    return pairs


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child, module)


@torch.no_grad()
def fuse_conv_bn(model: nn.Module) -> FuseResult:
    """An eval-mode deep copy of `model` with every Conv2d->BatchNorm2d pair folded; `model` is untouched."""
    fused = copy.deepcopy(model).eval()
    pairs = conv_bn_pairs(fused)
    for conv_name, bn_name in pairs:
        conv, bn = fused.get_submodule(conv_name), fused.get_submodule(bn_name)
        _replace(fused, conv_name, fuse_conv_bn_eval(conv, bn))
        _replace(fused, bn_name, nn.Identity())
    return FuseResult(fused, tuple(pairs))


def fused_structure(model: nn.Module, pairs: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> nn.Module:
    """Reshape a freshly built model in place into the structure `fuse_conv_bn` leaves, so that a fused
    state_dict loads into it: each listed conv gets a bias, each listed BN becomes nn.Identity."""
    for conv_name, bn_name in pairs:
        conv = model.get_submodule(conv_name)
        if not isinstance(conv, nn.Conv2d):
            raise ValueError(f"compression.pairs: {conv_name!r} is a {type(conv).__name__}, not a Conv2d")
        if conv.bias is None:
            conv.bias = nn.Parameter(torch.zeros(conv.out_channels))
        _replace(model, bn_name, nn.Identity())
    return model
