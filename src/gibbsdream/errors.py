"""The one exception type for bad input.

Everything that a user can get wrong (a missing corpus, an impossible temperature, a foreign
checkpoint) raises :class:`UsageError` with a message that says what was wrong and what to do.
The command line turns it into a one-line message and exit code 2; the Python API lets it
propagate (it is a ``ValueError``, so ``except ValueError`` keeps working).
"""


class UsageError(ValueError):
    """Bad input from the user; the message says what was wrong and how to fix it."""


class Terminated(KeyboardInterrupt):
    """The process was asked to stop (SIGTERM): handled like Ctrl+C, with exit code 143."""
