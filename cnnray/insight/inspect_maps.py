"""Feature maps of chosen layers on validation images, beside the classic kernels' responses to the same images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnray.insight.convolution import edge_kernels
from cnnray.insight.figures import _image, _save, plt
from cnnray.insight.inspect_common import capture_outputs, display_image, first_conv

CHANNELS = 8
CLASSIC = ("sobel_x", "sobel_y", "laplacian", "gaussian_blur")


def default_layers(model: nn.Module) -> list[str]:
    """The stem conv and the outputs of layer1 and layer2 (those the model has)."""
    names = dict(model.named_modules())
    return [first_conv(model)[0]] + [n for n in ("layer1", "layer2") if n in names]


def classic_responses(images: Tensor) -> dict[str, Tensor]:
    """{kernel name: (N, H, W) response} of the classic 3x3 kernels on the grey images in [0, 1]."""
    grey = images.float().mean(1, keepdim=True) / 255.0
    kernels = edge_kernels()
    weight = torch.stack([kernels[k] for k in CLASSIC]).unsqueeze(1)
    maps = F.conv2d(grey, weight, padding=1)
    return {k: maps[:, i] for i, k in enumerate(CLASSIC)}


def feature_maps(model: nn.Module, x: Tensor, layers: list[str]) -> dict[str, Tensor]:
    """{layer: (N, C, h, w) output} for the normalized batch `x`."""
    outputs, _ = capture_outputs(model, layers, x)
    bad = [n for n in layers if not (isinstance(outputs.get(n), Tensor) and outputs[n].dim() == 4)]
    if bad:
        raise ValueError(f"--layers: {', '.join(bad)} do not output a 4-D feature map (N, C, H, W)")
    return outputs


def plot_layer_maps(layer: str, maps: Tensor, images: Tensor, classic: dict[str, Tensor], path: Path,
                    title: str) -> Path:
    """Rows: images; columns: input, the layer's first channels, then the classic kernels' responses."""
    n, channels = images.shape[0], min(CHANNELS, maps.shape[1])
    cols = 1 + channels + 1 + len(classic)
    fig, axes = plt.subplots(n, cols, figsize=(1.45 * cols + 1.5, 1.55 * n + 1.4), squeeze=False)
    shown = maps[:, :channels]
    lo, hi = float(shown.min()), float(shown.max())
    cmax = max(float(c.abs().max()) for c in classic.values()) or 1.0
    learned = responses = None
    for i in range(n):
        _image(axes[i, 0], display_image(images[i]), f"input {i}", "gray")
        for c in range(channels):
            learned = _image(axes[i, 1 + c], shown[i, c], f"ch {c}", "viridis", vmin=lo, vmax=hi)
        axes[i, 1 + channels].axis("off")
        for j, (name, m) in enumerate(classic.items()):
            responses = _image(axes[i, 2 + channels + j], m[i], name, "RdBu_r", vmin=-cmax, vmax=cmax)
    fig.colorbar(learned, ax=axes[:, 1:1 + channels].ravel().tolist(), shrink=0.7, location="left", pad=0.02,
                 label=f"activation of '{layer}'")
    fig.colorbar(responses, ax=axes[:, 2 + channels:].ravel().tolist(), shrink=0.7,
                 label="classic kernel response (grey image in [0, 1])")
    h, w = maps.shape[-2:]
    fig.suptitle(f"{title}\nlayer '{layer}': first {channels} of {maps.shape[1]} channels ({h}x{w}, one colour scale) "
                 f"| right: fixed 3x3 kernels on the same images (red +, blue -)", fontsize=10)
    return _save(fig, path)


def summarize_maps(maps: dict[str, Tensor]) -> dict[str, Any]:
    """Shape and mean/max activation of each captured layer, for summary.json."""
    return {n: {"shape": list(m.shape[1:]), "mean": round(float(m.mean()), 5), "max": round(float(m.max()), 5)}
            for n, m in maps.items()}
