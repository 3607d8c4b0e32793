"""What a training run starts from besides the config: a reshaped network with given weights (pruning's
fine-tune) and a teacher (distillation). Both travel inside the JSON-safe loop config, so they reach Ray
Train workers on other nodes and local rank processes alike, and are read back with `weights_only=True`.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import torch
from torch import Tensor, nn

INIT_WEIGHTS = "init_weights"  # loop-config key: packed state_dict loaded into the built (and reshaped) model
STRUCTURE = "structure"  # loop-config key: a model card's `compression` entry applied before the weights load
TEACHER = "teacher"  # loop-config key: {"card": card dict, "weights": packed state_dict, "temperature", "alpha"}
QAT = "qat"  # loop-config key: {"input_shape": [C, H, W]}: train with fake quantization (`compress/qat.py`)


def pack_state(state: dict[str, Tensor]) -> str:
    """A state_dict as base64 text (torch.save bytes) for a JSON loop config."""
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state.items()}, buf)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def unpack_state(text: str) -> dict[str, Tensor]:
    """The state_dict `pack_state` wrote; tensors only (weights_only=True: nothing is unpickled)."""
    state = torch.load(io.BytesIO(base64.b64decode(text)), map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError("packed initial weights are not a state_dict of tensors")
    return state


def initial_model(model: nn.Module, loop_config: dict[str, Any]) -> nn.Module:
    """`model` (freshly built from the config) reshaped by the loop config's structure and loaded with its
    initial weights; unchanged when the loop config has neither."""
    if loop_config.get(STRUCTURE):
        from cnnray.compress.structure import apply_structure

        model = apply_structure(model, loop_config[STRUCTURE])
    if loop_config.get(INIT_WEIGHTS):
        model.load_state_dict(unpack_state(loop_config[INIT_WEIGHTS]), strict=True)
    if loop_config.get(QAT):
        from cnnray.compress.qat import QATModel

        model = QATModel(model, loop_config[QAT]["input_shape"])
    return model


def teacher_model(loop_config: dict[str, Any], device: torch.device) -> tuple[nn.Module, float, float] | None:
    """(eval-mode teacher without gradients, temperature, alpha) from the loop config, or None."""
    spec = loop_config.get(TEACHER)
    if not spec:
        return None
    from cnnray.serve.card import ModelCard
    from cnnray.serve.classifier import ImageClassifier

    clf = ImageClassifier(ModelCard.from_dict(spec["card"]), unpack_state(spec["weights"]), device=device,
                          channels_last=False)
    teacher = clf.model.eval().requires_grad_(False)
    return teacher, float(spec["temperature"]), float(spec["alpha"])
