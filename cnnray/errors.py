"""Error types: those that map to the command's exit codes (2 = bad input found before any work started),
and the training loop's own."""


class UserInputError(ValueError):
    """Bad config, data or arguments, detected before any work starts; the CLI exits 2 with the message."""


class ConfigError(UserInputError):
    """A config key or value is invalid; the message names the dotted key path and what is allowed."""


class DataError(UserInputError):
    """Input data is missing or unusable; the message names the path and the reason."""


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; raised before the optimizer step so the weights stay finite."""

    def __init__(self, epoch: int, step: int, value: str = "nan") -> None:
        self.epoch, self.step, self.value = epoch, step, value
        super().__init__(f"non-finite loss ({value}) at epoch {epoch}, step {step}")

    def __reduce__(self):
        # Ray pickles worker exceptions; rebuild from the fields, not from the formatted message.
        return type(self), (self.epoch, self.step, self.value)
