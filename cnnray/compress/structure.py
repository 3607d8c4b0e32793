"""The structure a compressed version's weights fit: applied to the freshly built architecture before its
weights load (`cnnray.serve.ImageClassifier`), so a compressed version stays a card plus a state_dict of
plain tensors, loaded with `weights_only=True` like any other; nothing is unpickled. `finish_structure`
runs after the weights are in (an int8 model is converted from its loaded, calibrated observers).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from cnnray.compress.fuse import fused_structure
from cnnray.compress.prune import pruned_structure
from cnnray.compress.quantize import finish_quantized, quantized_structure

# What each method changes in the network; `export` attaches files and leaves the network as it was;
# `distill` trains another architecture (the card names it) and adds no step.
KNOWN = ("fuse", "prune", "quantize", "export")


def apply_structure(model: nn.Module, compression: Mapping[str, Any]) -> nn.Module:
    """`model` reshaped for the card's `compression` entry: each of its `steps` in order (empty: unchanged).
    Steps compose: a fused version that is exported keeps its fused structure."""
    for step in compression.get("steps", []):
        method = step.get("method")
        if method == "fuse":
            model = fused_structure(model, [tuple(p) for p in step["pairs"]])
        elif method == "prune":
            if not step.get("unstructured"):  # unstructured pruning leaves zeros in the same shapes
                model = pruned_structure(model, dict(step["channels"]))
        elif method == "quantize":
            model = quantized_structure(model, step)
        elif method != "export":
            raise ValueError(f"model card: compression method {method!r} is unknown to this cnnray (known: "
                             f"{', '.join(KNOWN)}); upgrade cnnray")
    return model


def finish_structure(model: nn.Module, compression: Mapping[str, Any]) -> nn.Module:
    """After the weights are loaded: an int8 version's network converted from its calibrated observers."""
    steps = list(compression.get("steps", []))
    if steps and steps[-1].get("method") == "quantize":
        model = finish_quantized(model, steps[-1])
    return model
