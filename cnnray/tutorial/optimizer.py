"""The tutorial's model compression toolbox, over cnnray's compression methods (plain PyTorch)."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from cnnray.compress import fuse_conv_bn, measure_latency, model_size
from cnnray.compress.prune import PruneResult, prune_channels
from cnnray.compress.quantize import Quantized, quantize_pt2e
from cnnray.tutorial.trainer import num_classes_of, tutorial_config
from cnnray.loop.engine import Engine


class ModelOptimizer:
    """The tutorial quantizes convs dynamically (a no-op), statically without stubs, prunes 'structurally' by
    zeroing, fuses the wrong module and times a CPU call to 0 s; here cnnray's PT2E int8, channel pruning, fx fusion."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def quantize_model(self, calibration_data: Tensor, dynamic_head: bool = True) -> Quantized:
        """Static int8 (PT2E, x86): convs get int8 weights and calibrated activations, the head optionally dynamic."""
        return quantize_pt2e(self.model, calibration_data, dynamic_head=dynamic_head)

    def prune_model(self, amount: float = 0.3, criterion: str = "l1") -> PruneResult:
        """A copy with `amount` of each residual branch's channels removed: fewer parameters and FLOPs."""
        return prune_channels(self.model, amount, criterion)

    def knowledge_distillation(self, student: nn.Module, train_loader: Iterable[tuple[Tensor, Tensor]],
                               epochs: int = 1, temperature: float = 4.0, alpha: float = 0.7) -> list[dict[str, Any]]:
        """Train `student` against this model (eval mode, no grad) with alpha * KL * T^2 + (1 - alpha) * CE."""
        teacher = copy.deepcopy(self.model).eval()  # its BN statistics and dropout must not move while teaching
        for p in teacher.parameters():
            p.requires_grad_(False)
        cfg = tutorial_config([f"train.epochs={epochs}"])
        steps = len(train_loader)  # type: ignore[arg-type]
        engine = Engine(student, cfg, steps_per_epoch=steps, num_classes=num_classes_of(student),
                        device=next(student.parameters()).device)
        engine.teacher, engine.distill_temperature, engine.distill_alpha = teacher, temperature, alpha
        return [engine.train_epoch(train_loader) for _ in range(epochs)]

    def optimize_for_inference(self) -> nn.Module:
        """An eval copy with each BatchNorm folded into the conv that feeds it (pairs found from the data flow)."""
        return fuse_conv_bn(self.model).model

    def benchmark_performance(self, example: Tensor, warmup: int = 5, repeats: int = 20) -> dict[str, Any]:
        """Median and p90 latency at batch 1, throughput at batch 64 (a zero timer reading is refused), and size."""
        with torch.no_grad():
            return {**measure_latency(self.model, example, warmup=warmup, repeats=repeats), **model_size(self.model)}
