"""`cnnray compress` methods: each turns an eval-mode model into a candidate for a new registered version.

A method returns the network to register (its state_dict becomes the version's weights), the
`compression` entry of its model card (what `structure.apply_structure` needs to rebuild it), files
to attach to the version, and the checks it ran. Gating on outputs and accuracy is `gate.py`'s job.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cnnray.compress.export import ONNX_OPSET, check_parity, export_onnx, export_torchscript, run_onnx
from cnnray.compress.fuse import fuse_conv_bn

# fuse and export run here; quantize, prune and distill in cnnray.compress.job.candidates (prune and
# distill train, through cnnray's training run).
METHODS = ("fuse", "quantize", "prune", "distill", "export")


@dataclass
class Compressed:
    """A method's result."""

    model: nn.Module
    compression: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)  # artifact name -> file, attached to the version
    checks: dict[str, Any] = field(default_factory=dict)  # e.g. export parity, per format


def check_method(method: str) -> str:
    """The method, or ValueError naming the allowed ones."""
    if method not in METHODS:
        raise ValueError(f"--method {method!r}: unknown; choose one of {', '.join(METHODS)}")
    return method


def fuse(model: nn.Module) -> Compressed:
    """Conv-BN folding (`fuse.py`); the pairs go into the card so the structure can be rebuilt."""
    result = fuse_conv_bn(model)
    if result.fused == 0:
        raise ValueError("fuse: the model has no Conv2d -> BatchNorm2d pair to fold (norm is not batch norm?)")
    return Compressed(result.model, {"method": "fuse", "pairs": [list(p) for p in result.pairs]},
                      checks={"fused_pairs": result.fused})


@torch.no_grad()
def export(model: nn.Module, example: Tensor, out_dir: Path) -> Compressed:
    """TorchScript and ONNX files of the model, each checked against eager outputs on `example` (real images,
    preprocessed); the ONNX file is run by onnxruntime. The network itself is unchanged."""
    model = model.eval()
    eager = model(example)
    with warnings.catch_warnings():
        # torch 2.x deprecates torch.jit (export.py says why TorchScript is still shipped); the command says it once.
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.", category=FutureWarning)
        ts = export_torchscript(model, example[:1], out_dir / "model.torchscript.pt")
        loaded = torch.jit.load(str(ts))  # TorchScript's own archive format: code and tensors, no pickled objects
    onnx = export_onnx(model, example[:1], out_dir / "model.onnx")
    checks = {"torchscript": check_parity(eager, loaded(example)), "onnx": check_parity(eager, run_onnx(onnx, example)),
              "onnx_opset": ONNX_OPSET, "onnx_runtime": "onnxruntime CPUExecutionProvider",
              "note": "TorchScript is deprecated in torch 2.x but still what libtorch (C++) loads; ONNX is the "
                      "portable format"}
    return Compressed(model, {"method": "export", "onnx_opset": ONNX_OPSET},
                      {"torchscript": ts, "onnx": onnx}, checks)


def apply_method(method: str, model: nn.Module, example: Tensor, out_dir: Path) -> Compressed:
    """Run `method` on an eval-mode `model`; `example` is a batch of real preprocessed images."""
    if check_method(method) == "fuse":
        return fuse(model)
    if method != "export":
        raise ValueError(f"--method {method}: not a single-model transform (see cnnray.compress.job.candidates)")
    return export(model, example, out_dir)
