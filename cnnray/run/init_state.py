"""What a training run starts from besides the config (`LoopConfig.init`): a reshaped network with given
weights (pruning's fine-tune), fake quantization (QAT) and a teacher (distillation). The weights travel packed
inside the LoopConfig, so they reach Ray Train workers on other nodes and local rank processes alike, and are
read back with `weights_only=True`.
"""

from __future__ import annotations

import base64
import io

import torch
from torch import Tensor, nn

from cnnray.classifier.card import ModelCard
from cnnray.classifier.classifier import ImageClassifier
from cnnray.compress.qat import QATModel
from cnnray.compress.structure import apply_structure
from cnnray.run.loop_config import InitState


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


def initial_model(model: nn.Module, init: InitState) -> nn.Module:
    """`model` (freshly built from the config) reshaped by the structure of `init` and loaded with its initial
    weights; unchanged when it has neither."""
    if init.structure:
        model = apply_structure(model, init.structure)
    if init.weights:
        model.load_state_dict(unpack_state(init.weights), strict=True)
    if init.qat:
        model = QATModel(model, init.qat["input_shape"])
    return model


def teacher_model(init: InitState, device: torch.device) -> tuple[nn.Module, float, float] | None:
    """(eval-mode teacher without gradients, temperature, alpha), or None."""
    spec = init.teacher
    if not spec:
        return None
    clf = ImageClassifier(ModelCard.from_dict(spec["card"]), unpack_state(spec["weights"]), device=device,
                          channels_last=False)
    teacher = clf.model.eval().requires_grad_(False)
    return teacher, float(spec["temperature"]), float(spec["alpha"])
