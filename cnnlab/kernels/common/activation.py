"""ReLU: ``out = max(x, 0)``; the gradient passes where the input was positive."""

from __future__ import annotations

import numpy as np


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ReLU forward.

    x: any shape. Returns ``(out, cache)`` with out of x's shape and dtype; cache is x.
    """
    out = np.maximum(x, 0)
    return out, x


def relu_backward(dout: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """ReLU backward.

    dout: upstream gradient of out's shape. Returns dx; at ``x == 0`` the gradient is 0, as in
    PyTorch.
    """
    x = cache
    return dout * (x > 0)


class ActivationKernels:
    """This module's kernels, as methods of the numpy kernel sets (see ``NumpyKernels``)."""

    relu_backward = staticmethod(relu_backward)
    relu_forward = staticmethod(relu_forward)
