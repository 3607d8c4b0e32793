"""`inspect`: a trained model's filters, feature maps, CBAM attention and Grad-CAM as PNGs plus summary.json.

Plain PyTorch and matplotlib: the caller loads the model and the images and logs the files where it wants them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from cnnray.insight.inspect_options import check_layers

FILTERS_PNG = "filters_vs_gabor.png"
GRADCAM_PNG = "gradcam.png"
CHANNELS_PNG = "attention_channels.png"
SPATIAL_PNG = "attention_spatial.png"


@dataclass
class InspectInput:
    """The model (eval) and the validation images it is inspected on."""

    model: nn.Module
    images: Tensor  # uint8 (N, C, S, S), for display
    x: Tensor  # the same images normalized as the model expects
    y: Tensor
    classes: tuple[str, ...]
    title: str  # e.g. "models:/cnnray/3 (resnet18)"


def check_request(model: nn.Module, parts: list[str], attention_named: bool, layers: list[str] | None) -> list[str]:
    """The parts to run; ValueError for unknown layer names or attention asked of a model without CBAM."""
    # deferred (heavy import): matplotlib
    from cnnray.insight.inspect_attention import cbam_modules

    if layers is not None:
        check_layers(layers, [n for n, _ in model.named_modules() if n])
    if "attention" in parts and not cbam_modules(model):
        if attention_named:
            raise ValueError("--what attention: the model has no CBAM module (cnnray.layers.cbam.CBAM), so it has no "
                             "attention maps; use a cbam_* architecture or leave attention out")
        return [p for p in parts if p != "attention"]
    return parts


def _filters(inp: InspectInput, out: Path, summary: dict[str, Any]) -> None:
    # deferred (heavy import): matplotlib
    from cnnray.insight.inspect_filters import match_filters, plot_filters

    result = match_filters(inp.model)
    summary["figures"]["filters"] = plot_filters(result, out / FILTERS_PNG, inp.title).name
    ref = result["gabor"]
    summary["filters"] = {"layer": result["layer"], "kernel_size": result["kernel_size"],
                          "in_channels": result["in_channels"], "out_channels": result["out_channels"],
                          "gabor": {"orientations_deg": ref["orientations_deg"], "wavelengths_px": ref["wavelengths_px"],
                                    "sigma": ref["sigma"], "similarity": "max |cosine| over the bank"},
                          "matches": result["matches"]}


def _featuremaps(inp: InspectInput, out: Path, layers: list[str] | None, summary: dict[str, Any]) -> None:
    # deferred (heavy import): matplotlib
    from cnnray.insight.inspect_maps import (
        classic_responses,
        default_layers,
        feature_maps,
        plot_layer_maps,
        summarize_maps,
    )

    layers = layers or default_layers(inp.model)
    maps = feature_maps(inp.model, inp.x, layers)
    classic = classic_responses(inp.images)
    for layer in layers:
        name = f"featuremaps_{layer.replace('.', '_')}.png"
        summary["figures"][f"featuremaps:{layer}"] = plot_layer_maps(layer, maps[layer], inp.images, classic,
                                                                     out / name, inp.title).name
    summary["featuremaps"] = {"layers": summarize_maps(maps), "classic_kernels": list(classic)}


def _attention(inp: InspectInput, out: Path, summary: dict[str, Any]) -> None:
    # deferred (heavy import): matplotlib
    from cnnray.insight.inspect_attention import (
        cbam_attention,
        plot_channel_weights,
        plot_spatial_maps,
        summarize_attention,
    )

    att = cbam_attention(inp.model, inp.x)
    summary["figures"]["attention:channels"] = plot_channel_weights(att, out / CHANNELS_PNG, inp.title).name
    summary["figures"]["attention:spatial"] = plot_spatial_maps(att, inp.images, out / SPATIAL_PNG, inp.title).name
    summary["attention"] = {"modules": summarize_attention(att)}


def _gradcam(inp: InspectInput, out: Path, summary: dict[str, Any]) -> None:
    # deferred (heavy import): matplotlib
    from cnnray.insight.inspect_gradcam import grad_cam, plot_grad_cam, summarize_grad_cam

    result = grad_cam(inp.model, inp.x, inp.y)
    summary["figures"]["gradcam"] = plot_grad_cam(result, inp.images, inp.classes, out / GRADCAM_PNG, inp.title).name
    summary["gradcam"] = summarize_grad_cam(result, inp.classes)


def inspect_model(inp: InspectInput, out: Path, parts: list[str], requested: list[str],
                  layers: list[str] | None = None) -> dict[str, Any]:
    """Run `parts` (already checked), write their PNGs and summary.json into `out`; return the summary."""
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"out": str(out), "parts": parts, "images": int(inp.images.shape[0]), "figures": {}}
    if "attention" in requested and "attention" not in parts:
        summary["attention"] = {"skipped": "the model has no CBAM module"}
    if "filters" in parts:
        _filters(inp, out, summary)
    if "featuremaps" in parts:
        _featuremaps(inp, out, layers, summary)
    if "attention" in parts:
        _attention(inp, out, summary)
    if "gradcam" in parts:
        _gradcam(inp, out, summary)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
