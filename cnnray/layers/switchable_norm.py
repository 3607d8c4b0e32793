"""Switchable Normalization (Luo et al. 2019, https://arxiv.org/abs/1806.10779): a learned mix of IN, LN and
BN statistics."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._checks import check_positive_int


class SwitchableNorm2d(nn.Module):
    """Normalises with softmax-weighted means and variances of IN, LN and BN, then a per-channel affine.

    Switchable Normalization (Luo et al. 2019, https://arxiv.org/abs/1806.10779).

    Means and variances have separate mixing logits, each ordered (IN, LN, BN). Variances are
    the biased ones used for normalising (as BatchNorm2d in training); the BN running variance
    is the unbiased one (as BatchNorm2d) and replaces the batch statistics in eval.
    """

    def __init__(self, channels: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        channels = check_positive_int("channels", channels)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
        self.momentum = float(momentum)
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        # Equal logits: start from the plain average of the three normalisers.
        self.mean_logits = nn.Parameter(torch.zeros(3))
        self.var_logits = nn.Parameter(torch.zeros(3))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def mixing_weights(self) -> tuple[Tensor, Tensor]:
        """(mean weights, variance weights), each a (3,) softmax ordered (IN, LN, BN)."""
        return self.mean_logits.softmax(0), self.var_logits.softmax(0)

    def forward(self, x: Tensor) -> Tensor:
        # Statistics in fp32: bf16 sums over H*W (and the batch) lose too many digits.
        xf = x.float()
        mean_in = xf.mean((2, 3), keepdim=True)
        var_in = xf.var((2, 3), keepdim=True, unbiased=False)
        # Second moments pool across channels/samples: var = E[x^2] - E[x]^2 of the pooled set.
        moment_in = var_in + mean_in.square()
        mean_ln = mean_in.mean(1, keepdim=True)
        var_ln = (moment_in.mean(1, keepdim=True) - mean_ln.square()).clamp_min(0.0)
        if self.training:
            mean_bn = mean_in.mean(0, keepdim=True)
            var_bn = (moment_in.mean(0, keepdim=True) - mean_bn.square()).clamp_min(0.0)
            self._update_running(mean_bn, var_bn, n=x.shape[0] * x.shape[2] * x.shape[3])
        else:
            mean_bn = self.running_mean.view(1, -1, 1, 1)
            var_bn = self.running_var.view(1, -1, 1, 1)
        w_mean, w_var = self.mixing_weights()
        mean = w_mean[0] * mean_in + w_mean[1] * mean_ln + w_mean[2] * mean_bn
        var = w_var[0] * var_in + w_var[1] * var_ln + w_var[2] * var_bn
        out = (xf - mean) * torch.rsqrt(var + self.eps)
        out = out * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return out.to(x.dtype)

    @torch.no_grad()
    def _update_running(self, mean_bn: Tensor, var_bn: Tensor, n: int) -> None:
        unbiased = var_bn.flatten() * (n / max(n - 1, 1))
        self.running_mean.lerp_(mean_bn.flatten(), self.momentum)
        self.running_var.lerp_(unbiased, self.momentum)

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, momentum={self.momentum}, eps={self.eps}"
