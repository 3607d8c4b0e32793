"""A deterministic, learnable generated set: class-specific oriented stripes with a class tint and noise."""

from __future__ import annotations

import hashlib
import math

import torch

from cnnray.config.data import DataSection
from cnnray.data.info import DatasetInfo, SplitArrays, TestArrays
from cnnray.data.sources.common import content_fingerprint, finish, held_out_arrays, info_from_arrays
from cnnray.data.split import stratified_split3

DEFAULT_CLASSES = 10


def generate(num_classes: int, per_class: int, size: int, channels: int, seed: int
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [N,C,size,size] images and int64 labels, a pure function of the arguments."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(num_classes).repeat_interleave(per_class)
    n = y.numel()
    # The class sets the stripe angle (jittered by a quarter of the spacing between classes), the frequency
    # family and the tint: learnable, yet not separable by one pixel.
    theta = math.pi * y / num_classes + (torch.rand(n, generator=g) - 0.5) * (0.5 * math.pi / num_classes)
    freq = 2.0 + (y % 3).float() + 0.5 * torch.rand(n, generator=g)
    phase = 2 * math.pi * torch.rand(n, generator=g)
    axis = torch.linspace(-0.5, 0.5, size)
    v, u = torch.meshgrid(axis, axis, indexing="ij")
    proj = u * theta.cos().view(n, 1, 1) + v * theta.sin().view(n, 1, 1)
    wave = torch.sin(2 * math.pi * freq.view(n, 1, 1) * proj + phase.view(n, 1, 1)).unsqueeze(1)
    c = torch.arange(channels).view(1, channels)
    tint = 0.6 + 0.4 * torch.cos(2 * math.pi * (y.view(n, 1) / num_classes + c / 3)).view(n, channels, 1, 1)
    noise = 0.08 * torch.randn((n, channels, size, size), generator=g)
    img = 0.5 + 0.35 * wave * tint + noise
    return img.mul_(255).round_().clamp_(0, 255).to(torch.uint8), y.to(torch.int64)


def _generate(cfg: DataSection) -> tuple[torch.Tensor, torch.Tensor, int]:
    k = cfg.num_classes or DEFAULT_CLASSES
    x, y = generate(k, cfg.samples_per_class, cfg.image_size, cfg.channels or 3, cfg.split_seed)
    return x, y, k


def _names(k: int) -> tuple[str, ...]:
    return tuple(f"class_{i}" for i in range(k))


def load(cfg: DataSection) -> SplitArrays:
    """Generate at data.image_size (3 channels unless data.channels=1), seeded by data.split_seed; train/val."""
    x, y, k = _generate(cfg)
    tr, va, _ = stratified_split3(y.numpy(), cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
    return finish(cfg, x[tr], y[tr], x[va], y[va], _names(k), native_channels=x.shape[1])


def _test(cfg: DataSection) -> tuple[torch.Tensor, torch.Tensor, int, str]:
    x, y, k = _generate(cfg)
    te = torch.from_numpy(stratified_split3(y.numpy(), cfg.val_fraction, cfg.test_fraction, cfg.split_seed)[2])
    return x[te], y[te], k, content_fingerprint("synthetic-test", x[te], y[te])


def load_test(cfg: DataSection) -> TestArrays | None:
    """The held-out split; read only through cnnray.data.test_split."""
    x, y, k, fp = _test(cfg)
    return held_out_arrays(cfg, x, y, _names(k), fp, native_channels=x.shape[1])


def describe(cfg: DataSection) -> DatasetInfo:
    """Generates the set (cheap) to fingerprint its bytes and measure its stats."""
    x, y, _ = _generate(cfg)
    fp = hashlib.sha256(b"synthetic\n" + x.numpy().tobytes() + y.numpy().tobytes()).hexdigest()
    tx, _, _, tfp = _test(cfg)
    return info_from_arrays(cfg, load(cfg), fp, num_test=int(tx.shape[0]), test_fingerprint=tfp)
