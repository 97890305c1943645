"""Thread counts and OpenBLAS's idle threads: functions that set up the numeric libraries.

Nothing is kept here: kernel sets and engines hold their own options and call these when they
are built. Importing this module loads none of the libraries it configures.
"""

from __future__ import annotations

import os
import sys


def cpu_count() -> int:
    """The CPUs this process may run on: what BLAS and torch use by default."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def use_threads(threads: int | None) -> None:
    """Give numpy's BLAS and torch the same thread count, so backends compare on equal terms.

    ``None`` leaves the libraries' defaults. threadpoolctl reaches the BLAS and OpenMP pools
    already loaded; torch is set only if it is loaded (torch kernels call this after importing
    it), so numpy-only runs never pay for importing torch.
    """
    if threads is None:
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(threads)


def sleep_idle_openblas_threads() -> None:
    """Make OpenBLAS put its threads to sleep as soon as a call ends; a value the user set is
    kept. Must run before numpy is imported."""
    # OpenBLAS's idle threads spin for about 2^28 cycles after every multi-threaded call,
    # holding a core that torch's threads or the im2col workers need next; 2^4 cycles puts them
    # to sleep at once. OpenBLAS reads the variable once, when it loads.
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
