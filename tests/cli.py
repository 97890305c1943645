"""Running the ``cnnlab`` command in a subprocess, as a user would, for the CLI tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# A one-epoch threelayer run on a few hundred generated shapes: a second or two of training.
TINY = [
    "data.train_size=300",
    "data.test_size=100",
    "model.filters=4",
    "model.hidden=16",
    "trainer.epochs=1",
    "trainer.batch_size=20",
    "trainer.threads=1",
]


def run_cnnlab(
    *args: str, cwd: Path, timeout: int = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``cnnlab <args>`` in ``cwd`` (where its outputs/ go), output captured as text.

    env: variables to set on top of this process's environment.
    """
    return subprocess.run(
        [sys.executable, "-m", "cnnlab", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **env} if env else None,
    )
