"""A run directory has one owner: the lock that holds it, and the run it already holds.

``cnnlab train`` takes its run directory before Hydra writes anything into it: an OS lock
(``fcntl.flock`` on ``<run dir>/.cnnlab.lock``) that its process holds until it ends, so a
second run into the same directory is refused at once. The kernel drops the lock when the
process dies, even by SIGKILL, so a crashed run never leaves a stale lock behind. Some network
file systems do not honour ``flock``; there two runs into one folder are not stopped.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path
from types import TracebackType

from cnnlab.errors import RunError

LOCK = ".cnnlab.lock"
# The record Hydra leaves in every run directory: a folder that has it holds a run.
HYDRA_RECORD = Path(".hydra") / "config.yaml"


class RunLock:
    """The exclusive lock on a run directory, held from construction until :meth:`release`
    (or the end of a ``with`` block, or the process)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            self._fd: int | None = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise RunError(f"cannot use {run_dir} as a run directory: {exc.strerror}") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.release()
            raise RunError(
                f"{run_dir} is in use by another cnnlab run; wait for it to end, or choose "
                "another hydra.run.dir"
            ) from None

    def release(self) -> None:
        """Give the directory up (closing the descriptor drops the lock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def in_use(run_dir: Path) -> bool:
    """Whether a live process holds ``run_dir``'s lock now (a run is going on there).

    Probes with a shared lock taken and dropped at once. A run that starts into the directory
    in that same instant is refused as 'in use', so ask only about runs that say they are
    running (see :mod:`cnnlab.runs.status`), not about every directory.
    """
    try:
        fd = os.open(run_dir / LOCK, os.O_RDONLY)
    except OSError:  # no lock file: no run has ever taken the directory
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # drops the probe's lock, if it got one
    return False


def holds_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` already holds a run (Hydra's record of one is there)."""
    return (run_dir / HYDRA_RECORD).is_file()


def clear(run_dir: Path) -> None:
    """Remove everything a previous run left in ``run_dir`` (``trainer.overwrite=true``),
    keeping the lock file this process holds."""
    for entry in run_dir.iterdir():
        if entry.name == LOCK:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
