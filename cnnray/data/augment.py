"""Batched augmentations on float [B,C,H,W] in [0,1]; random numbers drawn on the CPU (reproducible on any device)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cnnray.data.convert import LUMA


def uniform(n: int, low: float, high: float, g: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """n uniform samples in [low, high) from `g` (or the global CPU RNG), moved to `device`."""
    return (torch.rand(n, generator=g) * (high - low) + low).to(device)


def random_crop(x: torch.Tensor, padding: int, g: torch.Generator | None = None) -> torch.Tensor:
    """Zero-pad by `padding` and take a random HxW window per image (gather, no Python loop)."""
    return random_crop_flip(x, padding, False, g) if padding > 0 else x


def random_crop_flip(x: torch.Tensor, padding: int, hflip: bool, g: torch.Generator | None = None) -> torch.Tensor:
    """`random_crop` then `random_hflip` (same draws, same result) as one gather: works on uint8, so the
    memory traffic is a quarter of float's, and the zero padding is never materialized twice."""
    b, c, h, w = x.shape
    hp, wp = h + 2 * padding, w + 2 * padding
    xp = F.pad(x, (padding, padding, padding, padding)) if padding > 0 else x
    if padding > 0:
        oy = torch.randint(0, 2 * padding + 1, (b,), generator=g).to(x.device)
        ox = torch.randint(0, 2 * padding + 1, (b,), generator=g).to(x.device)
    else:
        oy = ox = torch.zeros(b, dtype=torch.long, device=x.device)
    cols = torch.arange(w, device=x.device).expand(b, w)
    if hflip:
        flip = uniform(b, 0, 1, g, x.device) < 0.5
        cols = torch.where(flip[:, None], w - 1 - cols, cols)
    rows = oy[:, None] + torch.arange(h, device=x.device)
    flat = (rows[:, :, None] * wp + (ox[:, None] + cols)[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    return xp.reshape(b, c, hp * wp).gather(2, flat).view(b, c, h, w)


def random_hflip(x: torch.Tensor, g: torch.Generator | None = None, p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right with probability p."""
    flip = uniform(x.shape[0], 0, 1, g, x.device) < p
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)


def random_affine(x: torch.Tensor, degrees: float, translate: float, scale: tuple[float, float],
                  g: torch.Generator | None = None) -> torch.Tensor:
    """Rotate by U(-degrees, degrees), shift by U(-translate, translate) of the size, zoom by U(scale); zero fill."""
    b = x.shape[0]
    angle = uniform(b, -degrees, degrees, g, x.device) * (math.pi / 180)
    s = uniform(b, scale[0], scale[1], g, x.device)
    # affine_grid maps output to input coordinates in [-1, 1], so the matrix is the inverse transform and
    # a shift of `translate` of the image is 2 * translate in these units.
    t = torch.stack([uniform(b, -translate, translate, g, x.device),
                     uniform(b, -translate, translate, g, x.device)], 1) * 2
    cos, sin = angle.cos() / s, angle.sin() / s
    inv = torch.stack([torch.stack([cos, sin], 1), torch.stack([-sin, cos], 1)], 1)  # R(-a) / s
    theta = torch.cat([inv, -(inv @ t.unsqueeze(2))], 2).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _gray(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    w = torch.tensor(LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """RGB [B,3,H,W] in [0,1] -> HSV with every channel in [0,1] (hue in turns of the colour wheel)."""
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    delta = maxc - minc
    sat = torch.where(maxc > 0, delta / maxc.clamp(min=1e-12), torch.zeros_like(maxc))
    d = delta.clamp(min=1e-12)  # grey pixels (delta 0) get hue 0; the guard only avoids 0/0
    hue = torch.where(maxc == r, (g - b) / d, torch.where(maxc == g, (b - r) / d + 2, (r - g) / d + 4))
    hue = torch.where(delta > 0, (hue / 6) % 1.0, torch.zeros_like(hue))
    return torch.stack([hue, sat, maxc], 1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """HSV [B,3,H,W] with channels in [0,1] -> RGB in [0,1]."""
    h, s, v = x.unbind(1)
    # The standard closed form: channel n is v - v*s*clamp(min(k, 4-k), 0, 1) with k = (n + 6h) mod 6.
    out = []
    for n in (5, 3, 1):
        k = (n + h * 6) % 6
        out.append(v - v * s * torch.minimum(k, 4 - k).clamp(0, 1))
    return torch.stack(out, 1)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate each RGB image's hue by `shift` [B] turns (like torchvision's adjust_hue); 1-channel images unchanged.

    Grey has no hue, so a hue shift of a 1-channel image is the identity (torchvision does the same).
    """
    if x.shape[1] == 1:
        return x
    if x.shape[1] != 3:
        raise ValueError(f"hue shift needs 1- or 3-channel images, got {x.shape[1]} channels")
    hsv = rgb_to_hsv(x)
    hue = (hsv[:, 0] + shift.view(-1, 1, 1).to(x.dtype)) % 1.0
    return hsv_to_rgb(torch.stack([hue, hsv[:, 1], hsv[:, 2]], 1))


def color_jitter(x: torch.Tensor, brightness: float, contrast: float, saturation: float,
                 g: torch.Generator | None = None, hue: float = 0.0) -> torch.Tensor:
    """Scale brightness, contrast (towards the mean grey) and saturation (towards grey) by U(1-v, 1+v) per image,
    then shift the hue by U(-hue, hue) turns (RGB only: grey has no hue)."""
    b = x.shape[0]

    def factor(v: float) -> torch.Tensor:
        return uniform(b, max(0.0, 1 - v), 1 + v, g, x.device).view(b, 1, 1, 1)

    if brightness > 0:
        x = (x * factor(brightness)).clamp_(0, 1)
    if contrast > 0:
        mean = _gray(x).mean((1, 2, 3), keepdim=True)
        x = (mean + factor(contrast) * (x - mean)).clamp_(0, 1)
    if saturation > 0 and x.shape[1] == 3:
        gray = _gray(x)
        x = (gray + factor(saturation) * (x - gray)).clamp_(0, 1)
    if hue > 0 and x.shape[1] == 3:
        x = adjust_hue(x, uniform(b, -hue, hue, g, x.device)).clamp_(0, 1)
    return x


def random_erasing(x: torch.Tensor, p: float, g: torch.Generator | None = None,
                   area: tuple[float, float] = (0.02, 0.33), ratio: tuple[float, float] = (0.3, 3.3)) -> torch.Tensor:
    """With probability p per image, set one random rectangle to 0 (the mean, once normalized)."""
    b, _, h, w = x.shape
    frac = uniform(b, area[0], area[1], g, x.device)
    r = uniform(b, math.log(ratio[0]), math.log(ratio[1]), g, x.device).exp()
    eh = (frac * r).sqrt().mul(h).round().clamp(1, h)
    ew = (frac / r).sqrt().mul(w).round().clamp(1, w)
    top = (uniform(b, 0, 1, g, x.device) * (h - eh + 1)).floor()
    left = (uniform(b, 0, 1, g, x.device) * (w - ew + 1)).floor()
    on = uniform(b, 0, 1, g, x.device) < p
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    box = ((rows >= top.view(b, 1, 1)) & (rows < (top + eh).view(b, 1, 1))
           & (cols >= left.view(b, 1, 1)) & (cols < (left + ew).view(b, 1, 1)) & on.view(b, 1, 1))
    return x.masked_fill(box.unsqueeze(1), 0.0)
