"""Process-wide runtime settings: thread counts."""

from __future__ import annotations

import sys

_threads: int | None = None


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


def apply_to_torch() -> None:
    """Apply the thread count chosen by :func:`set_threads` to torch (no-op if none was)."""
    if _threads is not None:
        import torch

        torch.set_num_threads(_threads)
