"""What a training run starts from besides the config (`LoopConfig.init`), on each rank: initial weights
(`model.init_from`, or pruning's fine-tune on a reshaped network), fake quantization (QAT) and a teacher
(distillation). The weights arrive as files staged under the run's folder (`stage.py`), read with
`weights_only=True`, so they reach Ray Train workers on other nodes and local rank processes alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cnnray.classifier.card import ModelCard
from cnnray.classifier.classifier import ImageClassifier
from cnnray.compress.qat import QATModel
from cnnray.compress.structure import apply_structure
from cnnray.models import load_initial_weights
from cnnray.run.loop_config import InitState
from cnnray.run.stage import read_staged


def initial_model(model: nn.Module, init: InitState, class_names: Sequence[str] = ()) -> nn.Module:
    """`model` (freshly built from the config) reshaped by the structure of `init` and loaded with its initial
    weights; unchanged when it has neither."""
    if init.structure:
        model = apply_structure(model, init.structure)
    if init.weights_path:
        state = read_staged(init.weights_path)
        if init.adapt is not None:  # model.init_from: checked on the driver already, so this cannot refuse
            load_initial_weights(model, state, strict=bool(init.adapt.get("strict", True)),
                                 source_classes=init.adapt.get("source_classes"),
                                 target_classes=list(class_names) or None)
        else:
            model.load_state_dict(state, strict=True)
    if init.qat:
        model = QATModel(model, init.qat["input_shape"])
    return model


def teacher_model(init: InitState, device: torch.device) -> tuple[nn.Module, float, float] | None:
    """(eval-mode teacher without gradients, temperature, alpha), or None."""
    spec = init.teacher
    if not spec:
        return None
    clf = ImageClassifier(ModelCard.from_dict(spec["card"]), read_staged(spec["weights_path"]), device=device,
                          channels_last=False)
    teacher = clf.model.eval().requires_grad_(False)
    return teacher, float(spec["temperature"]), float(spec["alpha"])
