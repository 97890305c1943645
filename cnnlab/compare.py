"""How an array compares with a reference: the one measure every check and bench uses.

The relative error of an analytic tensor a against a reference n (numeric differences or torch)
is ``‖a − n‖₂ / max(‖a‖₂ + ‖n‖₂, 1e-12)``, per tensor. A tensor whose true gradient is zero
(both norms below 1e-10) makes that ratio meaningless, so it is judged by its largest absolute
error instead. The worst element-wise error is reported alongside, as information.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
