"""What `load_initial_weights` did: tensors loaded, the head, the input conv, attention started near identity."""

from __future__ import annotations

from dataclasses import dataclass, field

SHOWN = 8  # names listed per group in messages; the rest are counted


def listed(names: list[str], limit: int = SHOWN) -> str:
    """`names` joined by commas, the first `limit` of them, with a count of the rest."""
    more = len(names) - limit
    return ", ".join(names[:limit]) + (f" ... ({more} more)" if more > 0 else "")


@dataclass
class LoadReport:
    """The outcome of loading initial weights into a model; `lines()` for the log."""

    loaded: int                                   # tensors loaded as-is
    head: str | None = None                       # what happened to the classifier head, None when loaded as-is
    input_conv: str | None = None                 # how the input conv was adapted, None when loaded as-is
    near_identity: list[str] = field(default_factory=list)  # attention modules absent from the weights
    skipped: list[str] = field(default_factory=list)        # keys not loaded (strict=False only)
    skip_reasons: dict[str, str] = field(default_factory=dict)  # key -> why it was skipped

    def lines(self) -> list[str]:
        """Log lines, one per thing that happened."""
        out = [f"loaded {self.loaded} tensors as-is"]
        if self.head:
            out.append(f"head: {self.head}")
        if self.input_conv:
            out.append(f"input conv: {self.input_conv}")
        if self.near_identity:
            out.append(f"attention started near identity (not in the weights): {listed(self.near_identity)}")
        if self.skipped:
            reasons: dict[str, list[str]] = {}
            for key in self.skipped:
                reasons.setdefault(self.skip_reasons.get(key, "not loaded"), []).append(key)
            for why, keys in reasons.items():
                out.append(f"skipped {len(keys)} ({why}): {listed(keys)}")
        return out
