"""Max, average and adaptive average pooling, vectorised: no Python loop over samples,
channels or output pixels.

The padded input is viewed as sliding windows (no copy), then gathered once into columns of
shape ``(kh*kw, N, C, Ho, Wo)``: row k holds kernel offset k of every window, so the max / mean
over a window is an elementwise reduction over axis 0. Backward loops over the kh*kw kernel
offsets only, adding each offset's gradient into a strided slice of the padded dx (disjoint
within one offset, so plain ``+=`` is safe and ``np.add.at`` is not needed). With
``ceil_mode`` the padded input is grown at the bottom and right by the rows and columns the
last windows reach past it (:func:`~cnnlab.kernels.geometry.pool_overhang`), with -inf for
max pooling and zeros for average pooling, whose divisor counts only the elements inside the
padded input.

Adaptive average pooling is two small averaging matrices, ``out = A_h @ x @ A_w.T``.

Same definitions and argument checks as :mod:`cnnlab.kernels.naive.pool`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab.kernels.choices import Ties
from cnnlab.kernels.contract import check_dout
from cnnlab.kernels.geometry import (
    IntPair,
    adaptive_geometry,
    adaptive_windows,
    pad_spatial,
    pool_geometry,
    pool_overhang,
)
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
    ceil_mode: bool = False,
) -> tuple[np.ndarray, Any]:
    """Max pooling.

    Args:
        x: (N, C, H, W) input.
        kernel: window size kh x kw, an int or an (h, w) pair.
        stride: an int or (h, w) pair; defaults to ``kernel``.
        pad: an int or (h, w) pair, at most half the kernel; padded with -inf.
        ties: ``"first"`` routes a window's gradient to its first maximum in row-major order
            (as PyTorch does); ``"all"`` gives it to every element equal to the maximum.
        ceil_mode: round the output size up; windows that run past the padded input see
            only the elements inside it.

    Returns:
        out: (N, C, Ho, Wo) with ``Ho = 1 + (H + 2*ph - kh) // sh`` (with ceil_mode rounded
        up, see :func:`~cnnlab.kernels.geometry.pool_geometry`), likewise Wo; same dtype as x.
        cache: ``(mask, x.shape, kernel, stride, pad)``; mask: (kh*kw, N, C, Ho, Wo) bool, True
        where a window element receives that window's gradient.
    """
    kernel, stride, pad, out_hw = pool_geometry(
        "maxpool2d", x.shape, kernel, stride, pad, ceil_mode
    )
    ties = Ties(ties)
    overhang = pool_overhang(x.shape[2:], kernel, stride, pad, out_hw)
    xp = pad_spatial(x, pad, -np.inf, overhang)
    cols = _window_columns(xp, kernel, stride)  # (K, N, C, Ho, Wo)
    out = cols.max(axis=0)  # (N, C, Ho, Wo)
    mask = cols == out  # every maximum of each window
    if any(pad) or any(overhang):
        # Padding equals a window of -inf inputs, but never receives the gradient.
        inside = pad_spatial(np.ones((1, 1, *x.shape[2:]), bool), pad, False, overhang)
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
    eh, ew = pool_overhang((H, W), kernel, stride, (ph, pw), out_hw)
    # Tiling windows: each offset's gradient written straight into its view of dx. For a
    # finite dout only: ``dout * mask`` would spread an inf or nan over the window (inf * 0).
    tiled = _tiles((N, C, H, W), kernel, stride, (ph, pw), dout.dtype)
    if tiled is not None and np.isfinite(dout).all():
        dx, tiles = tiled
        for k, tile in enumerate(tiles):
            np.multiply(dout, mask[k], out=tile)
        return dx
    dxp = np.zeros((N, C, H + 2 * ph + eh, W + 2 * pw + ew), dtype=dout.dtype)
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
    ceil_mode: bool = False,
) -> tuple[np.ndarray, Any]:
    """Average pooling, padding counted as zeros (PyTorch's ``count_include_pad=True``).

    Args:
        x: (N, C, H, W) input.
        kernel: window size kh x kw, an int or an (h, w) pair.
        stride: an int or (h, w) pair; defaults to ``kernel``.
        pad: an int or (h, w) pair, at most half the kernel; padded with zeros.
        ceil_mode: round the output size up; a window that runs past the padded input
            averages over the part inside it.

    Returns:
        out: (N, C, Ho, Wo), each the window sum divided by the number of the window's elements
        inside the padded input: ``kh*kw`` except for ceil mode's last windows; same dtype as x.
        cache: ``(x.shape, kernel, stride, pad, (Ho, Wo))`` with kernel, stride, pad as pairs.
    """
    kernel, stride, pad, out_hw = pool_geometry(
        "avgpool2d", x.shape, kernel, stride, pad, ceil_mode
    )
    overhang = pool_overhang(x.shape[2:], kernel, stride, pad, out_hw)
    cols = _window_columns(pad_spatial(x, pad, 0.0, overhang), kernel, stride)  # (K, N, C, Ho, Wo)
    # Padding zeros are among the K entries and count in the divisor; overhang zeros do not.
    out = cols.sum(axis=0)  # (N, C, Ho, Wo)
    out /= _divisor(x.shape, kernel, stride, pad, out_hw, x.dtype)
    return out, (x.shape, kernel, stride, pad, out_hw)


def _divisor(
    x_shape: tuple[int, ...],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pad: tuple[int, int],
    out_hw: tuple[int, int],
    dtype: np.dtype,
) -> int | np.ndarray:
    """What each window's sum is divided by: the number of its elements inside the padded
    input, ``kh*kw`` (an int) or, where ceil mode's last windows run past it, an (Ho, Wo)
    array of dtype ``dtype`` (so that float32 stays float32)."""
    hw = (x_shape[2], x_shape[3])
    if pool_overhang(hw, kernel, stride, pad, out_hw) == (0, 0):
        return kernel[0] * kernel[1]
    h, w = (
        np.minimum(np.arange(o) * s + k, n + 2 * p) - np.arange(o) * s  # (Ho,), (Wo,)
        for n, k, s, p, o in zip(hw, kernel, stride, pad, out_hw, strict=True)
    )
    return np.multiply.outer(h, w).astype(dtype)  # (Ho, Wo)


def avgpool2d_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    """Gradient of average pooling.

    Args:
        dout: (N, C, Ho, Wo) upstream gradient.
        cache: from :func:`avgpool2d_forward`.

    Returns:
        dx: (N, C, H, W); every element of a window gets ``dout`` divided by the window's
        divisor (``kh*kw``, see :func:`avgpool2d_forward`), summed over the windows that
        contain it.
    """
    x_shape, kernel, stride, (ph, pw), out_hw = cache
    N, C, H, W = x_shape
    check_dout("avgpool2d", dout, (N, C, *out_hw))
    share = dout / _divisor(x_shape, kernel, stride, (ph, pw), out_hw, dout.dtype)
    tiled = _tiles((N, C, H, W), kernel, stride, (ph, pw), dout.dtype)
    if tiled is not None:
        dx, tiles = tiled
        for tile in tiles:
            tile[...] = share
        return dx
    eh, ew = pool_overhang((H, W), kernel, stride, (ph, pw), out_hw)
    dxp = np.zeros((N, C, H + 2 * ph + eh, W + 2 * pw + ew), dtype=dout.dtype)
    for _, (rows, cols) in offset_slices(kernel, stride, out_hw):
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
    common 2x2 / 2): an uninitialised dx (N, C, H, W) and, per kernel offset in row-major
    order, the (N, C, Ho, Wo) view of dx that offset covers; the views cover dx once, so
    writing every one fills it. None otherwise.

    Windows that do not overlap need no accumulation: each offset's gradient is written
    straight into its view, with no zeroed buffer and no read-add-write of dx.
    """
    (N, C, H, W), (kh, kw) = x_shape, kernel
    if stride != kernel or pad != (0, 0) or H % kh or W % kw:
        return None
    dx = np.empty(x_shape, dtype=dtype)
    grid = dx.reshape(N, C, H // kh, kh, W // kw, kw)  # a view: dx is contiguous
    return dx, [grid[:, :, :, a, :, b] for a in range(kh) for b in range(kw)]


def adaptive_avgpool2d_forward(x: np.ndarray, output: IntPair) -> tuple[np.ndarray, Any]:
    """Adaptive average pooling to a given output size, as PyTorch's ``adaptive_avg_pool2d``.

    Args:
        x: (N, C, H, W) input.
        output: the output size Ho x Wo, an int or an (h, w) pair, each >= 1 (larger than the
            input is allowed).

    Returns:
        out: (N, C, Ho, Wo) = ``A_h @ x @ A_w.T``: row i of A_h averages x's rows
        ``floor(i*H/Ho)`` to ``ceil((i+1)*H/Ho)`` (exclusive), A_w likewise the columns; same
        dtype as x.
        cache: ``(x.shape, A_h, A_w)``; A_h: (Ho, H), A_w: (Wo, W).
    """
    Ho, Wo = adaptive_geometry("adaptive_avgpool2d", x.shape, output)
    N, C, H, W = x.shape
    a_h, a_w = _averaging_matrix(H, Ho, x.dtype), _averaging_matrix(W, Wo, x.dtype)
    rows = np.matmul(a_h, x)  # (N, C, Ho, W)
    out = (rows.reshape(N * C * Ho, W) @ a_w.T).reshape(N, C, Ho, Wo)
    return out, (x.shape, a_h, a_w)


def adaptive_avgpool2d_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    """Gradient of adaptive average pooling.

    Args:
        dout: (N, C, Ho, Wo) upstream gradient.
        cache: from :func:`adaptive_avgpool2d_forward`.

    Returns:
        dx: (N, C, H, W) = ``A_h.T @ dout @ A_w``: every element of a window gets ``dout``
        divided by the window's size, summed over the windows that contain it.
    """
    (N, C, _, W), a_h, a_w = cache
    Ho, Wo = a_h.shape[0], a_w.shape[0]
    check_dout("adaptive_avgpool2d", dout, (N, C, Ho, Wo))
    a_h, a_w = a_h.astype(dout.dtype, copy=False), a_w.astype(dout.dtype, copy=False)
    cols = (dout.reshape(N * C * Ho, Wo) @ a_w).reshape(N, C, Ho, W)
    return np.matmul(a_h.T, cols)  # (N, C, H, W)


def _averaging_matrix(size: int, out: int, dtype: np.dtype) -> np.ndarray:
    """The (out, size) matrix whose row i averages the input range of adaptive-pooling cell i
    (:func:`~cnnlab.kernels.geometry.adaptive_windows`): ``1 / (end - start)`` inside it."""
    start, end = np.array(adaptive_windows(size, out)).T  # (out,), (out,)
    index = np.arange(size)
    inside = (start[:, None] <= index) & (index < end[:, None])  # (out, size)
    return (inside / (end - start)[:, None]).astype(dtype)
