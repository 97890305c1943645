"""Centred numeric gradients: the reference an analytic gradient is checked against.

The measure of the comparison is :mod:`cnnlab.compare`'s relative error.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def numeric_gradient(f: Callable[[np.ndarray], float], x: np.ndarray, h: float) -> np.ndarray:
    """Centred differences ``(f(x + h e_i) - f(x - h e_i)) / 2h`` for every element i of x.

    f: a scalar function of an array of x's shape; x is perturbed in place and restored.
    Its error is O(h^2) in the function's curvature plus O(eps / h) rounding, which is why
    checks run in float64 with h around 1e-6.
    """
    grad = np.zeros_like(x)
    flat_x, flat_g = x.reshape(-1), grad.reshape(-1)  # views: writes reach x and grad
    for i in range(flat_x.size):
        saved = flat_x[i]
        flat_x[i] = saved + h
        plus = f(x)
        flat_x[i] = saved - h
        minus = f(x)
        flat_x[i] = saved
        flat_g[i] = (plus - minus) / (2 * h)
    return grad
