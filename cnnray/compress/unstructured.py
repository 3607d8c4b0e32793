"""Unstructured magnitude pruning, reported as what it is: zeros inside dense tensors.

The smallest-|w| fraction of all conv and linear weights (one global threshold, torch's own
`global_unstructured` with L1) is set to zero and the masks are made permanent. Shapes do not change,
so parameter count, FLOPs, the weights file and dense-kernel speed stay as they were; `cnnray compress`
records the sparsity and the measured latency, and claims no speed-up it did not measure.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd
from torch.nn.utils import prune

from cnnray.compress.prune import sparsity


@torch.no_grad()
def prune_unstructured(model: nn.Module, amount: float) -> tuple[nn.Module, float]:
    """(an eval-mode copy with `amount` of its conv/linear weights zeroed, the resulting sparsity)."""
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not 0 < amount < 1:
        raise ValueError(f"amount {amount!r}: the fraction of weights zeroed must be in (0, 1)")
    pruned = copy.deepcopy(model).eval()
    params = [(m, "weight") for m in pruned.modules() if isinstance(m, (_ConvNd, nn.Linear))]
    if not params:
        raise ValueError(f"{type(model).__name__} has no conv or linear weights to prune")
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=float(amount))
    for module, name in params:
        prune.remove(module, name)  # weight = weight_orig * mask, as a plain parameter again
    return pruned, sparsity(pruned)
