"""The false-promotion budget of one held-out test set, spent over the decisions that reuse it (no I/O).

Every promotion decision judged on a test set is another look at it. With a fixed per-decision level the
chance that at least one of m no-better candidates gets promoted grows towards 1 - (1 - level)^m. The rule
here is alpha spending in its simplest valid form, online Bonferroni: decision k is tested at level
a_k = remaining / (planned - k + 1), so the levels of the at most `planned` decisions sum to at most alpha,
and by the union bound the family-wise rate P(any false promotion) <= sum a_k <= alpha whatever the
dependence between decisions (Foster & Stine 2008, "alpha-investing", JRSS-B 70(2), sec. 2 on alpha
spending; Tian & Ramdas 2021, "Online control of the familywise error rate", Stat. Methods Med. Res.
30(4), the online Bonferroni procedure). Equal shares make every decision equally powerful; a test set
whose budget is spent cannot be used again: the way out is a new test set (new fingerprint, fresh budget).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace

DEFAULT_ALPHA = 0.05
DEFAULT_PLANNED = 20  # decisions one test set is budgeted for
_EPS = 1e-12


@dataclass(frozen=True)
class Ledger:
    """What has been spent of one test set's budget (stored as JSON on the registered model)."""

    fingerprint: str  # the test split's content fingerprint
    alpha: float  # the family-wise budget, fixed by the first decision on this test set
    planned: int  # decisions the budget is divided over
    decisions: int = 0
    spent: float = 0.0

    @property
    def remaining(self) -> float:
        """Alpha not yet spent."""
        return max(0.0, self.alpha - self.spent)

    @property
    def exhausted(self) -> bool:
        """No decision is left on this test set."""
        return self.decisions >= self.planned or self.remaining <= _EPS

    def next_level(self) -> float:
        """The one-sided level of the next decision: an equal share of what remains."""
        if self.exhausted:
            raise ValueError(f"the alpha budget of test set {self.fingerprint[:12]} is spent")
        return self.remaining / (self.planned - self.decisions)

    def after_decision(self, level: float) -> Ledger:
        """The ledger once a decision at `level` is recorded."""
        return replace(self, decisions=self.decisions + 1, spent=min(self.alpha, self.spent + level))

    def to_json(self) -> str:
        """The tag value."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Ledger:
        """Parse a stored ledger (ValueError when it is not one)."""
        d = json.loads(text)
        return cls(str(d["fingerprint"]), float(d["alpha"]), int(d["planned"]), int(d["decisions"]),
                   float(d["spent"]))


def open_ledger(stored: Ledger | None, fingerprint: str, alpha: float | None, planned: int | None) -> Ledger:
    """The ledger a decision on `fingerprint` uses: the stored one, or a fresh one with the given budget.

    A budget is fixed once: asking for a larger alpha or more decisions on a test set already looked at would
    let the family-wise rate exceed what the earlier decisions were promised. ValueError says so.
    """
    if stored is None:
        a = DEFAULT_ALPHA if alpha is None else alpha
        return Ledger(fingerprint, a, DEFAULT_PLANNED if planned is None else planned)
    for flag, want, have in (("--alpha", alpha, stored.alpha), ("--decisions", planned, stored.planned)):
        if want is not None and abs(float(want) - float(have)) > _EPS:
            raise ValueError(f"{flag} {want} differs from the budget of this test set ({flag} {have}, fixed by its "
                             f"first decision; {stored.decisions} made): leave {flag} out, or use a new test set")
    return stored
