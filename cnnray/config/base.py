"""The one base class of every config section: unknown keys, NaN and infinity are refused."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """A config section: extra keys are errors, assignments are validated, floats must be finite."""

    # Infinite or NaN floats are never a sensible setting (optim.lr=.inf would fail at the first step).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
