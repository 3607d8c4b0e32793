"""Error types: those that map to the command's exit codes (2 = bad input found before any work started),
and the training loop's own."""

from __future__ import annotations


class UserInputError(ValueError):
    """Bad config, data or arguments, detected before any work starts; the CLI exits 2 with the message."""


class ConfigError(UserInputError):
    """A config key or value is invalid; the message names the dotted key path and what is allowed."""


class DataError(UserInputError):
    """Input data is missing or unusable; the message names the path and the reason."""


class InvalidCardError(UserInputError):
    """A model card fails validation; the message names whose card it is and lists every problem."""

    def __init__(self, problems: list[str], where: str = "") -> None:
        self.problems, self.where = list(problems), where
        owner = f"the model card of {where}" if where else "the model card"
        super().__init__(f"{owner} is invalid: {'; '.join(self.problems)}")

    def at(self, where: str) -> InvalidCardError:
        """The same problems, naming `where` (e.g. models:/NAME/VERSION) as the card's owner."""
        return InvalidCardError(self.problems, where)

    def __reduce__(self):
        # Ray pickles worker exceptions; rebuild from the fields, not from the formatted message.
        return type(self), (self.problems, self.where)


class BudgetSpentError(RuntimeError):
    """The false-promotion budget (alpha) of a held-out test set is spent: no further decision may look at it.
    The command exits 1 (a refusal of the registry's state, not bad input) and names the way out."""


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; raised before the optimizer step so the weights stay finite."""

    def __init__(self, epoch: int, step: int, value: str = "nan") -> None:
        self.epoch, self.step, self.value = epoch, step, value
        super().__init__(f"non-finite loss ({value}) at epoch {epoch}, step {step}")

    def __reduce__(self):
        # Ray pickles worker exceptions; rebuild from the fields, not from the formatted message.
        return type(self), (self.epoch, self.step, self.value)


class FatalRunError(RuntimeError):
    """A failure that a restart from the latest checkpoint cannot fix (a full disk, a deterministic crash):
    the run ends FAILED at once instead of spending its `scaling.max_failures` retries."""


class StorageFullError(FatalRunError):
    """A checkpoint did not fit on the run folder's filesystem; the message names the path and the bytes."""

    def __init__(self, path: str, needed: int, free: int, latest: str | None = None) -> None:
        self.path, self.needed, self.free, self.latest = path, needed, free, latest
        keep = f"the last complete checkpoint {latest} is kept" if latest else "no earlier checkpoint exists"
        super().__init__(f"no space left on device writing a checkpoint to {path}: it needs about "
                         f"{needed:,} bytes and {free:,} bytes are free; {keep}; free space, then rerun with "
                         "train.resume=true")

    def __reduce__(self):
        return type(self), (self.path, self.needed, self.free, self.latest)
