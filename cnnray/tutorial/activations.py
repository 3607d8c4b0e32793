"""The tutorial's activation functions, its learnable activation, and its comparison of them."""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnray.insight.activation_comparison import COMPARED, ActivationComparison  # noqa: F401 - the tutorial's name
from cnnray.layers import AdaptivePReLU, FReLU

class ModernActivations:
    """Tutorial pitfall: FReLU as a static function that builds a fresh, untrained conv on every call (random
    output); here swish/mish/gelu are functions and frelu(channels) returns cnnray's FReLU module to train."""

    @staticmethod
    def swish(x: Tensor, beta: float = 1.0) -> Tensor:
        """x * sigmoid(beta * x)."""
        return x * torch.sigmoid(beta * x)

    @staticmethod
    def mish(x: Tensor) -> Tensor:
        """x * tanh(softplus(x))."""
        return F.mish(x)

    @staticmethod
    def gelu(x: Tensor) -> Tensor:
        """GELU, tanh approximation (as cnnray's GELU layer)."""
        return F.gelu(x, approximate="tanh")

    @staticmethod
    def frelu(channels: int) -> nn.Module:
        """max(x, BN(depthwise 3x3 conv(x))) as a module: its funnel weights must live in the model."""
        return FReLU(channels)


class AdaptiveActivation(AdaptivePReLU):
    """Tutorial pitfall: a slope kept as a plain float (never learned, not saved) or one per layer only; here a
    Parameter per channel (num_parameters=1 shares one across channels) in the state dict, bf16-safe."""

    def __init__(self, num_parameters: int = 1, init_value: float = 0.25) -> None:
        super().__init__(num_parameters, init_value)
