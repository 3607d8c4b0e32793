"""Error types that map to the command's exit codes (2 = bad input found before any work started)."""


class UserInputError(ValueError):
    """Bad config, data or arguments, detected before any work starts; the CLI exits 2 with the message."""


class ConfigError(UserInputError):
    """A config key or value is invalid; the message names the dotted key path and what is allowed."""


class DataError(UserInputError):
    """Input data is missing or unusable; the message names the path and the reason."""
