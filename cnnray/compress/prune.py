"""Structured channel pruning of cnnray's residual blocks: whole channels go, so parameters, FLOPs and the
state_dict shrink (unlike unstructured pruning, which only writes zeros; `sparsity` reports those honestly).

Only channels inside a residual branch are removed: in a BasicBlock the output channels of conv1 and the
matching inputs of conv2, in a Bottleneck also conv2 -> conv3. The residual stream (block outputs,
shortcuts, the stem) and the attention on the block output keep their widths, so no block outside the
one being pruned changes. As in `fuse.py`, the chains come from the data flow, not attribute names: each
block is traced with torch.fx (its direct children opaque), and a chain is a plain conv whose output runs
through single-consumer modules (norm, activation, DropBlock, pooling) into another plain conv. Those
modules in between are sliced with the producer (`channel_slice.slice_channels`).

Every kept count and score is taken on the source weights before anything is sliced (one-shot pruning).
Kept per conv: max(min_channels, round((1 - amount) * C)), rounded up to a multiple of the groups of a
GroupNorm in between when it has several channels per group (one channel per group, as cnnray's 'group'
norm at small widths, stays exact with fewer groups). Norms over all channels of a position or sample
('layer', 'layer_channels', the LN part of 'switchable') are sliced but then average over fewer channels.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, fx, nn
from torch.nn.modules.conv import _ConvNd

from cnnray.compress.channel_slice import channel_step, slice_channels, slice_in, slice_out
from cnnray.models.blocks import BasicBlock, Bottleneck

CRITERIA = ("l1", "bn_gamma")
PROBE_SIZE = 32  # input side of the check that the pruned model still runs


@dataclass(frozen=True)
class PruneResult:
    """The pruned copy, the kept output channels of each pruned conv, and the channels removed in total."""

    model: nn.Module
    channels: dict[str, int]
    removed: int

    def step(self, amount: float, criterion: str) -> dict[str, Any]:
        """The model card's compression step: what `pruned_structure` needs to rebuild the shapes."""
        return {"method": "prune", "amount": float(amount), "criterion": str(criterion),
                "channels": {name: int(k) for name, k in self.channels.items()}}


@dataclass(frozen=True)
class Chain:
    """A conv whose output channels can go, the modules they pass through, and the conv that reads them."""

    producer: str  # qualified names in the model
    between: tuple[str, ...]
    consumer: str


