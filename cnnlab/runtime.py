"""Process-wide runtime settings: thread counts, and whether im2col may use Winograd."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_threads: int | None = None
_controller: Any = None
_winograd = True


def set_winograd(on: bool) -> None:
    """Let the im2col conv use Winograd's algorithm where it fits (``trainer.winograd``), or
    compute every convolution from columns."""
    global _winograd
    _winograd = bool(on)


def winograd() -> bool:
    """Whether the im2col conv may use Winograd's algorithm (see :func:`set_winograd`)."""
    return _winograd


def set_threads(threads: int | None) -> None:
    """Give numpy's BLAS and torch the same thread count, so backends compare on equal terms.

    ``None`` leaves the libraries' defaults. threadpoolctl reaches the BLAS and OpenMP pools
    already loaded; torch's intra-op pool is set now if torch is loaded, else when cnnlab's
    torch kernels are first imported (:func:`apply_to_torch`), so numpy-only runs never pay
    for importing torch.
    """
    global _threads
    _threads = threads
    if threads is None:
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)
    if "torch" in sys.modules:
        apply_to_torch()


def threads() -> int:
    """The thread count in force: the one set by :func:`set_threads`, else the CPUs this
    process may run on (what BLAS and torch use by default)."""
    if _threads is not None:
        return _threads
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """BLAS on one thread for the duration: for code that runs several BLAS calls at once
    from its own threads (each call then stays on its caller's core)."""
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()  # inspecting the loaded libraries is slow: once
    with _controller.limit(limits=1, user_api="blas"):
        yield


def apply_to_torch() -> None:
    """Apply the thread count chosen by :func:`set_threads` to torch (no-op if none was)."""
    if _threads is not None:
        import torch

        torch.set_num_threads(_threads)
