"""The structure a compressed version's weights fit: applied to the freshly built architecture before its
weights load (`cnnray.serve.ImageClassifier`), so a compressed version stays a card plus a state_dict of
plain tensors, loaded with `weights_only=True` like any other; nothing is unpickled."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from cnnray.compress.fuse import fused_structure

# What each method changes in the network; `export` attaches files and leaves the network as it was.
KNOWN = ("fuse", "export")


def apply_structure(model: nn.Module, compression: Mapping[str, Any]) -> nn.Module:
    """`model` reshaped for the card's `compression` entry: each of its `steps` in order (empty: unchanged).
    Steps compose: a fused version that is exported keeps its fused structure."""
    for step in compression.get("steps", []):
        method = step.get("method")
        if method == "fuse":
            model = fused_structure(model, [tuple(p) for p in step["pairs"]])
        elif method != "export":
            raise ValueError(f"model card: compression method {method!r} is unknown to this cnnray (known: "
                             f"{', '.join(KNOWN)}); upgrade cnnray")
    return model
