"""The few user-facing error types.

The CLI catches these once and prints them as a single line: :class:`UsageError` exits with
code 2 (the user asked for something that does not exist or does not fit), :class:`RunError`
with code 1 (something failed while running).
"""


class CnnlabError(Exception):
    """Base class of errors that are reported to the user as one line."""

    exit_code = 1


class UsageError(CnnlabError):
    """A user mistake caught before anything runs (bad option, key or value)."""

    exit_code = 2


class RunError(CnnlabError):
    """A failure while running (data missing, NaN loss, a check that failed)."""

    exit_code = 1


class ArgumentError(UsageError, ValueError):
    """An argument a layer or kernel cannot take (a dropout ``p`` of 1.5, a label >= K).

    Also a ``ValueError``, as NumPy and PyTorch raise for such arguments, so that library
    users can catch it the usual way.
    """


class ShapeError(ArgumentError):
    """Shapes that do not fit a layer (``Ho < 1``, channel mismatch, ...)."""


class BackendUnavailableError(UsageError):
    """A backend that cannot run on this machine (``cuda`` without a GPU)."""
