"""Early stopping on a monitored validation metric."""

from __future__ import annotations

from typing import Any


class EarlyStopping:
    """Stop after `patience` consecutive epochs whose value did not beat the best by more than `min_delta`."""

    def __init__(self, patience: int, min_delta: float = 0.0, mode: str = "max") -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.patience, self.min_delta, self.mode = patience, min_delta, mode
        self.best: float | None = None
        self.bad_epochs = 0
        self.improved = False
        self.should_stop = False

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "max":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def step(self, value: float) -> bool:
        """Record one epoch's value; True when training should stop."""
        self.improved = self._better(value)
        if self.improved:
            self.best, self.bad_epochs = float(value), 0
        else:
            self.bad_epochs += 1
        self.should_stop = self.bad_epochs >= self.patience
        return self.should_stop

    def state_dict(self) -> dict[str, Any]:
        """Plain numbers only."""
        return {"best": self.best, "bad_epochs": self.bad_epochs, "improved": self.improved,
                "should_stop": self.should_stop}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Restore the counters saved by state_dict()."""
        self.best, self.bad_epochs = sd["best"], int(sd["bad_epochs"])
        self.improved, self.should_stop = bool(sd["improved"]), bool(sd["should_stop"])
