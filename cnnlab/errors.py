"""The few user-facing error types, and how a command reports them (:func:`reported`).

Every command catches these once and prints them as a single line: :class:`UsageError` exits
with code 2 (the user asked for something that does not exist or does not fit),
:class:`RunError` with code 1 (something failed while running).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


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


class KernelMissingError(RunError):
    """A kernel set without a layer's kernel, or without these arguments of it: a user's
    layer file that does not define the function, or a convention that has no such option
    (CS231n's conv has no groups). Checks and benches show the layer as skipped."""


class UserCodeError(RunError):
    """A user's layer function raised, ran past its time limit or took its worker process
    down; the message names the function and what happened."""


@contextmanager
def reported(command: str, verbose: bool = False) -> Iterator[None]:
    """What every command does with a user's mistake: a :class:`CnnlabError` is one red line
    on stderr, ``cnnlab <command>: <message>``, and its exit code (``verbose``: the traceback
    instead); Ctrl-C is one yellow line and exit code 130."""
    import typer  # here: the kernels and the training loop import this module too

    try:
        yield
    except CnnlabError as exc:
        if verbose:
            raise
        typer.secho(f"cnnlab {command}: {exc}", fg="red", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        # Commands keep what they finished when interrupted; this catches the moments between.
        typer.secho(f"cnnlab {command}: interrupted", fg="yellow", err=True)
        raise typer.Exit(130) from None
