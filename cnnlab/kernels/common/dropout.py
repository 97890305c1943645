"""Inverted dropout with drop probability p (PyTorch's convention).

Masks are drawn only by :func:`dropout_mask` from the project's numpy generator, and passed to
the kernel, so every backend (torch included) drops exactly the same units.
"""

from __future__ import annotations

import numpy as np

from cnnlab.errors import ArgumentError, ShapeError


def check_p(p: float) -> None:
    """An ArgumentError unless p, the probability of dropping a unit, lies in [0, 1)."""
    # Written as a negated range test so that NaN is rejected too.
    if not 0.0 <= p < 1.0:
        raise ArgumentError(f"dropout: p must be in [0, 1), got {p!r}")


def dropout_mask(rng: np.random.Generator, shape: tuple[int, ...], p: float) -> np.ndarray:
    """Draw a bool keep-mask of ``shape``: each unit is kept with probability ``1 - p``."""
    check_p(p)
    return rng.random(shape) >= p


def dropout_forward(
    x: np.ndarray, mask: np.ndarray, p: float
) -> tuple[np.ndarray, tuple[np.ndarray, float]]:
    """Inverted dropout: ``out = x * mask / (1 - p)``.

    Scaling the kept units at training time keeps the expected activation unchanged, so
    evaluation simply skips the layer. x: any shape; mask: bool of x's shape. Returns
    ``(out, cache)`` with cache ``(mask, p)``.
    """
    check_p(p)
    if mask.shape != x.shape:
        raise ShapeError(f"dropout: mask {mask.shape} must have x's shape {x.shape}")
    mask = mask.astype(bool, copy=False)
    return x * mask / (1.0 - p), (mask, p)


def dropout_backward(dout: np.ndarray, cache: tuple[np.ndarray, float]) -> np.ndarray:
    """Dropout backward: ``dx = dout * mask / (1 - p)``."""
    mask, p = cache
    return dout * mask / (1.0 - p)


class DropoutKernels:
    """This module's kernels, as methods of the numpy kernel sets (see ``NumpyKernels``)."""

    dropout_backward = staticmethod(dropout_backward)
    dropout_forward = staticmethod(dropout_forward)
