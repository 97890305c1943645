"""Global average pooling: the mean over all of H x W, for any input size."""

from __future__ import annotations

import numpy as np

from cnnlab.errors import ShapeError


def global_avgpool_forward(x: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """Global average pooling.

    x: (N, C, H, W). Returns ``(out, cache)`` with out: (N, C) and cache x's shape.
    """
    if x.ndim != 4:
        raise ShapeError(f"global_avgpool: x must be (N, C, H, W), got shape {x.shape}")
    return x.mean(axis=(2, 3)), x.shape


def global_avgpool_backward(dout: np.ndarray, cache: tuple[int, ...]) -> np.ndarray:
    """Global average pooling backward: each of the H*W inputs gets ``dout / (H*W)``.

    dout: (N, C). Returns dx: (N, C, H, W).
    """
    H, W = cache[2:]
    dx = np.empty(cache, dtype=dout.dtype)
    dx[...] = (dout / (H * W))[:, :, None, None]
    return dx


class GlobalPoolKernels:
    """This module's kernels, as methods of the numpy kernel sets (see ``NumpyKernels``)."""

    global_avgpool_backward = staticmethod(global_avgpool_backward)
    global_avgpool_forward = staticmethod(global_avgpool_forward)
