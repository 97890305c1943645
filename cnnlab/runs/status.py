"""How a run ended: ``run.json``, kept from the run's first moment to its last.

results.json holds a run's status (completed, diverged, interrupted, failed), but it is written
when the run ends; a run that dies before then leaves none. So ``cnnlab train`` also keeps
``run.json``, a few lines rewritten whole (never half-written):

- when a session starts (a new run, or a resumed one): the run's name, when it first started,
  this session's start and process id, and ``"status": "running"`` (:func:`tracked`);
- when results.json is written: the status written there (:func:`record_status`);
- when the session ends by an exception: ``interrupted`` for Ctrl-C (and for SIGTERM outside
  the training loop, which :func:`tracked` turns into Ctrl-C), ``failed`` for anything else,
  unless the status already says why it stopped (a diverged run raises too).

What no code can record is a process that is gone at once (SIGKILL, out of memory, a machine
that went down). Its run.json still says ``running``; but the directory's lock
(:class:`cnnlab.rundir.RunLock`) is dropped by the kernel when its process dies, so
:func:`status_of` reads a ``running`` run whose lock is free as ``failed``. Runs from before
run.json have their results.json's status, or, with none, the same test of the lock.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from cnnlab.rundir import in_use
from cnnlab.runs.record import RUN, read_json

RUNNING = "running"
# Every status a run can have, in the order a table lists them.
STATUSES = ("completed", "diverged", "interrupted", "failed", RUNNING)


class _Ended(Protocol):
    """What a task returns (:class:`cnnlab.config.Outcome`): its exit code, at least."""

    code: int


T = TypeVar("T", bound=_Ended)


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def _write(run_dir: Path, record: dict[str, Any]) -> None:
    """Replace run.json whole: a reader never sees half of it."""
    partial = run_dir / f".{RUN}.partial"
    partial.write_text(json.dumps(record, indent=1))
    os.replace(partial, run_dir / RUN)


def begin(run_dir: Path, name: str) -> None:
    """Mark the run ``running`` for a session that starts now; a resumed run keeps the name
    and first start time its run.json already has."""
    before = read_json(run_dir / RUN)
    record = {
        "name": before.get("name") or name,
        "status": RUNNING,
        "started": before.get("started") or _now(),
        "session_started": _now(),
        "pid": os.getpid(),
    }
    _write(run_dir, record)


def record_status(run_dir: Path, status: str) -> None:
    """Set the run's status (what results.json says); nothing where run.json is missing (a
    run dir that :func:`tracked` did not start, such as a test's)."""
    record = read_json(run_dir / RUN)
    if record:
        _write(run_dir, record | {"status": status, "ended": _now()})


def _settle(run_dir: Path, status: str, over: tuple[str, ...]) -> None:
    """Set ``status`` where the recorded one is among ``over`` (what it says is not final)."""
    if read_json(run_dir / RUN).get("status") in over:
        record_status(run_dir, status)


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt, as Ctrl-C does, while the block runs (the training
    loop installs its own handler, which stops after the current step, for its part). Without
    it SIGTERM ends the process with no Python code run: no status recorded. Signal handlers
    can only be set from the main thread; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def tracked(run_dir: Path, name: str, session: Callable[[], T]) -> T:
    """Run ``session`` (one session of a training run) with its status kept in run.json from
    start to end, however it ends (see the module's docstring); returns what it returns."""
    begin(run_dir, name)
    try:
        with _sigterm_interrupts():
            outcome = session()
    except KeyboardInterrupt:
        _settle(run_dir, "interrupted", (RUNNING,))
        raise
    except BaseException:
        # "completed" too: the run trained, then finishing its outputs failed (exit code 1).
        _settle(run_dir, "failed", (RUNNING, "completed"))
        raise
    ended = {0: "completed", 130: "interrupted"}.get(outcome.code, "failed")
    _settle(run_dir, ended, (RUNNING,))  # where results.json could not be written
    return outcome


def status_of(run_dir: Path, record: dict[str, Any], results: dict[str, Any]) -> str:
    """The run's status from its run.json ``record`` and its ``results``: what they say, except
    that a run that says it is running (or, from before run.json, says nothing) while no process
    holds its directory's lock is ``failed``: its process died without a word."""
    status = record.get("status") or results.get("status") or ("completed" if results else None)
    if status in (None, RUNNING):
        return RUNNING if in_use(run_dir) else "failed"
    return str(status)
