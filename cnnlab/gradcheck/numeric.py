"""Centred numeric gradients, and the one measure every comparison in cnnlab uses.

The relative error of an analytic tensor a against a reference n (numeric differences or torch)
is ``‖a − n‖₂ / max(‖a‖₂ + ‖n‖₂, 1e-12)``, per tensor. A tensor whose true gradient is zero
(both norms below 1e-10) makes that ratio meaningless, so it is judged by its largest absolute
error instead. The worst element-wise error is reported alongside, as information.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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


def rel_error(a: np.ndarray, n: np.ndarray) -> float:
    """``‖a − n‖₂ / max(‖a‖₂ + ‖n‖₂, 1e-12)``, in float64."""
    a = np.asarray(a, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    return float(np.linalg.norm(a - n)) / max(
        float(np.linalg.norm(a)) + float(np.linalg.norm(n)), 1e-12
    )


@dataclass(frozen=True)
class Comparison:
    """How an analytic tensor a compares with a reference n.

    Attributes:
        rel_error: ``‖a − n‖₂ / max(‖a‖₂ + ‖n‖₂, 1e-12)``.
        worst_abs: the largest element-wise ``|a − n|`` (information only).
        worst_index: where that element is.
        zero: both norms below ``zero_norm``: the true gradient is zero, so the relative error
            means nothing and the check is judged by ``worst_abs`` instead.
    """

    rel_error: float
    worst_abs: float
    worst_index: tuple[int, ...]
    zero: bool

    def passed(self, rtol: float, atol_zero: float) -> bool:
        """Relative error within rtol, or, for a zero gradient, absolute error within atol."""
        return self.worst_abs <= atol_zero if self.zero else self.rel_error <= rtol


def compare(a: np.ndarray, n: np.ndarray, zero_norm: float = 1e-10) -> Comparison:
    """Compare analytic a with reference n (same shape) as this module's docstring defines."""
    a = np.asarray(a, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    if a.shape != n.shape:
        raise ValueError(f"gradient shape {a.shape} differs from reference shape {n.shape}")
    diff = np.abs(a - n)
    norm_a, norm_n = float(np.linalg.norm(a)), float(np.linalg.norm(n))
    index = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.size else ()
    return Comparison(
        rel_error=rel_error(a, n),
        worst_abs=float(diff.max()) if diff.size else 0.0,
        worst_index=tuple(int(i) for i in index),
        zero=norm_a < zero_norm and norm_n < zero_norm,
    )
