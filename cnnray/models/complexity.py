"""Model size and cost: parameter count, and FLOPs of one forward pass."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnray.layers._checks import check_positive_int


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not); works on meta-device models."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_size: int, in_chans: int = 3) -> int:
    """FLOPs of one `in_chans` x `input_size`^2 image in eval mode, as FlopCounterMode counts them.

    FLOPs, not MACs: 2 per multiply-accumulate of convolutions and matmuls (the classifier included);
    norms, activations, pooling and additions are not counted. A model on the meta device is
    measured without computing anything.
    """
    size, chans = check_positive_int("input_size", input_size), check_positive_int("in_chans", in_chans)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()  # regularizers off, and batch-1 norms use running statistics
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, chans, size, size, device=device))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
