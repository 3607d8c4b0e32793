"""The options of `cnnray promote`, validated without MLflow or Ray."""

from __future__ import annotations

from dataclasses import dataclass, field

from cnnray.errors import UserInputError
from cnnray.promote.stats import METRICS

HELD_OUT = "test"
SELECTION_SPLITS = ("val", "train")  # what training chose its epoch, weights and stopping on (and Tune its winner)


@dataclass
class PromoteOptions:
    """What the gate is asked to do. `alpha`/`decisions` None: the test set's stored budget (or the defaults)."""

    tracking_uri: str
    name: str = "cnnray"
    candidate: str = "challenger"  # an alias or a version number
    metric: str = "accuracy"
    min_delta: float = 0.0
    floor: float = 0.0
    data_overrides: list[str] = field(default_factory=list)
    split: str = HELD_OUT
    dry_run: bool = False
    experiment: str = "cnnray"
    resamples: int = 10_000
    seed: int = 0
    alpha: float | None = None  # family-wise false-promotion budget of one test set
    decisions: int | None = None  # decisions that budget is divided over
    allow_selection_split: bool = False
    allow_unverified_champion: bool = False
    confidence: float | None = None  # replaced by alpha; given: refused with the reason

    def validate(self) -> None:
        """UserInputError naming the option when a value is out of range."""
        if self.confidence is not None:
            raise UserInputError("--confidence was replaced by --alpha: the gate now spends a false-promotion budget "
                                 "per test set (default 0.05 over 20 decisions); see `cnnray promote --help`")
        if self.metric not in METRICS:
            raise UserInputError(f"--metric {self.metric!r} is not valid; valid metrics: {', '.join(METRICS)}")
        if self.split not in (HELD_OUT, *SELECTION_SPLITS):
            raise UserInputError(f"--split {self.split!r} is not valid; valid splits: test, val, train")
        if self.split in SELECTION_SPLITS and not self.allow_selection_split:
            raise UserInputError(
                f"--split {self.split}: every version was selected on its {self.split} split (best epoch, EMA or raw "
                "weights, early stopping, Tune's winner), so its luck there would count as evidence and a no-better "
                "candidate gets promoted far more often than the gate promises; judge on the held-out test split "
                "(the default), or pass --allow-selection-split to decide anyway (the decision is tagged as such)")
        if self.alpha is not None and not 0 < self.alpha < 0.5:
            raise UserInputError(f"--alpha must lie in (0, 0.5), got {self.alpha}")
        if self.decisions is not None and not 1 <= self.decisions <= 10_000:
            raise UserInputError(f"--decisions must lie in [1, 10000], got {self.decisions}")
        if not 0 <= self.floor <= 1:
            raise UserInputError(f"--floor must lie in [0, 1], got {self.floor}")
        if not -1 < self.min_delta < 1:
            raise UserInputError(f"--min-delta must lie in (-1, 1), got {self.min_delta}")
        if self.resamples < 1000:
            raise UserInputError(f"--resamples must be at least 1000 (the bound is a small quantile), got "
                                 f"{self.resamples}")

    @property
    def held_out(self) -> bool:
        """Judged on the test split (spends the test set's budget)."""
        return self.split == HELD_OUT

    @property
    def candidate_uri(self) -> str:
        """models:/NAME/VERSION for a number, models:/NAME@ALIAS otherwise."""
        c = self.candidate
        return f"models:/{self.name}/{c}" if c.isdigit() else f"models:/{self.name}@{c}"
