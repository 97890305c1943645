"""Process-wide runtime settings: thread counts."""

from __future__ import annotations

import sys


def set_threads(threads: int | None) -> None:
    """Give numpy's BLAS and torch the same thread count, so backends compare on equal terms.

    ``None`` leaves the libraries' defaults. threadpoolctl reaches the BLAS and OpenMP pools
    that numpy (and torch) loaded; torch's intra-op pool is set separately.
    """
    if threads is None:
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)
    if "torch" in sys.modules or _torch_importable():
        import torch

        torch.set_num_threads(threads)


def _torch_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None
