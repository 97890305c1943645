"""Centred numeric differences: the reference an analytic gradient is checked against, with an
estimate of their own error.

A centred difference ``D(h) = (f(x + h u) - f(x - h u)) / 2h`` along u is off from the true
derivative by a truncation error ``c h^2`` (the function's curvature) plus a rounding error
of about ``eps |f| / h``. Neither is known in advance, and the rounding error grows with the
size of the layer (a wider sum, a larger ``|f|``), so no fixed tolerance fits every layer.
:func:`numeric_reference` therefore evaluates D at h and at 2h: their difference is
``-3 c h^2`` plus two independent rounding errors, one of them about half D(h)'s, so
``‖D(h) - D(2h)‖`` is an estimate of D(h)'s own error that a gate can scale its tolerance by.

A small layer is differenced element by element (u = each unit vector). A wide one is
differenced along a few random Gaussian directions v instead, against the analytic
``<g, v>`` (:func:`directional_derivatives`): the cost no longer grows with its size.

The measure of the comparison is :mod:`cnnlab.compare`'s relative error.
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


def directional_derivatives(
    f: Callable[[np.ndarray], float], x: np.ndarray, directions: np.ndarray, h: float
) -> np.ndarray:
    """Centred differences ``(f(x + h v) - f(x - h v)) / 2h`` along each direction v.

    directions: shape ``(k, *x.shape)``; returns k derivatives. x is not modified. With v's
    elements of order 1, every element moves by about h, as in :func:`numeric_gradient`.
    """
    return np.array([(f(x + h * v) - f(x - h * v)) / (2 * h) for v in directions])


@dataclass(frozen=True)
class NumericReference:
    """What an analytic gradient is judged on, and its numeric reference.

    Attributes:
        analytic: the analytic values compared: the gradient itself, its entries at sampled
            coordinates, or its projections ``<g, v>`` on the directions.
        numeric: the centred differences at step h, of the same shape.
        error: ``‖D(h) - D(2h)‖₂``, the estimate of ``numeric``'s own error (absolute).
        method: how the reference was taken, for the record: ``elements``,
            ``<k> directions`` or ``<k> sampled``.
        resolution: the smallest error the differences can have, known from the loss's
            rounding (absolute, over all entries; 0: not known). D(h) and D(2h) can round
            alike and agree exactly, so ``error`` alone may miss it.
    """

    analytic: np.ndarray
    numeric: np.ndarray
    error: float
    method: str
    resolution: float = 0.0


def estimated(
    analytic: np.ndarray, difference: Callable[[float], np.ndarray], h: float, method: str
) -> NumericReference:
    """The reference ``difference(h)`` with its error estimated from ``difference(2 * h)``.

    2h rather than h/2: the second difference then has half the rounding error of the first
    instead of twice it, so the estimate is not dominated by its own noise.
    """
    numeric = difference(h)
    error = float(np.linalg.norm(numeric - difference(2 * h)))
    return NumericReference(np.asarray(analytic, dtype=np.float64), numeric, error, method)


def numeric_reference(
    f: Callable[[np.ndarray], float],
    x: np.ndarray,
    grad: np.ndarray,
    h: float,
    directions: np.ndarray | None = None,
) -> NumericReference:
    """The numeric reference of ``grad`` (the analytic gradient of f at x), error estimated.

    Without directions every element of x is differenced and compared with its own gradient
    entry, which says where a wrong gradient is wrong. With directions (shape
    ``(k, *x.shape)``, Gaussian) ``<grad, v>`` is compared with the difference of f along
    each v: 4 evaluations of f per direction instead of 4 per element.

    Why a few directions suffice: if the analytic gradient is g + e instead of g, every
    projection is off by ``<e, v>``, which for a Gaussian v is normal with standard deviation
    ``‖e‖``. It is zero only for v orthogonal to e, a set of probability zero, so a scaled
    gradient (e = 0.01 g), a wrong sign (e = -2 g on some entries) or a missing term moves
    ``<g, v>`` by about ``‖e‖`` for almost every v, while the projections themselves are
    about ``‖g‖``: the relative error is about ``‖e‖ / ‖g‖``, as element by element. What
    the directions give up is where the error is: a record's worst index is then a
    direction's.
    """
    x = np.array(x, dtype=np.float64)  # numeric_gradient perturbs its argument in place
    if directions is None:
        return estimated(grad, lambda step: numeric_gradient(f, x, step), h, "elements")
    projections = np.tensordot(directions, np.asarray(grad, dtype=np.float64), axes=x.ndim)
    return estimated(
        projections,
        lambda step: directional_derivatives(f, x, directions, step),
        h,
        f"{len(directions)} directions",
    )
