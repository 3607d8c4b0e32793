"""A trained model's first-layer filters beside a Gabor bank of the same size, with each filter's best match."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnray.insight.figures import _image, _save, plt
from cnnray.insight.inspect_common import first_conv
from cnnray.layers.filters import gabor_kernel

ORIENTATIONS = 8


def gabor_reference(size: int, orientations: int = ORIENTATIONS) -> dict[str, Any]:
    """Gabor kernels of `size` at `orientations` angles x 2 wavelengths, scaled to the kernel size."""
    # Wavelengths a kernel this small can hold: about half and the whole of its width (2 and 4 px for 3x3).
    short = max(2.0, round(size * 4 / 7))
    wavelengths = [short, 2 * short]
    sigma = max(1.0, size * 2 / 7)
    degrees = [180.0 * i / orientations for i in range(orientations)]
    kernels = torch.stack([torch.stack([gabor_kernel(size, sigma, math.radians(d), lam) for d in degrees])
                           for lam in wavelengths])  # (wavelengths, orientations, size, size)
    return {"kernels": kernels, "orientations_deg": degrees, "wavelengths_px": wavelengths, "sigma": sigma}


def match_filters(model: nn.Module, orientations: int = ORIENTATIONS) -> dict[str, Any]:
    """The first conv's filters (input channels averaged) and, per filter, the Gabor with max |cosine similarity|."""
    name, conv = first_conv(model)
    filters = conv.weight.detach().float().cpu().mean(1)  # (out, k, k): one picture per filter
    size = filters.shape[-1]
    ref = gabor_reference(size, orientations)
    bank = ref["kernels"].flatten(0, 1).flatten(1)  # (wavelengths * orientations, k*k)
    cos = F.normalize(filters.flatten(1), dim=1) @ F.normalize(bank, dim=1).t()
    best = cos.abs().argmax(1)
    matches = []
    for i, b in enumerate(best.tolist()):
        w, o = divmod(b, orientations)
        # The sign only says whether the filter is the Gabor or its negative: |cosine| is the match.
        matches.append({"filter": i, "orientation_deg": ref["orientations_deg"][o],
                        "wavelength_px": ref["wavelengths_px"][w], "cosine": round(float(cos[i, b]), 4)})
    return {"layer": name, "kernel_size": size, "filters": filters, "gabor": ref, "matches": matches,
            "in_channels": conv.in_channels, "out_channels": conv.out_channels}


def plot_filters(result: dict[str, Any], path: Path, title: str) -> Path:
    """Learned filters (a grid, each titled with its best Gabor match) left, the Gabor bank right."""
    filters, matches, ref = result["filters"], result["matches"], result["gabor"]
    n = filters.shape[0]
    cols = min(8, n)
    rows = math.ceil(n / cols)
    gabor = ref["kernels"]
    fig = plt.figure(figsize=(1.15 * (cols + gabor.shape[1]) + 2.0, 1.6 * max(rows, gabor.shape[0]) + 1.8))
    grid = fig.add_gridspec(max(rows, gabor.shape[0]), cols + gabor.shape[1] + 1, wspace=0.35, hspace=0.7,
                         top=0.72)
    vmax = float(filters.abs().max()) or 1.0
    shown = None
    for i in range(n):
        m = matches[i]
        shown = _image(fig.add_subplot(grid[i // cols, i % cols]), filters[i],
                       f"#{i}: {m['orientation_deg']:.0f}°, λ{m['wavelength_px']:g}\n|cos| {abs(m['cosine']):.2f}",
                       "RdBu_r", vmin=-vmax, vmax=vmax)
    gmax = float(gabor.abs().max())
    for w, lam in enumerate(ref["wavelengths_px"]):
        for o, deg in enumerate(ref["orientations_deg"]):
            _image(fig.add_subplot(grid[w, cols + 1 + o]), gabor[w, o], f"Gabor {deg:.0f}°\nλ = {lam:g} px",
                   "RdBu_r", vmin=-gmax, vmax=gmax)
    if shown is not None:
        fig.colorbar(shown, ax=fig.axes[:n], location="bottom", shrink=0.8, aspect=30,
                     label="learned weight (mean over input channels)")
    size = result["kernel_size"]
    fig.suptitle(f"{title}\nfirst conv '{result['layer']}': {n} learned {size}x{size} filters (left; title: best "
                 f"Gabor orientation, wavelength λ and |cosine similarity|) vs a Gabor bank (right; red +, blue -)",
                 fontsize=10)
    return _save(fig, path)
