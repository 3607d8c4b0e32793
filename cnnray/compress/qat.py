"""Quantization-aware fine-tuning (`cnnray compress --method quantize --qat`): the network trained with
fake quantization (torchao's PT2E QAT for the x86 inductor quantizer: conv weights per channel, activations
per tensor, BN kept foldable), so its weights adapt to int8 rounding before they are quantized.

`QATModel` is an ordinary nn.Module to the training loop (DDP, EMA, checkpoints, Ray Train and the local
runner alike); its `plain_state` gives back the architecture's own fp32 weights, which is what a run
saves as its best model: a valid fp32 model that `quantize_pt2e` then converts like any other, so QAT and
post-training quantization share one int8 conversion, storage and rebuild path (the fake-quant ranges
learned here are re-measured by that calibration rather than carried over).
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn


class QATModel(nn.Module):
    """`model` exported (dynamic batch) and prepared for QAT; `.train()`/`.eval()` switch the exported
    graph's BN and dropout (an exported graph ignores Module.train)."""

    def __init__(self, model: nn.Module, input_shape: tuple[int, int, int] | list[int]) -> None:
        super().__init__()
        # deferred (heavy import): torchao
        from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq

        self._plain_keys = frozenset(model.state_dict())
        example = torch.randn(2, *[int(v) for v in input_shape])  # batch 2: export specializes a size-1 dim
        batch = torch.export.Dim("batch", min=1)
        quantizer = xiq.X86InductorQuantizer().set_global(xiq.get_default_x86_inductor_quantization_config(is_qat=True))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torchao\..*")
            gm = torch.export.export(model.train(), (example,), dynamic_shapes=({0: batch},)).module()
            self.net = prepare_qat_pt2e(gm, quantizer)
        self.train(True)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def train(self, mode: bool = True) -> QATModel:
        # deferred (heavy import): torchao
        from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train

        self.training = mode
        (move_exported_model_to_train if mode else move_exported_model_to_eval)(self.net)
        return self

    def plain_state(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """The architecture's fp32 weights from this module's state_dict (fake-quant observers dropped)."""
        # Export keeps the original parameter and buffer names; prepare adds observer modules beside them.
        out = {k[len("net."):]: v for k, v in state.items() if k.startswith("net.") and k[len("net."):] in self._plain_keys}
        missing = self._plain_keys - set(out)
        if missing:
            raise RuntimeError(f"QAT state lacks {len(missing)} of the model's tensors, e.g. {sorted(missing)[:3]}")
        return out
