"""Running the ``cnnlab`` command in a subprocess, as a user would, for the CLI tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_cnnlab(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """``cnnlab <args>`` in ``cwd`` (where its outputs/ go), output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "cnnlab", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
