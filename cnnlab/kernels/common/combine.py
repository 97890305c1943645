"""Kernels that combine a container's branches along channels: concatenation (Inception's
modules, DenseNet's blocks) and a per-channel gate (squeeze-and-excitation).

Neither has a loop worth showing, so naive and im2col share them. The backward of a
concatenation hands each input its own channels of dout as views (no copy); callers must not
write into them (as with ``add_backward``'s first gradient, which is dout itself).
"""

from __future__ import annotations

import itertools

import numpy as np

from cnnlab.errors import ShapeError


def check_concat(shapes: list[tuple[int, ...]]) -> None:
    """A ShapeError unless the shapes (N, C_i, ...) agree on every axis but the channels."""
    if not shapes:
        raise ShapeError("concat: needs at least one input")
    first = shapes[0]
    for i, shape in enumerate(shapes):
        if len(shape) < 2 or (shape[0], *shape[2:]) != (first[0], *first[2:]):
            raise ShapeError(
                f"concat: xs[{i}] {shape} must match xs[0] {first} on every axis but the "
                "channels (axis 1)"
            )


def concat_forward(*xs: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Concatenation along channels.

    xs: any number of arrays (N, C_i, H, W) (or (N, C_i, ...), alike but for C_i). Returns
    ``(out, cache)`` with out: (N, C_1 + ... + C_k, H, W), the xs in order, and cache the
    channel offsets where each input starts and the last ends.
    """
    check_concat([x.shape for x in xs])
    bounds = list(itertools.accumulate((x.shape[1] for x in xs), initial=0))
    return np.concatenate(xs, axis=1), bounds


def concat_backward(dout: np.ndarray, cache: list[int]) -> tuple[np.ndarray, ...]:
    """Concatenation backward: input i's gradient is dout's channels of input i, a view.

    dout: (N, C_1 + ... + C_k, H, W). Returns one gradient per input, (N, C_i, H, W).
    """
    return tuple(dout[:, a:b] for a, b in itertools.pairwise(cache))


def check_channel_gate(x_shape: tuple[int, ...], s_shape: tuple[int, ...]) -> None:
    """A ShapeError unless x is (N, C, H, W) and s (N, C)."""
    if len(x_shape) != 4 or tuple(s_shape) != tuple(x_shape[:2]):
        raise ShapeError(
            f"channel_gate: x must be (N, C, H, W) and s (N, C), got x {tuple(x_shape)} and s "
            f"{tuple(s_shape)}"
        )


def channel_gate_forward(
    x: np.ndarray, s: np.ndarray
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Per-channel gate: ``out = x * s[:, :, None, None]``.

    x: (N, C, H, W); s: (N, C), one factor per sample and channel (squeeze-and-excitation's
    sigmoid outputs). Returns ``(out, cache)`` with out: (N, C, H, W) and cache ``(x, s)``.
    """
    check_channel_gate(x.shape, s.shape)
    return np.multiply(x, s[:, :, None, None]), (x, s)


def channel_gate_backward(
    dout: np.ndarray, cache: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Channel gate backward: ``dx = dout * s[:, :, None, None]`` and ``ds`` = the sum over H
    and W of ``dout * x``.

    dout: (N, C, H, W). Returns (dx: (N, C, H, W), ds: (N, C)).
    """
    x, s = cache
    dx = np.multiply(dout, s[:, :, None, None])
    # One pass with no temporary of x's size (dout * x would be one).
    ds = np.einsum("nchw,nchw->nc", dout, x)
    return dx, ds


class CombineKernels:
    """This module's kernels, as methods of the numpy kernel sets (see ``NumpyKernels``)."""

    concat_backward = staticmethod(concat_backward)
    concat_forward = staticmethod(concat_forward)
    channel_gate_backward = staticmethod(channel_gate_backward)
    channel_gate_forward = staticmethod(channel_gate_forward)
