"""Errors raised by the training loop."""

from __future__ import annotations


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; raised before the optimizer step so the weights stay finite."""

    def __init__(self, epoch: int, step: int, value: str = "nan") -> None:
        self.epoch, self.step, self.value = epoch, step, value
        super().__init__(f"non-finite loss ({value}) at epoch {epoch}, step {step}")

    def __reduce__(self):
        # Ray pickles worker exceptions; rebuild from the fields, not from the formatted message.
        return type(self), (self.epoch, self.step, self.value)
