"""Process-wide runtime settings: thread counts and OpenBLAS's idle threads."""

from __future__ import annotations

import os
import subprocess
import sys

from cnnlab import runtime

SHOW = "import cnnlab, os; print(os.environ['OPENBLAS_THREAD_TIMEOUT'])"


def _timeout_seen(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", SHOW], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_importing_cnnlab_puts_idle_openblas_threads_to_sleep_unless_the_user_chose():
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    assert _timeout_seen(env) == "4"
    assert _timeout_seen({**env, "OPENBLAS_THREAD_TIMEOUT": "20"}) == "20"


def test_threads_reports_the_count_set(monkeypatch):
    monkeypatch.setattr(runtime, "_threads", 3)
    assert runtime.threads() == 3
    monkeypatch.setattr(runtime, "_threads", None)
    assert runtime.threads() >= 1
