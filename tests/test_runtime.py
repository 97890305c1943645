"""Thread counts and OpenBLAS's idle threads: set up by the entry point and by whoever holds
the options, never by importing cnnlab."""

from __future__ import annotations

import os
import subprocess
import sys

from cnnlab import runtime

ENTRY_POINT = (
    "import os, sys\n"
    "sys.argv = ['cnnlab', '--version']\n"
    "from cnnlab.cli import main\n"
    "try:\n"
    "    main()\n"
    "except SystemExit:\n"
    "    pass\n"
    "print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'))\n"
)
IMPORT = (
    "import os, sys, cnnlab, cnnlab.runtime, cnnlab.cli\n"
    "print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'))\n"
    "print(sorted(m for m in ('numpy', 'threadpoolctl', 'torch') if m in sys.modules))\n"
)
USE_THREADS = (
    "import sys, torch, numpy\n"
    "from threadpoolctl import threadpool_info\n"
    "from cnnlab import runtime\n"
    "def blas():\n"
    "    return sorted({p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas'})\n"
    "before = blas(), torch.get_num_threads()\n"
    "runtime.use_threads(None)\n"
    "print(before == (blas(), torch.get_num_threads()))\n"
    "runtime.use_threads(1)\n"
    "print(blas(), torch.get_num_threads())\n"
)


def _python(program: str, env: dict[str, str] | None = None) -> list[str]:
    """The lines ``program`` prints, run in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.splitlines()


def test_the_entry_point_puts_idle_openblas_threads_to_sleep_unless_the_user_chose():
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    assert _python(ENTRY_POINT, env)[-1] == "4"
    assert _python(ENTRY_POINT, {**env, "OPENBLAS_THREAD_TIMEOUT": "20"})[-1] == "20"


def test_importing_cnnlab_sets_nothing_and_loads_no_numeric_library():
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    assert _python(IMPORT, env) == ["None", "[]"]


def test_use_threads_gives_blas_and_torch_the_count_and_none_leaves_them():
    unchanged, limited = _python(USE_THREADS)
    assert unchanged == "True"
    assert limited == "[1] 1"


def test_cpu_count_is_the_cpus_this_process_may_use():
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    assert runtime.cpu_count() == (expected or os.cpu_count() or 1)
