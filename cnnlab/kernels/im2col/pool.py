"""Max and average pooling, vectorised: no Python loop over samples, channels or output pixels.

The padded input is viewed as sliding windows (no copy), then gathered once into columns of
shape ``(kh*kw, N, C, Ho, Wo)``: row k holds kernel offset k of every window, so the max / mean
over a window is an elementwise reduction over axis 0. Backward loops over the kh*kw kernel
offsets only, adding each offset's gradient into a strided slice of the padded dx (disjoint
within one offset, so plain ``+=`` is safe and ``np.add.at`` is not needed).

Same definitions and argument checks as :mod:`cnnlab.kernels.naive.pool`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab.kernels.choices import Ties
from cnnlab.kernels.contract import check_dout
from cnnlab.kernels.geometry import IntPair, pad_spatial, pool_geometry
from cnnlab.kernels.im2col.columns import offset_slices, windows


def _window_columns(xp: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    """Gather the pooling windows of xp: (N, C, Hp, Wp) into cols: (kh*kw, N, C, Ho, Wo).

    ``cols[di*kw + dj, n, c, i, j] = xp[n, c, i*sh + di, j*sw + dj]``.
    """
    win = windows(xp, kernel, stride)  # (N, C, Ho, Wo, kh, kw), a view
    N, C, Ho, Wo, kh, kw = win.shape
    # Offset-major: each offset's plane is contiguous, so reducing over axis 0 runs at memory
    # speed (reducing the trailing kh x kw axes of the view is several times slower).
    return np.moveaxis(win, (4, 5), (0, 1)).reshape(kh * kw, N, C, Ho, Wo)


def maxpool2d_forward(
    x: np.ndarray,
    kernel: IntPair,
    stride: IntPair | None = None,
    pad: IntPair = 0,
    ties: str = "first",
) -> tuple[np.ndarray, Any]:
    """Max pooling.

    Args:
        x: (N, C, H, W) input.
        kernel: window size kh x kw, an int or an (h, w) pair.
        stride: an int or (h, w) pair; defaults to ``kernel``.
        pad: an int or (h, w) pair, at most half the kernel; padded with -inf.
        ties: ``"first"`` routes a window's gradient to its first maximum in row-major order
            (as PyTorch does); ``"all"`` gives it to every element equal to the maximum.

    Returns:
        out: (N, C, Ho, Wo) with ``Ho = 1 + (H + 2*ph - kh) // sh``, likewise Wo; same dtype as x.
        cache: ``(mask, x.shape, kernel, stride, pad)``; mask: (kh*kw, N, C, Ho, Wo) bool, True
        where a window element receives that window's gradient.
    """
    kernel, stride, pad, _ = pool_geometry("maxpool2d", x.shape, kernel, stride, pad)
    ties = Ties(ties)
    cols = _window_columns(pad_spatial(x, pad, -np.inf), kernel, stride)  # (K, N, C, Ho, Wo)
    out = cols.max(axis=0)  # (N, C, Ho, Wo)
    mask = cols == out  # every maximum of each window
    if any(pad):  # padding equals a window of -inf inputs, but never receives the gradient
        inside = pad_spatial(np.ones((1, 1, *x.shape[2:]), bool), pad, False)
        mask &= _window_columns(inside, kernel, stride)
    if ties == "first":
        _keep_first(mask)
        nan = np.isnan(out)
        if nan.any():  # as torch: a window holding NaN sends its gradient to its last NaN
            nans = np.isnan(cols) & nan
            _keep_first(nans[::-1])
            mask = np.where(nan, nans, mask)
    return out, (mask, x.shape, kernel, stride, pad)


def _keep_first(mask: np.ndarray) -> None:
    """Keep, in place, only the first True of each window along axis 0 (row-major order); a
    running "already taken" plane is several times faster than argmax over axis 0."""
    taken = mask[0].copy()
    for k in range(1, mask.shape[0]):
        mask[k] &= ~taken
        taken |= mask[k]


def maxpool2d_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    """Gradient of max pooling.

    Args:
        dout: (N, C, Ho, Wo) upstream gradient.
        cache: from :func:`maxpool2d_forward`.

    Returns:
        dx: (N, C, H, W). Each window sends its ``dout`` to its maximum (see ``ties``);
        overlapping windows that share a maximum add their gradients there.
    """
    mask, (N, C, H, W), kernel, stride, (ph, pw) = cache
    out_hw = mask.shape[3:]
    check_dout("maxpool2d", dout, (N, C, *out_hw))
    dxp = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=dout.dtype)
    for k, (_, (rows, cols)) in enumerate(offset_slices(kernel, stride, out_hw)):
        # where() rather than dout * mask so that an inf or nan in dout stays in its window.
        dxp[:, :, rows, cols] += np.where(mask[k], dout, 0)
    # Gradient that landed on the padding belongs to no input element.
    return np.ascontiguousarray(dxp[:, :, ph : ph + H, pw : pw + W])


def avgpool2d_forward(
    x: np.ndarray,
    kernel: IntPair,
    stride: IntPair | None = None,
    pad: IntPair = 0,
) -> tuple[np.ndarray, Any]:
    """Average pooling, padding counted as zeros (PyTorch's ``count_include_pad=True``).

    Args:
        x: (N, C, H, W) input.
        kernel: window size kh x kw, an int or an (h, w) pair.
        stride: an int or (h, w) pair; defaults to ``kernel``.
        pad: an int or (h, w) pair, at most half the kernel; padded with zeros.

    Returns:
        out: (N, C, Ho, Wo), each the window sum divided by ``kh*kw``; same dtype as x.
        cache: ``(x.shape, kernel, stride, pad)`` with kernel, stride, pad as pairs.
    """
    kernel, stride, pad, _ = pool_geometry("avgpool2d", x.shape, kernel, stride, pad)
    cols = _window_columns(pad_spatial(x, pad, 0.0), kernel, stride)  # (K, N, C, Ho, Wo)
    # Padding zeros are among the K entries, so the mean divides by kh*kw as required.
    out = cols.mean(axis=0)  # (N, C, Ho, Wo)
    return out, (x.shape, kernel, stride, pad)


def avgpool2d_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    """Gradient of average pooling.

    Args:
        dout: (N, C, Ho, Wo) upstream gradient.
        cache: from :func:`avgpool2d_forward`.

    Returns:
        dx: (N, C, H, W); every element of a window gets ``dout / (kh*kw)``, summed over the
        windows that contain it.
    """
    (N, C, H, W), (kh, kw), (sh, sw), (ph, pw) = cache
    out_hw = (1 + (H + 2 * ph - kh) // sh, 1 + (W + 2 * pw - kw) // sw)
    check_dout("avgpool2d", dout, (N, C, *out_hw))
    share = dout / (kh * kw)
    tiled = _tiles((N, C, H, W), (kh, kw), (sh, sw), (ph, pw), dout.dtype)
    if tiled is not None:
        dx, tiles = tiled
        for tile in tiles:
            tile[...] = share
        return dx
    dxp = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=dout.dtype)
    for _, (rows, cols) in offset_slices((kh, kw), (sh, sw), out_hw):
        dxp[:, :, rows, cols] += share
    return np.ascontiguousarray(dxp[:, :, ph : ph + H, pw : pw + W])


def _tiles(
    x_shape: tuple[int, int, int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pad: tuple[int, int],
    dtype: np.dtype,
) -> tuple[np.ndarray, list[np.ndarray]] | None:
    """Where the windows tile x exactly (stride = kernel, no padding, sizes divisible: the
    common 2x2 / 2): a zeroed dx (N, C, H, W) and, per kernel offset in row-major order, the
    (N, C, Ho, Wo) view of dx that offset covers. None otherwise.

    Windows that do not overlap need no accumulation: each offset's gradient is written
    straight into its view, with no read-add-write of dx (average pooling gains from it; max
    pooling does not, its masked writes cost as much as the adds).
    """
    (N, C, H, W), (kh, kw) = x_shape, kernel
    if stride != kernel or pad != (0, 0) or H % kh or W % kw:
        return None
    dx = np.zeros(x_shape, dtype=dtype)
    grid = dx.reshape(N, C, H // kh, kh, W // kw, kw)  # a view: dx is contiguous
    return dx, [grid[:, :, :, a, :, b] for a in range(kh) for b in range(kw)]
