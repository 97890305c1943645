"""How cnnlab's output reaches the console: progress and results on stdout, warnings and errors
on stderr (the job logging config, conf/hydra/job_logging/rich.yaml, routes them), and whole
lines off a terminal, where rich would fold every line at its fallback width of 80 columns and
pad it with spaces, breaking paths and URLs apart.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console, ConsoleRenderable, Group
from rich.logging import RichHandler
from rich.text import Text

if TYPE_CHECKING:
    from rich.traceback import Traceback

# The console width while stdout is a pipe or a file: wider than any line cnnlab writes.
PIPED_WIDTH = 10_000


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a stand-in without isatty, or a closed stream
        return False


@contextmanager
def wide_when_piped() -> Iterator[None]:
    """While a command runs with stdout a pipe or a file, rich consoles are PIPED_WIDTH columns
    wide: tables keep their natural width and no line folds.

    Commands make their own ``Console()``; the ``COLUMNS`` variable, which rich reads when a
    console is made, reaches them all (and the processes a run starts). It replaces any
    ``COLUMNS`` already set, often a terminal's width that a parent process left behind (GNU
    readline sets it), and is restored afterwards, so that a traceback ``--verbose`` prints
    after the run has the usual width.
    """
    if _is_terminal(sys.stdout):
        yield
        return
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(PIPED_WIDTH)
    try:
        yield
    finally:
        if before is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = before


def _terminal_width(stream: TextIO) -> int | None:
    """The width for a console on the terminal ``stream``: None (rich follows the terminal, as
    it is resized) unless ``COLUMNS`` asks for more than the terminal has, as
    :func:`wide_when_piped` does for a piped stdout while stderr is a terminal; then the
    terminal's own width, since lines padded beyond it would each fill several rows."""
    columns = os.environ.get("COLUMNS", "")
    try:
        width = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return None
    return width if columns.isdigit() and int(columns) > width else None


class ConsoleHandler(RichHandler):
    """The job log on the console: rich's level and message columns on a terminal; elsewhere
    (a pipe, a file) each message is one line, however long: neither folded nor padded.

    Args:
        stderr: write to stderr instead of stdout.
        show_time, show_path: rich's columns; off, since the run's log file has times.
        options: RichHandler's other options.
    """

    def __init__(
        self,
        stderr: bool = False,
        *,
        show_time: bool = False,
        show_path: bool = False,
        **options: Any,
    ) -> None:
        stream = sys.stderr if stderr else sys.stdout
        self.plain = not _is_terminal(stream)
        # soft_wrap: rich neither wraps nor crops what it prints.
        width = None if self.plain else _terminal_width(stream)
        console = Console(stderr=stderr, soft_wrap=self.plain, width=width)
        super().__init__(console=console, show_time=show_time, show_path=show_path, **options)

    def render(
        self,
        *,
        record: logging.LogRecord,
        traceback: Traceback | None,
        message_renderable: ConsoleRenderable,
    ) -> ConsoleRenderable:
        """The level and the message; off a terminal as one line of text, since rich's columns
        are a table as wide as the console, padded to its width."""
        if not self.plain:
            return super().render(
                record=record, traceback=traceback, message_renderable=message_renderable
            )
        line = Text.assemble(self.get_level_text(record), " ", message_renderable)
        return line if traceback is None else Group(line, traceback)


class BelowLevel(logging.Filter):
    """Passes the records below ``level`` (a name such as ``WARNING``, or a number): stdout's
    handler leaves warnings and errors to stderr's."""

    def __init__(self, level: str | int) -> None:
        super().__init__()
        self.levelno = level if isinstance(level, int) else logging.getLevelNamesMapping()[level]

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < self.levelno
