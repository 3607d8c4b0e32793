"""Mixed precision: which autocast dtype a device gets, and whether fp16 needs a GradScaler."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from cnnray.errors import ConfigError

_ALLOWED = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class Precision:
    """A resolved precision: autocast dtype (None = fp32) and whether gradients need loss scaling."""

    name: str
    autocast_dtype: torch.dtype | None
    use_grad_scaler: bool
    device_type: str = "cpu"

    def autocast(self) -> contextlib.AbstractContextManager:
        """Context manager that runs the forward pass in this precision."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.autocast_dtype)


def _cpu_bf16_fast() -> bool:
    # oneDNN bf16 kernels need avx512_bf16 or AMX; without them bf16 is emulated and slower than fp32.
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(name: str, device: torch.device | str) -> Precision:
    """Turn train.precision (auto/fp32/bf16/fp16) into a Precision for `device`; refuse what the device cannot do."""
    device = torch.device(device)
    dt = device.type
    if name not in _ALLOWED:
        raise ConfigError(f"train.precision={name!r} is not valid; allowed: {', '.join(_ALLOWED)}")
    cuda_bf16 = dt == "cuda" and torch.cuda.is_bf16_supported()
    if name == "auto":
        if dt == "cuda":
            name = "bf16" if cuda_bf16 else "fp16"
        elif dt == "cpu":
            name = "bf16" if _cpu_bf16_fast() else "fp32"
        else:
            name = "fp32"
    if name == "fp32":
        return Precision("fp32", None, False, dt)
    if name == "bf16":
        if dt == "cuda" and not cuda_bf16:
            raise ConfigError("train.precision=bf16 is not supported by this GPU; allowed: auto, fp32, fp16")
        if dt not in ("cuda", "cpu"):
            raise ConfigError(f"train.precision=bf16 is not supported on {dt}; allowed: auto, fp32")
        return Precision("bf16", torch.bfloat16, False, dt)
    if dt != "cuda":
        raise ConfigError(f"train.precision=fp16 is not supported on {dt}; allowed: auto, fp32, bf16")
    # fp16 has a narrow exponent range: small gradients underflow without loss scaling.
    return Precision("fp16", torch.float16, True, dt)
