"""Column helpers shared by the im2col kernels (conv, pooling): windows as matrix columns.

Layout: ``cols`` is ``(C*HH*WW, N*Ho*Wo)``: one row per (channel, kernel offset), one column per
output pixel, rows ordered (c, kh, kw) and columns (n, i, j). Why this one:

- conv forward is then a single ``w.reshape(F, -1) @ cols`` on two C-contiguous matrices, and
  ``dw = dout2 @ cols.T`` and ``dcols = w2.T @ dout2`` are plain BLAS calls on the same buffers
  (a transpose of a contiguous matrix is only a flag to BLAS, not a copy);
- building it copies runs of Wo pixels that are contiguous (stride 1) in x, where the
  (N*Ho*Wo, C*HH*WW) layout gathers short runs of WW values; this copy is the im2col backend's
  main cost besides BLAS;
- in col2im each kernel offset is one contiguous block of rows, (C, N, Ho, Wo), added into a
  strided slice of the gradient in one vectorised step.

The conv kernel builds these columns a chunk of samples at a time, and for narrow stride-1
outputs in a wider variant (:mod:`cnnlab.kernels.im2col.layouts`). Pooling uses
:func:`windows` and :func:`offset_slices` with its own offset-major layout.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from cnnlab.kernels.geometry import IntPair, pair


def windows(
    x_padded: np.ndarray, kernel: IntPair, stride: IntPair, dilation: IntPair = 1
) -> np.ndarray:
    """All sliding windows of x_padded as a read-only strided view: no data is copied.

    Args:
        x_padded: (N, C, Hp, Wp), already padded, with room for at least one window (callers
            check that first with :mod:`cnnlab.kernels.geometry`).
        kernel: window size (HH, WW), an int or a pair.
        stride: step (sh, sw), an int or a pair.
        dilation: spacing (dil_h, dil_w) of a window's taps, an int or a pair.

    Returns:
        (N, C, Ho, Wo, HH, WW) with ``Ho = 1 + (Hp - dil_h*(HH - 1) - 1) // sh``, likewise Wo;
        ``[n, c, i, j, p, q]`` is ``x_padded[n, c, i*sh + p*dil_h, j*sw + q*dil_w]``.
    """
    HH, WW = pair(kernel, "kernel")
    sh, sw = pair(stride, "stride")
    dil_h, dil_w = pair(dilation, "dilation")
    span = (dil_h * (HH - 1) + 1, dil_w * (WW - 1) + 1)
    # Every stride-1 window of the kernel's span is a view; taking every sh-th / sw-th of them,
    # and every dil-th tap within each, is still a view.
    win = sliding_window_view(x_padded, span, axis=(2, 3))
    return win[:, :, ::sh, ::sw, ::dil_h, ::dil_w]


def im2col(x_padded: np.ndarray, kernel: IntPair, stride: IntPair) -> np.ndarray:
    """Lay every window of x_padded out as one column of a matrix (exactly one copy).

    Args:
        x_padded: (N, C, Hp, Wp), already padded.
        kernel: window size (HH, WW), an int or a pair.
        stride: step (sh, sw), an int or a pair.

    Returns:
        cols: (C*HH*WW, N*Ho*Wo), C-contiguous, dtype of x_padded; rows ordered (c, kh, kw),
        columns (n, i, j), so ``cols[(c*HH + kh)*WW + kw, (n*Ho + i)*Wo + j] =
        x_padded[n, c, i*sh + kh, j*sw + kw]``.
    """
    win = windows(x_padded, kernel, stride)  # (N, C, Ho, Wo, HH, WW), a view
    N, C, Ho, Wo, HH, WW = win.shape
    cols = np.empty((C * HH * WW, N * Ho * Wo), dtype=x_padded.dtype)
    gather_windows(win, cols)
    return cols


def gather_windows(win: np.ndarray, cols: np.ndarray) -> None:
    """Copy the windows win: (N, C, Ho, Wo, HH, WW) into cols: (C*HH*WW, N*Ho*Wo)."""
    N, C, Ho, Wo, HH, WW = win.shape
    # One copy from the permuted view; its innermost run is Wo pixels of one input row.
    cols.reshape(C, HH, WW, N, Ho, Wo)[...] = win.transpose(1, 4, 5, 0, 2, 3)


def col2im(
    cols: np.ndarray,
    x_padded_shape: tuple[int, int, int, int],
    kernel: IntPair,
    stride: IntPair,
) -> np.ndarray:
    """Adjoint of :func:`im2col`: add every column back onto the window it came from.

    Args:
        cols: (C*HH*WW, N*Ho*Wo), in the layout :func:`im2col` produces (gradients of its
            output, typically).
        x_padded_shape: (N, C, Hp, Wp), the shape that was given to :func:`im2col`.
        kernel: window size (HH, WW), an int or a pair.
        stride: step (sh, sw), an int or a pair.

    Returns:
        dx_padded: (N, C, Hp, Wp), dtype of cols; overlapping windows sum up, pixels that no
        window covers are 0. A transposed view of a (C, N, Hp, Wp) buffer, not a copy.
    """
    N, C, Hp, Wp = x_padded_shape
    # Accumulate channel-first, in the order the columns are stored: each add then walks both
    # operands in the same order, where adding into (N, C, ...) would stride through one.
    dx_cnhw = np.zeros((C, N, Hp, Wp), dtype=cols.dtype)
    col2im_add(cols, dx_cnhw, kernel, stride)
    return dx_cnhw.transpose(1, 0, 2, 3)  # (N, C, Hp, Wp), a view


def col2im_add(
    cols: np.ndarray,
    dx_cnhw: np.ndarray,
    kernel: IntPair,
    stride: IntPair,
    dilation: IntPair = 1,
) -> None:
    """Add the columns onto dx_cnhw: (C, N, Hp, Wp) in place (the adjoint of im2col).

    cols: (C*HH*WW, N*Ho*Wo) in the layout of :func:`im2col`. One vectorised add per kernel
    offset; no Python loop over samples or pixels.
    """
    C, N, Hp, Wp = dx_cnhw.shape
    HH, WW = pair(kernel, "kernel")
    sh, sw = pair(stride, "stride")
    dil_h, dil_w = pair(dilation, "dilation")
    Ho = 1 + (Hp - dil_h * (HH - 1) - 1) // sh
    Wo = 1 + (Wp - dil_w * (WW - 1) - 1) // sw
    cols6 = cols.reshape(C, HH, WW, N, Ho, Wo)
    slices = offset_slices((HH, WW), (sh, sw), (Ho, Wo), (dil_h, dil_w))
    for (kh, kw), (rows, columns) in slices:
        dx_cnhw[:, :, rows, columns] += cols6[:, kh, kw]  # (C, N, Ho, Wo)


def offset_slices(
    kernel: tuple[int, int],
    stride: tuple[int, int],
    out_hw: tuple[int, int],
    dilation: tuple[int, int] = (1, 1),
) -> list[tuple[tuple[int, int], tuple[slice, slice]]]:
    """For each kernel offset (kh, kw), row-major: the padded-input rows and columns it reads.

    Scattering a gradient back is one vectorised add per offset (HH*WW of them, a handful):
    within one offset no two output pixels touch the same input pixel, so a strided-slice
    ``+=`` is exact and needs no ``np.add.at``; overlapping windows sum across offsets.
    """
    (HH, WW), (sh, sw), (Ho, Wo), (dil_h, dil_w) = kernel, stride, out_hw, dilation
    return [
        (
            (kh, kw),
            (
                slice(kh * dil_h, kh * dil_h + sh * Ho, sh),
                slice(kw * dil_w, kw * dil_w + sw * Wo, sw),
            ),
        )
        for kh in range(HH)
        for kw in range(WW)
    ]
