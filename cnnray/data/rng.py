"""Seeded CPU generators for loaders and transforms: order and augmentation depend only on (seed, epoch)."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch

_MIX = 0x9E3779B97F4A7C15  # golden-ratio constant: spreads (seed, epoch, stream) over the 64-bit seed space


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """A CPU generator that depends only on (seed, epoch, stream)."""
    return torch.Generator().manual_seed((seed * _MIX + epoch * 1_000_003 + stream * 7919) % (2**63))


def accepts_generator(fn: Callable[..., object]) -> bool:
    """Whether a transform takes a `generator=` keyword (BatchTransform does; plain callables may not)."""
    try:
        return "generator" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
