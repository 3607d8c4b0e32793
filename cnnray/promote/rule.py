"""The promotion rule: move `champion` only on evidence (plain Python, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnnray.promote.stats import PairedComparison, compare

PROMOTE, KEEP, ALREADY = "promoted", "kept", "already-champion"


@dataclass(frozen=True)
class Decision:
    """What the gate decided and why."""

    outcome: str  # promoted | kept | already-champion
    reason: str

    @property
    def promote(self) -> bool:
        """Whether `champion` moves to the candidate."""
        return self.outcome == PROMOTE


def decide_first(value: float, metric: str, floor: float) -> Decision:
    """No champion yet: the candidate becomes champion when its metric meets the floor."""
    if value >= floor:
        return Decision(PROMOTE, f"no champion yet; {metric} {value:.4f} meets the floor {floor:.4f}")
    return Decision(KEEP, f"no champion yet; {metric} {value:.4f} is below the floor {floor:.4f}")


def decide(cmp: PairedComparison, min_delta: float, floor: float = 0.0) -> Decision:
    """Promote when the one-sided lower bound on candidate - champion exceeds min_delta, the floor holds and,
    for the 0/1 metrics (accuracy, top5), McNemar's exact one-sided test rejects "no better" at the same level.

    The bound is the `cmp.level` quantile of the paired bootstrap: on its own it is approximate, and a
    percentile bound at a small level (the spent shares of alpha) can be optimistic when few pairs disagree.
    The exact test keeps the false-promotion rate at or below the level for any n (McNemar 1947; exact
    binomial form); the bound adds the effect size (`--min-delta`). f1_macro has no exact paired test: it is
    judged on the bound alone.
    """
    ci = f"{cmp.confidence:.2%} CI [{cmp.ci_low:+.4f}, {cmp.ci_high:+.4f}]"
    tail = f"McNemar one-sided p={cmp.p_better:.3g} vs level {cmp.level:.3g}, n={cmp.n}"
    head = f"{cmp.metric} {cmp.candidate:.4f} vs {cmp.champion:.4f}: delta {cmp.delta:+.4f}, {ci}"
    if cmp.candidate < floor:
        return Decision(KEEP, f"{cmp.metric} {cmp.candidate:.4f} is below the floor {floor:.4f}")
    if cmp.ci_low <= min_delta:
        return Decision(KEEP, f"{head} does not lie above {min_delta:+.4f} ({tail})")
    if cmp.metric != "f1_macro" and cmp.p_better > cmp.level:
        return Decision(KEEP, f"{head} lies above {min_delta:+.4f} but the exact test does not reject ({tail})")
    return Decision(PROMOTE, f"{head} lies above {min_delta:+.4f} ({tail})")


def judge(metric: str, labels: np.ndarray, pred_cand: np.ndarray, pred_champ: np.ndarray, top5_cand: np.ndarray,
          top5_champ: np.ndarray, num_classes: int, *, level: float, min_delta: float = 0.0, floor: float = 0.0,
          resamples: int = 10_000, seed: int = 0) -> tuple[PairedComparison, Decision]:
    """The gate's whole decision on per-example results at one-sided `level` (what `cnnray promote` runs and
    `cnnray bench promote` simulates): the paired comparison and the rule applied to it."""
    cmp = compare(metric, labels, pred_cand, pred_champ, top5_cand, top5_champ, num_classes,
                  confidence=1 - 2 * level, resamples=resamples, seed=seed)
    return cmp, decide(cmp, min_delta, floor)
