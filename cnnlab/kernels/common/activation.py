"""ReLU and leaky ReLU: ``max(x, 0)`` and ``x`` where positive, ``slope * x`` elsewhere."""

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

    dout: upstream gradient of out's shape. Returns dx: dout where ``x > 0`` and where x is
    NaN, 0 where ``x <= 0``, as in PyTorch.
    """
    x = cache
    # A product with the mask, not np.where: several times faster on a random sign pattern.
    return dout * ~(x <= 0)


def leaky_relu_forward(x: np.ndarray, slope: float = 0.01) -> tuple[np.ndarray, tuple]:
    """Leaky ReLU forward: ``out = x`` where ``x > 0``, else ``slope * x``.

    x: any shape. Returns ``(out, cache)`` with out of x's shape and dtype; cache is
    ``(x, slope)``.
    """
    # Two clipped copies rather than np.where on a mask: plain elementwise passes, and exact
    # (one of the two terms is always 0).
    out = np.maximum(x, 0) + x.dtype.type(slope) * np.minimum(x, 0)
    return out, (x, slope)


def leaky_relu_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """Leaky ReLU backward: ``dx = dout`` where ``x > 0``, else ``slope * dout``; at
    ``x == 0`` the slope, as in PyTorch."""
    x, slope = cache
    positive = x > 0
    dx = dout * positive
    dx += dout * dout.dtype.type(slope) * ~positive
    return dx


class ActivationKernels:
    """This module's kernels, as methods of the numpy kernel sets (see ``NumpyKernels``)."""

    leaky_relu_backward = staticmethod(leaky_relu_backward)
    leaky_relu_forward = staticmethod(leaky_relu_forward)
    relu_backward = staticmethod(relu_backward)
    relu_forward = staticmethod(relu_forward)