class _ChildTracer(fx.Tracer):
    """Traces one block: each of its direct children is a single opaque call."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return "." not in module_qualified_name


def _plain_conv(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.groups == 1


def _check_not_shared(block: nn.Module, between: list[str], calls: dict[str, int], prefix: str) -> None:
    for name in between:
        m = block.get_submodule(name)
        if calls[name] > 1 and next(m.parameters(), next(m.buffers(), None)) is not None:
            # Weight sharing: slicing it for this chain would break its other call sites.
            raise ValueError(f"{prefix}{name}: called {calls[name]} times in its block and holds state; "
                             "cannot prune the channels it sees")


def _block_chains(block: nn.Module, prefix: str) -> list[Chain]:
    graph = _ChildTracer().trace(block)
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    chains = []
    for node in graph.nodes:
        if node.op != "call_module" or not _plain_conv(block.get_submodule(node.target)) or calls[node.target] != 1:
            continue
        between, cur = [], node
        while len(cur.users) == 1:
            user = next(iter(cur.users))
            if user.op != "call_module" or user.args != (cur,) or user.kwargs:
                break  # an addition, a concatenation, ...: the channels leave the branch
            m = block.get_submodule(user.target)
            if _plain_conv(m):
                if calls[user.target] == 1:
                    _check_not_shared(block, between, calls, prefix)
                    chains.append(Chain(f"{prefix}{node.target}", tuple(f"{prefix}{n}" for n in between),
                                        f"{prefix}{user.target}"))
                break
            between.append(user.target)
            cur = user
    return chains


def prunable_chains(model: nn.Module) -> list[Chain]:
    """The producer conv -> consumer conv chains inside each BasicBlock / Bottleneck of `model`."""
    chains = []
    for name, m in model.named_modules():
        if isinstance(m, (BasicBlock, Bottleneck)):
            chains.extend(_block_chains(m, f"{name}." if name else ""))
    return chains


def _check_amount(amount: object) -> float:
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not 0.0 < amount < 1.0:
        raise ValueError(f"amount: expected a fraction of channels to remove in (0, 1), got {amount!r}")
    return float(amount)


def _kept(channels: int, amount: float, min_channels: int, step: int) -> int:
    k = min(channels, max(min_channels, round((1.0 - amount) * channels)))
    return min(channels, max(step, -(-k // step) * step))  # up to a multiple of step: keep more, never fewer


def _scores(model: nn.Module, chain: Chain, criterion: str) -> Tensor:
    conv = model.get_submodule(chain.producer)
    if criterion == "l1":
        return conv.weight.detach().abs().flatten(1).sum(1)
    after = chain.between[0] if chain.between else chain.consumer
    weight = getattr(model.get_submodule(after), "weight", None)
    if not isinstance(weight, Tensor) or tuple(weight.shape) != (conv.out_channels,):
        raise ValueError(f"criterion 'bn_gamma': {after} right after {chain.producer} has no per-channel affine "
                         f"weight ({type(model.get_submodule(after)).__name__}); use 'l1'")
    return weight.detach().abs()


def _apply(model: nn.Module, chain: Chain, keep: Tensor, channels: int) -> None:
    slice_out(model.get_submodule(chain.producer), keep)
    for name in chain.between:
        slice_channels(model.get_submodule(name), keep, channels, name)
    slice_in(model.get_submodule(chain.consumer), keep)


@torch.no_grad()
def _check_runs(model: nn.Module) -> None:
    first = next(m for m in model.modules() if isinstance(m, _ConvNd))  # the stem: its input is the image
    param = next(model.parameters())
    x = torch.zeros(1, first.in_channels, PROBE_SIZE, PROBE_SIZE, device=param.device, dtype=param.dtype)
    try:
        model(x)
    except Exception as e:  # any failure here is a slicing bug or an unsupported layer: say which
        raise ValueError(f"the pruned model does not run: {type(e).__name__}: {e}") from e


@torch.no_grad()
def prune_channels(model: nn.Module, amount: float, criterion: str = "l1", *, min_channels: int = 2) -> PruneResult:
    """An eval-mode copy of `model` with `amount` of each branch conv's output channels removed (those with the
    smallest `criterion`); `model` is untouched."""
    amount = _check_amount(amount)
    if criterion not in CRITERIA:
        raise ValueError(f"criterion: unknown {criterion!r}; choose one of {', '.join(CRITERIA)}")
    if isinstance(min_channels, bool) or not isinstance(min_channels, int) or min_channels < 1:
        raise ValueError(f"min_channels: expected an integer >= 1, got {min_channels!r}")
    pruned = copy.deepcopy(model).eval()
    chains = prunable_chains(pruned)
    if not chains:
        raise ValueError(f"{type(model).__name__} has no prunable block: channel pruning needs cnnray BasicBlock / "
                         "Bottleneck residual blocks with a conv -> conv branch")
    plan = []
    for chain in chains:  # all decisions on the source weights, before any slicing
        channels = model.get_submodule(chain.producer).out_channels
        step = 1
        for name in chain.between:
            step = math.lcm(step, channel_step(pruned.get_submodule(name), channels))
        k = _kept(channels, amount, min_channels, step)
        order = torch.argsort(_scores(pruned, chain, criterion), descending=True, stable=True)
        plan.append((chain, order[:k].sort().values, channels))
    for chain, keep, channels in plan:
        if len(keep) < channels:
            _apply(pruned, chain, keep, channels)
    _check_runs(pruned)
    kept = {chain.producer: len(keep) for chain, keep, _ in plan}
    return PruneResult(pruned, kept, sum(channels - len(keep) for _, keep, channels in plan))


@torch.no_grad()
def pruned_structure(model: nn.Module, channels: dict[str, int]) -> nn.Module:
    """Reshape a freshly built `model` in place into what `prune_channels` left (the first k channels of each
    listed conv), so that the pruned state_dict loads with strict=True; the values are placeholders."""
    chains = {chain.producer: chain for chain in prunable_chains(model)}
    for name, k in channels.items():  # all checked before any is applied: no half-reshaped model on bad input
        if name not in chains:
            raise ValueError(f"compression.channels: {name!r} is not a prunable conv of this model "
                             f"(prunable: {', '.join(chains) or 'none'})")
        total = model.get_submodule(name).out_channels
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= total:
            raise ValueError(f"compression.channels: {name}: expected 1..{total} kept channels, got {k!r}")
    for name, k in channels.items():
        total = model.get_submodule(name).out_channels
        if k < total:
            _apply(model, chains[name], torch.arange(k), total)
    return model


def sparsity(model: nn.Module) -> float:
    """Fraction of exactly-zero weights in the conv and linear layers (biases not counted)."""
    zeros = total = 0
    for m in model.modules():
        if isinstance(m, (_ConvNd, nn.Linear)):
            zeros += int((m.weight == 0).sum())
            total += m.weight.numel()
    if total == 0:
        raise ValueError(f"{type(model).__name__} has no conv or linear weights to measure")
    return zeros / total
