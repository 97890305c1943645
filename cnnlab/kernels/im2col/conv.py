"""Vectorised conv2d: im2col turns the convolution into one matrix product.

With ``cols = im2col(x_pad)`` of shape (C*HH*WW, N*Ho*Wo) and ``w2 = w.reshape(F, C*HH*WW)``:

- forward: ``out2 = w2 @ cols + b``, (F, N*Ho*Wo), viewed as (N, F, Ho, Wo);
- backward: ``dw = dout2 @ cols.T``, ``dcols = w2.T @ dout2``, ``dx = col2im(dcols)``,
  ``db = dout2.sum(1)``, with ``dout2`` the upstream gradient laid out as (F, N*Ho*Wo).

No Python loop runs over samples or output pixels (col2im loops over the HH*WW kernel offsets
only). Same numbers as :mod:`cnnlab.kernels.naive.conv`, within float rounding.
"""

from __future__ import annotations

import numpy as np

from cnnlab.kernels.geometry import IntPair, conv_geometry, pad_spatial, pair
from cnnlab.kernels.im2col.columns import col2im, im2col

ConvCache = tuple[np.ndarray, np.ndarray, bool, tuple[int, ...], tuple[int, int], tuple[int, int]]


def conv2d_forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None,
    stride: IntPair = 1,
    pad: IntPair = 0,
) -> tuple[np.ndarray, ConvCache]:
    """Forward pass of a 2-D convolution (cross-correlation) as one matrix product.

    Args:
        x: input, (N, C, H, W).
        w: filters, (F, C, HH, WW).
        b: bias, (F,), or None for no bias.
        stride: step between windows, an int or a (sh, sw) pair.
        pad: zeros added on each side of H and W, an int or a (ph, pw) pair.

    Returns:
        out: (N, F, Ho, Wo) with ``Ho = 1 + (H + 2*ph - HH) // sh`` and
        ``Wo = 1 + (W + 2*pw - WW) // sw``; same dtype as x. It is a transposed view of the
        (F, N, Ho, Wo) product, not a copy; :func:`conv2d_backward` reads a dout in that same
        memory order without copying.
        cache: ``(cols, w, has_bias, x_shape, stride, pad)`` for :func:`conv2d_backward`.

    Raises:
        ShapeError: when the shapes do not fit (channel mismatch, ``Ho < 1``, ...).
    """
    Ho, Wo = conv_geometry(x.shape, w.shape, None if b is None else b.shape, stride, pad)
    sh, sw = pair(stride, "stride")
    ph, pw = pair(pad, "pad")
    N = x.shape[0]
    F, _, HH, WW = w.shape

    cols = im2col(pad_spatial(x, (ph, pw)), (HH, WW), (sh, sw))  # (C*HH*WW, N*Ho*Wo)
    out2 = w.reshape(F, -1) @ cols  # (F, N*Ho*Wo)
    if b is not None:
        out2 += b.reshape(F, 1)  # in place, so a float64 b cannot promote a float32 out
    out = out2.reshape(F, N, Ho, Wo).transpose(1, 0, 2, 3)  # (N, F, Ho, Wo)
    return out, (cols, w, b is not None, x.shape, (sh, sw), (ph, pw))


def conv2d_backward(
    dout: np.ndarray, cache: ConvCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Backward pass of :func:`conv2d_forward`: one matrix product each for dw and dx.

    Args:
        dout: upstream gradient, (N, F, Ho, Wo).
        cache: from :func:`conv2d_forward`.

    Returns:
        dx: (N, C, H, W); dw: (F, C, HH, WW); db: (F,), or None when b was None.
    """
    cols, w, has_bias, x_shape, stride, (ph, pw) = cache
    N, C, H, W = x_shape
    F = w.shape[0]

    # Free when dout has the memory order of this layer's out, else the one needed copy.
    dout2 = dout.transpose(1, 0, 2, 3).reshape(F, -1)  # (F, N*Ho*Wo)
    dw = (dout2 @ cols.T).reshape(w.shape)  # (F, C, HH, WW)
    db = dout2.sum(axis=1) if has_bias else None  # (F,)
    dcols = w.reshape(F, -1).T @ dout2  # (C*HH*WW, N*Ho*Wo)
    dx_pad = col2im(dcols, (N, C, H + 2 * ph, W + 2 * pw), w.shape[2:], stride)
    dx = dx_pad[:, :, ph : ph + H, pw : pw + W]  # (N, C, H, W); the padding's share is dropped
    return dx, dw, db
