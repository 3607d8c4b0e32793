"""CBAM's channel weights and spatial attention maps on validation images, read from the modules' own gates."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnray.insight.figures import _image, _save, plt
from cnnray.insight.inspect_common import display_image
from cnnray.layers.cbam import CBAM


def cbam_modules(model: nn.Module) -> list[str]:
    """Names of every CBAM module, in definition order."""
    return [n for n, m in model.named_modules() if isinstance(m, CBAM)]


def cbam_attention(model: nn.Module, x: Tensor) -> dict[str, dict[str, Tensor]]:
    """{module: {'channel': (N, C), 'spatial': (N, 1, h, w)}} for the normalized batch `x`."""
    modules = dict(model.named_modules())
    inputs: dict[str, Tensor] = {}
    handles = [modules[n].register_forward_hook(lambda _m, args, _out, n=n: inputs.__setitem__(n, args[0].detach()))
               for n in cbam_modules(model)]
    try:
        with torch.no_grad():
            model(x)
            out = {}
            for name, feat in inputs.items():
                cbam = modules[name]
                channel = cbam.channel.attention(feat)
                # The spatial gate sees the channel-refined map, as in CBAM's forward.
                spatial = cbam.spatial.attention(feat * channel.to(feat.dtype))
                out[name] = {"channel": channel.flatten(1).float(), "spatial": spatial.float()}
    finally:
        for h in handles:
            h.remove()
    return out


def plot_channel_weights(att: dict[str, dict[str, Tensor]], path: Path, title: str) -> Path:
    """One bar chart per CBAM module: mean channel weight over the images, with the std as error bars."""
    names = list(att)
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows + 1.0), squeeze=False)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.ravel(), names):
        w = att[name]["channel"]
        mean, std = w.mean(0).numpy(), w.std(0).numpy() if w.shape[0] > 1 else None
        ax.bar(range(len(mean)), mean, yerr=std, color="tab:blue", ecolor="gray", capsize=1,
               label=f"mean over {w.shape[0]} images" + (" (± std)" if std is not None else ""))
        ax.axhline(0.5, color="crimson", ls="--", lw=1, label="0.5 (gate neither opens nor closes)")
        ax.set(title=name, xlabel="channel", ylabel="channel weight sigmoid(.)", ylim=(0, 1))
        ax.legend(fontsize=6, loc="lower right")
    fig.suptitle(f"{title}\nCBAM channel attention: the weight each channel is multiplied by", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_spatial_maps(att: dict[str, dict[str, Tensor]], images: Tensor, path: Path, title: str) -> Path:
    """Rows: images; columns: input, then each CBAM module's spatial gate upsampled and overlaid on it."""
    names, n = list(att), images.shape[0]
    size = images.shape[-2:]
    fig, axes = plt.subplots(n, len(names) + 1, figsize=(1.7 * (len(names) + 1) + 1.2, 1.8 * n + 1.2), squeeze=False)
    shown = None
    for j, name in enumerate(names):
        up = F.interpolate(att[name]["spatial"], size=size, mode="bilinear", align_corners=False)[:, 0]
        for i in range(n):
            ax = axes[i, j + 1]
            _image(ax, display_image(images[i]), f"{name}\n({tuple(att[name]['spatial'].shape[-2:])})", "gray")
            shown = ax.imshow(up[i].numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
    for i in range(n):
        _image(axes[i, 0], display_image(images[i]), f"input {i}", "gray")
    fig.colorbar(shown, ax=axes.ravel().tolist(), shrink=0.7, label="spatial attention (0 = suppressed, 1 = kept)")
    fig.suptitle(f"{title}\nCBAM spatial attention, upsampled to the input and overlaid (map size in brackets)",
                 fontsize=10)
    return _save(fig, path)


def summarize_attention(att: dict[str, dict[str, Tensor]]) -> dict[str, Any]:
    """Mean channel weights and spatial-map statistics per CBAM module, for summary.json."""
    return {n: {"channels": a["channel"].shape[1],
                "mean_channel_weights": [round(v, 4) for v in a["channel"].mean(0).tolist()],
                "spatial_size": list(a["spatial"].shape[-2:]),
                "spatial_mean": round(float(a["spatial"].mean()), 4)} for n, a in att.items()}
