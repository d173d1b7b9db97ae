"""The one exception type for bad user input: the CLI prints its message on one line and exits with code 2."""


class UsageError(ValueError):
    """Bad arguments or configuration; the message names the problem and how to fix it, on one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(message.split()))


def require(condition: bool, message: str) -> None:
    """Raise UsageError(message) unless condition holds."""
    if not condition:
        raise UsageError(message)
