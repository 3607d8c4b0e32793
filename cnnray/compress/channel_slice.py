"""Slicing a module's channel dimension in place: the building block of structured channel pruning.

`slice_channels(module, keep, channels)` keeps the channels `keep` (sorted indices into `channels`) of
a module that maps a `channels`-wide feature map to one of the same width (norms, per-channel
activations, depthwise convs, parametric poolings), recursing into its submodules. Which tensor dim
holds the channels is inferred from shapes, so every guess is checked: a tensor or integer attribute
of the channel count that no rule explains raises ValueError rather than being left stale.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.modules.conv import _ConvNd

# Integer attributes that count channels (norms, nn.PReLU); convs, linears and GroupNorm's groups have own rules.
_COUNTS = ("num_features", "num_parameters", "num_channels")
_OWNED = ("in_channels", "out_channels", "groups", "in_features", "out_features", "num_groups")


def _set(module: nn.Module, name: str, old: Tensor, index: Tensor, dim: int) -> None:
    new = old.detach().index_select(dim, index.to(old.device)).clone()
    if isinstance(old, nn.Parameter):
        new = nn.Parameter(new, requires_grad=old.requires_grad)
    setattr(module, name, new)


def slice_out(conv: nn.Module, keep: Tensor) -> None:
    """Keep the output channels `keep` of a plain (groups=1) conv: its filters and bias."""
    _check_plain(conv)
    _set(conv, "weight", conv.weight, keep, 0)
    if conv.bias is not None:
        _set(conv, "bias", conv.bias, keep, 0)
    conv.out_channels = len(keep)


def slice_in(conv: nn.Module, keep: Tensor) -> None:
    """Keep the input channels `keep` of a plain (groups=1) conv."""
    _check_plain(conv)
    _set(conv, "weight", conv.weight, keep, 1)
    conv.in_channels = len(keep)


def _check_plain(conv: nn.Module) -> None:
    if not isinstance(conv, _ConvNd) or conv.groups != 1:
        raise ValueError(f"{type(conv).__name__}: only a plain convolution (groups=1) can be pruned here")


def channel_step(module: nn.Module, channels: int) -> int:
    """The kept count must be a multiple of this: GroupNorms over `channels` with several channels per group
    keep their number of groups, so the kept channels must fill them evenly."""
    step = 1
    for m in module.modules():
        if isinstance(m, nn.GroupNorm) and m.num_channels == channels and 1 < m.num_groups < channels:
            step = math.lcm(step, m.num_groups)
    return step


def _conv_weight(m: _ConvNd, keep: Tensor, channels: int, name: str) -> None:
    k, w = len(keep), m.weight
    if m.groups == m.in_channels == m.out_channels == channels:  # depthwise: one filter per channel
        _set(m, "weight", w, keep, 0)
        m.in_channels = m.out_channels = m.groups = k
        return
    if m.groups != 1:
        raise ValueError(f"{name}: grouped conv (groups={m.groups}) over {channels} channels; cannot slice it")
    if m.in_channels % channels == 0:
        # Input of m side-by-side copies of these channels (MixedPool2d's cat([max, avg])); m=1 is the usual case.
        copies = m.in_channels // channels
        _set(m, "weight", w, torch.cat([keep + j * channels for j in range(copies)]), 1)
        m.in_channels = copies * k
    if m.out_channels == channels:
        _set(m, "weight", m.weight, keep, 0)
        m.out_channels = k


def _linear_weight(m: nn.Linear, keep: Tensor, channels: int) -> None:
    if m.in_features == channels:
        _set(m, "weight", m.weight, keep, 1)
        m.in_features = len(keep)
    if m.out_features == channels:
        _set(m, "weight", m.weight, keep, 0)
        m.out_features = len(keep)


def _group_norm(m: nn.GroupNorm, k: int, channels: int, name: str) -> None:
    if m.num_groups == channels:  # one channel per group stays so: exact
        m.num_groups = k
    elif k % m.num_groups:
        raise ValueError(f"{name}: GroupNorm with {m.num_groups} groups cannot hold {k} channels "
                         f"(keep a multiple of {m.num_groups})")


def _fix_counts(m: nn.Module, k: int, channels: int, name: str, sliced: bool) -> None:
    # Also without sliced state: a norm with affine=False still checks its count against the input.
    for attr in _COUNTS:
        if getattr(m, attr, None) == channels:
            setattr(m, attr, k)
    if getattr(m, "normalized_shape", None) == (channels,):
        m.normalized_shape = (k,)
    if not sliced:
        return
    # Next to per-channel state, a count we do not know the meaning of would go stale silently; refuse instead.
    for attr, value in vars(m).items():
        if type(value) is int and value == channels and not attr.startswith("_") and attr not in _OWNED:
            raise ValueError(f"{name}: attribute {attr}={value} equals the channel count; unknown how to update it")


@torch.no_grad()
def slice_channels(module: nn.Module, keep: Tensor, channels: int, name: str = "") -> None:
    """Keep channels `keep` of `channels` in `module` and its submodules, in place; ValueError naming the module
    for state that cannot be sliced (or a GroupNorm whose groups the kept count would not fill)."""
    for sub_name, m in module.named_modules():
        qual = ".".join(p for p in (name, sub_name) if p) or type(m).__name__
        touched = False
        if isinstance(m, _ConvNd) and (m.in_channels % channels == 0 or m.out_channels == channels):
            _conv_weight(m, keep, channels, qual)
            touched = True
        elif isinstance(m, nn.Linear) and channels in (m.in_features, m.out_features):
            _linear_weight(m, keep, channels)
            touched = True
        if isinstance(m, nn.GroupNorm) and m.num_channels == channels:
            _group_norm(m, len(keep), channels, qual)  # before slicing: fail without half-sliced state
        tensors = [*m.named_parameters(recurse=False), *m.named_buffers(recurse=False)]
        for tname, t in tensors:
            if t is None or t.ndim == 0 or (touched and tname == "weight"):
                continue
            if t.shape[0] == channels:
                _set(m, tname, t, keep, 0)
                touched = True
            if channels in t.shape[1:]:
                raise ValueError(f"{qual}: {tname} of shape {tuple(t.shape)} has a channel-sized dim other "
                                 f"than the first; unknown how to slice it")
        _fix_counts(m, len(keep), channels, qual, touched)
