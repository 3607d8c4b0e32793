"""Tensor-level conversions of uint8 image batches: resize, channel count, per-channel statistics."""

from __future__ import annotations

import torch
import torch.nn.functional as F

LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, the weights PIL's convert('L') uses
_CHUNK = 2048  # images per chunk: bounds the float copy a resize makes


def resize_uint8(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize uint8 [N,C,H,W] to size x size (bilinear, antialiased when shrinking)."""
    if x.shape[-2:] == (size, size):
        return x
    out = torch.empty((x.shape[0], x.shape[1], size, size), dtype=torch.uint8)
    for i in range(0, x.shape[0], _CHUNK):
        part = F.interpolate(x[i:i + _CHUNK].float(), size=(size, size), mode="bilinear",
                             align_corners=False, antialias=True)
        out[i:i + _CHUNK] = part.round_().clamp_(0, 255).to(torch.uint8)
    return out


def to_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert uint8 [N,C,H,W] to 1 (luma) or 3 (repeat) channels."""
    have = x.shape[1]
    if have == channels:
        return x
    if have == 1 and channels == 3:
        return x.expand(-1, 3, -1, -1).contiguous()
    if have == 3 and channels == 1:
        w = torch.tensor(LUMA).view(1, 3, 1, 1)
        return (x.float() * w).sum(1, keepdim=True).round_().clamp_(0, 255).to(torch.uint8)
    raise ValueError(f"cannot convert {have} channels to {channels}")


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (0-1 scale) of uint8 [N,C,H,W], accumulated in float64 chunks."""
    c = x.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    sq = torch.zeros(c, dtype=torch.float64)
    for i in range(0, x.shape[0], _CHUNK):
        part = x[i:i + _CHUNK].double().div_(255)
        total += part.sum((0, 2, 3))
        sq += part.pow(2).sum((0, 2, 3))
    n = max(1, x.shape[0] * x.shape[2] * x.shape[3])
    mean = total / n
    std = (sq / n - mean.pow(2)).clamp_min(1e-12).sqrt()
    return tuple(round(float(v), 6) for v in mean), tuple(round(float(v), 6) for v in std)


def convert_stats(mean: tuple[float, ...], std: tuple[float, ...], channels: int
                  ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Stats after a channel conversion; 3->1 weights std like mean (channels of photos are highly correlated)."""
    if len(mean) == channels:
        return tuple(mean), tuple(std)
    if len(mean) == 1 and channels == 3:
        return tuple(mean) * 3, tuple(std) * 3
    if len(mean) == 3 and channels == 1:
        return ((round(sum(w * m for w, m in zip(LUMA, mean)), 6),),
                (round(sum(w * s for w, s in zip(LUMA, std)), 6),))
    raise ValueError(f"cannot convert stats of {len(mean)} channels to {channels}")
