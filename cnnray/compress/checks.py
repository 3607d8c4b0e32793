"""Whether a compressed candidate may be registered: its outputs stay within a tolerance of the source's
(methods that promise equal outputs: fuse, export) and its accuracy drops by at most a bound."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from cnnray.compress.export import check_parity

EQUAL_OUTPUT_METHODS = ("fuse", "export")  # the network computes the same function; only rounding may differ
DEFAULT_TOLERANCE = 1e-3  # max |logit difference|; float32 folding and exporters differ by ~1e-5 on these models
DEFAULT_MAX_ACC_DROP = 1.0  # accuracy points


@dataclass
class GateResult:
    """The decision and the evidence behind it."""

    passed: bool
    reasons: list[str]
    source_acc: float
    candidate_acc: float
    parity: dict[str, Any]
    checks: dict[str, Any] = field(default_factory=dict)

    @property
    def delta_points(self) -> float:
        """Candidate minus source accuracy, in points (negative: a drop)."""
        return 100.0 * (self.candidate_acc - self.source_acc)


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(1) == labels).double().mean())


def judge_candidate(method: str, source_logits: torch.Tensor, candidate_logits: torch.Tensor, labels: torch.Tensor, *,
           max_acc_drop: float = DEFAULT_MAX_ACC_DROP, tolerance: float = DEFAULT_TOLERANCE,
           checks: dict[str, Any] | None = None) -> GateResult:
    """Gate a candidate on the source's evaluation images (logits of both, the true labels)."""
    if max_acc_drop < 0 or tolerance < 0:
        raise ValueError(f"--max-acc-drop ({max_acc_drop}) and --tolerance ({tolerance}) must be >= 0")
    parity = check_parity(source_logits, candidate_logits)
    src, cand = _accuracy(source_logits, labels), _accuracy(candidate_logits, labels)
    result = GateResult(True, [], src, cand, parity, dict(checks or {}))
    if method in EQUAL_OUTPUT_METHODS and parity["max_abs_diff"] > tolerance:
        result.reasons.append(f"outputs drift from the source: max |logit difference| {parity['max_abs_diff']:.3g} > "
                              f"--tolerance {tolerance:g} (top-1 agreement {parity['top1_agreement']:.4f})")
    for fmt, p in (checks or {}).items() if method in EQUAL_OUTPUT_METHODS else ():
        if isinstance(p, dict) and "max_abs_diff" in p and p["max_abs_diff"] > tolerance:
            result.reasons.append(f"{fmt} outputs drift from eager PyTorch: max |logit difference| "
                                  f"{p['max_abs_diff']:.3g} > --tolerance {tolerance:g}")
    if -result.delta_points > max_acc_drop + 1e-9:  # a drop exactly at the bound passes (float rounding aside)
        result.reasons.append(f"accuracy drops {-result.delta_points:.2f} points ({100 * src:.2f}% -> {100 * cand:.2f}%), "
                              f"more than --max-acc-drop {max_acc_drop:g}")
    result.passed = not result.reasons
    return result
