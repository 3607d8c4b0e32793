"""Export to TorchScript and ONNX, run the ONNX file with onnxruntime, and compare logits with eager ones."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

# Opset 18 is the one torch's exporter (torch.export + onnxscript's torchlib) emits natively: any
# other opset adds a version-conversion pass after the export, one more place for it to break.
# onnxruntime runs opset 18 since 1.14, so the file loads on any runtime the dependency floor allows.
ONNX_OPSET = 18
INPUT_NAME, OUTPUT_NAME = "images", "logits"


def _inference_copy(model: nn.Module) -> nn.Module:
    # Exports record one mode: a train-mode model would bake DropBlock, DropPath and batch statistics in.
    return copy.deepcopy(model).eval()


@torch.no_grad()
def export_torchscript(model: nn.Module, example: Tensor, path: str | os.PathLike[str]) -> Path:
    """Trace an eval-mode copy of `model` on `example` and save it as TorchScript at `path`."""
    # Tracing, not scripting: torch.jit.script compiles every helper a layer calls, and cnnray's argument
    # checks (f-string error messages) are outside TorchScript's Python subset; in eval mode the
    # models have no data-dependent control flow, so the trace is the whole forward pass.
    # torch.jit is deprecated in torch 2.x (it warns); TorchScript is still what libtorch/C++ loads.
    traced = torch.jit.trace(_inference_copy(model), example)
    torch.jit.save(traced, str(path))
    return Path(path)


def export_onnx(model: nn.Module, example: Tensor, path: str | os.PathLike[str], opset: int = ONNX_OPSET) -> Path:
    """Export an eval-mode copy of `model` to ONNX at `path` (one file, weights inside), batch axis dynamic."""
    # dynamo=True (torch.export) is torch's default and recommended exporter; the TorchScript-based one is legacy.
    batch = torch.export.Dim("batch", min=1)
    torch.onnx.export(_inference_copy(model), (example,), str(path), dynamo=True, opset_version=opset,
                      input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_shapes=({0: batch},),
                      external_data=False, verbose=False)
    return Path(path)


def onnx_runner(path: str | os.PathLike[str], threads: int | None = None) -> Callable[[Any], np.ndarray]:
    """A function batch -> logits that runs the ONNX file at `path` on onnxruntime's CPU provider."""
    import onnxruntime as ort  # only export and its checks need the runtime

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(batch: Any) -> np.ndarray:
        array = batch.detach().cpu().numpy() if isinstance(batch, Tensor) else np.asarray(batch)
        return session.run(None, {name: np.ascontiguousarray(array, dtype=np.float32)})[0]

    return run


def run_onnx(path: str | os.PathLike[str], batch: Any) -> np.ndarray:
    """Logits of `batch` from the ONNX file at `path`, run by onnxruntime on the CPU."""
    return onnx_runner(path)(batch)


def _float64(logits: Any) -> Tensor:
    return torch.as_tensor(logits.detach().cpu() if isinstance(logits, Tensor) else np.asarray(logits),
                           dtype=torch.float64)


def check_parity(reference_logits: Any, candidate_logits: Any) -> dict[str, Any]:
    """Max absolute difference and top-1 agreement of two (N, classes) logit arrays (tensors or numpy)."""
    ref, cand = _float64(reference_logits), _float64(candidate_logits)
    if ref.shape != cand.shape or ref.ndim != 2 or ref.shape[0] == 0:
        raise ValueError(f"expected two non-empty (N, classes) arrays of one shape, got {tuple(ref.shape)} "
                         f"and {tuple(cand.shape)}")
    agree = (ref.argmax(1) == cand.argmax(1)).double().mean()
    return {"max_abs_diff": float((ref - cand).abs().max()), "top1_agreement": float(agree), "n": ref.shape[0]}
