"""torchvision's pretrained weights by enum name (`model.init_from=torchvision:ResNet50_Weights.IMAGENET1K_V2`).

The file is read from torch hub's cache when it is there (cluster nodes often have no network: put the file at
the cache path once, and every run finds it); otherwise it is downloaded into that cache.
"""

from __future__ import annotations

import os
from http.client import HTTPException
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from cnnray.models.weights_file import WeightsError, read_state_file

PREFIX = "torchvision:"


def _resnet_enums() -> list[str]:
    # deferred: torchvision is a heavy import, needed only for torchvision: sources
    import torchvision.models as tvm

    return sorted(n for n in dir(tvm) if n.endswith("_Weights") and ("ResNet" in n or "ResNeXt" in n))


def torchvision_weights(spec: str) -> Any:
    """The torchvision weights enum member named `spec` ("ResNet50_Weights.IMAGENET1K_V2"); WeightsError listing
    the valid names otherwise."""
    # deferred: torchvision is a heavy import, needed only for torchvision: sources
    import torchvision.models as tvm

    spec = spec.removeprefix(PREFIX).strip()
    enum_name, _, member = spec.partition(".")
    enum = getattr(tvm, enum_name, None) if enum_name.endswith("_Weights") else None
    if enum is None or not member:
        raise WeightsError(f"torchvision:{spec}: not a torchvision weights name; expected ENUM.MEMBER, e.g. "
                           f"ResNet50_Weights.IMAGENET1K_V2; ResNet weight enums: {', '.join(_resnet_enums())}")
    try:
        return tvm.get_weight(spec)
    except (KeyError, ValueError, AttributeError):
        members = ", ".join(f"{enum_name}.{m}" for m in enum.__members__)
        raise WeightsError(f"torchvision:{spec}: {enum_name} has no member {member!r}; valid: {members}") from None


def cache_path(weights: Any) -> Path:
    """Where torch hub keeps (and looks for) the file of `weights`: <torch.hub.get_dir()>/checkpoints/<file name>."""
    return Path(os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url)))


def torchvision_state(spec: str) -> dict[str, Tensor]:
    """The state_dict of torchvision weights `spec` (without "torchvision:"), from torch hub's cache or downloaded
    into it; WeightsError naming the cache path and the URL when neither works."""
    weights = torchvision_weights(spec)
    path = cache_path(weights)
    if path.is_file():
        try:
            return read_state_file(path)
        except WeightsError as e:
            raise WeightsError(f"torchvision:{spec}: the cached file is unusable: {e}; delete {path} and fetch it "
                               f"again from {weights.url}") from None
    try:
        state = torch.hub.load_state_dict_from_url(weights.url, progress=False, weights_only=True, map_location="cpu")
    except (OSError, HTTPException) as e:  # URLError, socket timeouts and SSL errors are OSErrors
        raise WeightsError(
            f"torchvision:{spec}: not in the torch hub cache, and downloading it failed ({e}): there is no network "
            f"here. Fetch {weights.url} elsewhere and put it at {path} (the cache directory is $TORCH_HOME/hub, "
            f"default ~/.cache/torch/hub)") from None
    except Exception as e:  # a partial or corrupt download: torch.load's errors
        raise WeightsError(f"torchvision:{spec}: the download from {weights.url} is unusable ({e}); delete {path} "
                           f"if it exists and fetch it again") from None
    return {k: v for k, v in state.items()}


def torchvision_classes(spec: str) -> list[str] | None:
    """The class names of torchvision weights `spec` (the rows of their head), or None when they list none."""
    categories = torchvision_weights(spec).meta.get("categories")
    return list(categories) if categories else None
