"""Original against replay: the side-by-side and the verdict. `identical`: the same weights bit for bit;
`equivalent`: the paired test on the held-out split (McNemar's exact test, as the promotion gate uses) finds no
difference; `different`: it does (or the runs disagree on what they trained)."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from cnnray.promote.stats import compare

IDENTICAL, EQUIVALENT, DIFFERENT = "identical", "equivalent", "different"
SIDE_BY_SIDE = ("val_acc", "val_loss", "test_acc", "test_loss", "best_epoch", "epochs", "weights_sha256")


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over the tensors by name (dtype, shape, values): equal exactly when the weights are bit for bit."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass
class Verdict:
    """The verdict and its evidence."""

    verdict: str
    reason: str
    rows: dict[str, tuple[Any, Any]]  # metric -> (original, replay)
    test: dict[str, Any] = field(default_factory=dict)  # the paired test, when the weights differ

    def to_json(self) -> dict[str, Any]:
        """For --json and the replay.json artifact."""
        return {"verdict": self.verdict, "reason": self.reason,
                "side_by_side": {k: {"original": a, "replay": b} for k, (a, b) in self.rows.items()},
                "paired_test": self.test}


def side_by_side(original: dict[str, Any], replay: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The rows both sides have."""
    return {k: (original.get(k), replay.get(k)) for k in SIDE_BY_SIDE if k in original or k in replay}


def paired_test(labels: np.ndarray, pred_orig: np.ndarray, pred_replay: np.ndarray, top5_orig: np.ndarray,
                top5_replay: np.ndarray, num_classes: int, split: str, alpha: float) -> dict[str, Any]:
    """McNemar's exact two-sided test and the bootstrap interval of replay minus original accuracy."""
    cmp = compare("accuracy", labels, pred_replay, pred_orig, top5_replay, top5_orig, num_classes,
                  confidence=1 - alpha, resamples=2000)
    return {**asdict(cmp), "discordant": list(cmp.discordant), "split": split, "alpha": alpha,
            "agreement": float(np.mean(pred_orig == pred_replay))}


def judge(original: dict[str, Any], replay: dict[str, Any], test: dict[str, Any] | None) -> Verdict:
    """The verdict from both sides' figures and, when the weights differ, the paired test."""
    rows = side_by_side(original, replay)
    if original.get("weights_sha256") and original["weights_sha256"] == replay.get("weights_sha256"):
        return Verdict(IDENTICAL, "the same weights bit for bit", rows)
    if test is None:
        return Verdict(DIFFERENT, "the weights differ and there was no held-out split to test them on", rows)
    p, n, (b, c) = test["p_value"], test["n"], test["discordant"]
    what = (f"{n} {test['split']} images: replay right/original wrong {b}, original right/replay wrong {c}, "
            f"McNemar p={p:.3g}, accuracy delta {100 * test['delta']:+.2f} points "
            f"[{100 * test['ci_low']:+.2f}, {100 * test['ci_high']:+.2f}]")
    if p >= test["alpha"]:
        return Verdict(EQUIVALENT, f"the weights differ; no difference in accuracy on {what}", rows, test)
    return Verdict(DIFFERENT, f"the replay's accuracy differs on {what}", rows, test)


def format_verdict(v: Verdict, label: str) -> str:
    """The console's side-by-side table and verdict line."""
    def cell(x: Any) -> str:
        if isinstance(x, float):
            return f"{x:.4f}"
        if isinstance(x, str) and len(x) == 64:
            return x[:16]
        return "-" if x is None else str(x)

    lines = [f"{'':<16}{'original':>18}{'replay':>18}"]
    lines += [f"{k:<16}{cell(a):>18}{cell(b):>18}" for k, (a, b) in v.rows.items()]
    lines.append(f"verdict: {v.verdict.upper()} ({label}): {v.reason}")
    return "\n".join(lines)
