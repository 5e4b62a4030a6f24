"""The one exception type for bad input.

Everything that a user can get wrong (a missing corpus, an impossible temperature, a foreign
checkpoint) raises :class:`UsageError` with a message that says what was wrong and what to do.
The command line turns it into a one-line message and exit code 2; the Python API lets it
propagate (it is a ``ValueError``, so ``except ValueError`` keeps working).
"""

import math
import numbers


class UsageError(ValueError):
    """Bad input from the user; the message says what was wrong and how to fix it."""


class ConfigError(UsageError):
    """A bad value of one or more named settings: a config field or a function argument.

    The message names them as Python does (``num_hidden must be a whole number >= 1, got 0``);
    ``fields`` holds those names, so the command line can show its flags instead (``--hidden``).
    """

    def __init__(self, message: str, *fields: str):
        super().__init__(message)
        self.fields = fields

    @property
    def field(self) -> str | None:
        """The setting the message is about (the first of ``fields``)."""
        return self.fields[0] if self.fields else None


class Terminated(KeyboardInterrupt):
    """The process was asked to stop (SIGTERM): handled like Ctrl+C, with exit code 143."""


def check_finite(owner, names) -> None:
    """Raise a UsageError for the first of ``owner``'s number fields ``names`` that is NaN or infinite
    (e.g. a training config's learning rate), naming it as Python code does: ``Owner.field``."""
    for name in names:
        value = getattr(owner, name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{type(owner).__name__}.{name} must be a finite number, got {value}", name)


def check_whole_number(what: str, name: str, value, low: int, high: int | None = None) -> None:
    """Raise ConfigError (field ``name``) unless ``value`` is a whole number (not a bool) in
    ``[low, high]`` (no upper bound when ``high`` is None); ``what`` says whose setting it is
    (``"builtin:shapes size"``)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)  # int and NumPy's integers
        or value < low
        or (high is not None and value > high)
    ):
        allowed = f"from {low} to {high}" if high is not None else f">= {low}"
        raise ConfigError(f"{what} must be a whole number {allowed}, got {value!r}", name)
