"""The dense pieces between conv blocks: linear (fully connected), flatten, residual add."""

from __future__ import annotations

import math

import numpy as np

from cnnlab.errors import ShapeError


def check_linear(x: tuple[int, ...], w: tuple[int, ...], b: tuple[int, ...] | None) -> None:
    """A ShapeError unless x: (N, D), w: (M, D) and b: (M,) or None fit together."""
    if len(x) != 2 or len(w) != 2:
        raise ShapeError(f"linear: x must be (N, D) and w (M, D), got x {x} and w {w}")
    if x[1] != w[1]:
        raise ShapeError(f"linear: x {x} has {x[1]} features but w {w} expects {w[1]}")
    if b is not None and b != (w[0],):
        raise ShapeError(f"linear: b must be ({w[0]},) for w {w}, got {b}")


def linear_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, bool]]:
    """Fully connected layer: ``out = x @ w.T + b``.

    x: (N, D); w: (M, D) (PyTorch's layout); b: (M,) or None. Returns ``(out, cache)`` with
    out: (N, M) and cache ``(x, w, has_bias)``.
    """
    check_linear(x.shape, w.shape, None if b is None else b.shape)
    out = x @ w.T  # (N, M)
    if b is not None:
        out = out + b
    return out, (x, w, b is not None)


def linear_backward(
    dout: np.ndarray, cache: tuple[np.ndarray, np.ndarray, bool]
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Linear backward.

    dout: (N, M). Returns ``(dx, dw, db)``: dx (N, D), dw (M, D), db (M,) or None when the
    forward pass had no bias.
    """
    x, w, has_bias = cache
    dx = dout @ w  # (N, D)
    dw = dout.T @ x  # (M, D)
    db = dout.sum(axis=0) if has_bias else None
    return dx, dw, db


def flatten_forward(x: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """Flatten every axis but the batch axis.

    x: (N, ...). Returns ``(out, cache)`` with out: (N, prod(rest)) and cache x's shape.
    """
    if x.ndim < 1:
        raise ShapeError(f"flatten: x needs a batch axis, got shape {x.shape}")
    # Sizes spelled out: -1 is ambiguous for an empty batch.
    return x.reshape(x.shape[0], math.prod(x.shape[1:])), x.shape


def flatten_backward(dout: np.ndarray, cache: tuple[int, ...]) -> np.ndarray:
    """Flatten backward: dout (N, prod(rest)) -> dx of the original shape."""
    return dout.reshape(cache)


def add_forward(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, None]:
    """Residual addition ``out = a + b`` of two arrays of the same shape.

    Broadcasting is refused on purpose: in a residual block a shape mismatch means the shortcut
    is missing a projection, which broadcasting would hide. Returns ``(out, None)``: the
    backward pass needs nothing from the forward pass.
    """
    if a.shape != b.shape:
        raise ShapeError(f"add: shapes must match, got a {a.shape} and b {b.shape}")
    return a + b, None


def add_backward(dout: np.ndarray, cache: None) -> tuple[np.ndarray, np.ndarray]:
    """Residual addition backward: ``(da, db)``, both equal to dout.

    db is a copy so that callers may accumulate into either branch's gradient in place.
    """
    return dout, dout.copy()


class LinearKernels:
    """This module's kernels, as methods of the numpy kernel sets (see ``NumpyKernels``)."""

    add_backward = staticmethod(add_backward)
    add_forward = staticmethod(add_forward)
    flatten_backward = staticmethod(flatten_backward)
    flatten_forward = staticmethod(flatten_forward)
    linear_backward = staticmethod(linear_backward)
    linear_forward = staticmethod(linear_forward)
