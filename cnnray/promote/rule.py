"""The promotion rule: move `champion` only on evidence (plain Python, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass

from cnnray.promote.stats import PairedComparison

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
    """Promote when the interval's lower bound on candidate - champion exceeds min_delta (and the floor holds)."""
    ci = f"{cmp.confidence:.0%} CI [{cmp.ci_low:+.4f}, {cmp.ci_high:+.4f}]"
    if cmp.candidate < floor:
        return Decision(KEEP, f"{cmp.metric} {cmp.candidate:.4f} is below the floor {floor:.4f}")
    if cmp.ci_low > min_delta:
        return Decision(PROMOTE, f"{cmp.metric} {cmp.candidate:.4f} vs {cmp.champion:.4f}: delta {cmp.delta:+.4f}, "
                                 f"{ci} lies above {min_delta:+.4f} (McNemar p={cmp.p_value:.3g}, n={cmp.n})")
    return Decision(KEEP, f"{cmp.metric} {cmp.candidate:.4f} vs {cmp.champion:.4f}: delta {cmp.delta:+.4f}, "
                          f"{ci} does not lie above {min_delta:+.4f} (McNemar p={cmp.p_value:.3g}, n={cmp.n})")
