"""Max, average and adaptive average pooling, written as loops over (n, c, i, j) to be read next
to the maths.

For output pixel ``(i, j)`` the window is ``xp[n, c, i*sh : i*sh + kh, j*sw : j*sw + kw]`` of the
padded input ``xp``, and ``Ho = 1 + (H + 2*ph - kh) // sh``, likewise ``Wo``; rows and columns
left over at the bottom and right are ignored. With ``ceil_mode`` the division rounds up
(:func:`~cnnlab.kernels.geometry.pool_geometry`), so the last windows may run past the bottom
and right of ``xp``: a slice stops at the array's edge, so those windows simply hold fewer
elements, and an average divides by the number it holds (PyTorch's divisor). The vectorised
version of the same definitions is :mod:`cnnlab.kernels.im2col.pool`.
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
)


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
        cache: ``(x, kernel, stride, pad, (Ho, Wo), ties)`` with kernel, stride, pad as pairs.
    """
    kernel, stride, pad, (Ho, Wo) = pool_geometry(
        "maxpool2d", x.shape, kernel, stride, pad, ceil_mode
    )
    ties = Ties(ties)
    N, C, _, _ = x.shape
    (kh, kw), (sh, sw) = kernel, stride
    # -inf can never be the maximum of a window, and every window holds at least one real
    # element (pad <= kernel // 2, and a window starts before the bottom padding), so padding
    # never wins.
    xp = pad_spatial(x, pad, -np.inf)
    out = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    window = xp[n, c, i * sh : i * sh + kh, j * sw : j * sw + kw]
                    out[n, c, i, j] = window.max()
    return out, (x, kernel, stride, pad, (Ho, Wo), ties)


def maxpool2d_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    """Gradient of max pooling.

    Args:
        dout: (N, C, Ho, Wo) upstream gradient.
        cache: from :func:`maxpool2d_forward`.

    Returns:
        dx: (N, C, H, W). Each window sends its ``dout`` to its maximum (see ``ties``);
        overlapping windows that share a maximum add their gradients there.
    """
    x, (kh, kw), (sh, sw), pad, (Ho, Wo), ties = cache
    N, C, H, W = x.shape
    ph, pw = pad
    check_dout("maxpool2d", dout, (N, C, Ho, Wo))
    xp = pad_spatial(x, pad, -np.inf)
    dxp = np.zeros(xp.shape, dtype=dout.dtype)
    # Padding equals a window of -inf inputs, but never receives the gradient.
    inside = pad_spatial(np.ones((1, 1, H, W), bool), pad, False)[0, 0]
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    rows = slice(i * sh, i * sh + kh)
                    cols = slice(j * sw, j * sw + kw)
                    window = xp[n, c, rows, cols]
                    within = inside[rows, cols]
                    if ties == "first":
                        r, s = _first_max(window, within)
                        dxp[n, c, i * sh + r, j * sw + s] += dout[n, c, i, j]
                    else:
                        is_max = (window == window.max()) & within
                        dxp[n, c, rows, cols] += is_max * dout[n, c, i, j]
    # Gradient that landed on the padding belongs to no input element.
    return dxp[:, :, ph : ph + H, pw : pw + W].copy()


def _first_max(window: np.ndarray, within: np.ndarray) -> tuple[int, int]:
    """The element of a window that gets its gradient, as torch picks it: scanning the inside
    elements in row-major order, the first one greater than every one before it, or a NaN
    (so the last NaN, if there is one)."""
    best, where = -np.inf, None
    for r in range(window.shape[0]):
        for s in range(window.shape[1]):
            v = window[r, s]
            if within[r, s] and (where is None or v > best or np.isnan(v)):
                best, where = v, (r, s)
    assert where is not None  # every window holds an inside element (see maxpool2d_forward)
    return where


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
    kernel, stride, pad, (Ho, Wo) = pool_geometry(
        "avgpool2d", x.shape, kernel, stride, pad, ceil_mode
    )
    N, C, _, _ = x.shape
    (kh, kw), (sh, sw) = kernel, stride
    xp = pad_spatial(x, pad, 0.0)
    out = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    window = xp[n, c, i * sh : i * sh + kh, j * sw : j * sw + kw]
                    # The slice holds the window's elements inside the padded input: mean()
                    # divides by kh*kw, or by fewer where ceil mode's window runs past xp.
                    out[n, c, i, j] = window.mean()
    return out, (x.shape, kernel, stride, pad, (Ho, Wo))


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
    x_shape, (kh, kw), (sh, sw), (ph, pw), (Ho, Wo) = cache
    N, C, H, W = x_shape
    check_dout("avgpool2d", dout, (N, C, Ho, Wo))
    dxp = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=dout.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    window = dxp[n, c, i * sh : i * sh + kh, j * sw : j * sw + kw]
                    window += dout[n, c, i, j] / window.size
    return dxp[:, :, ph : ph + H, pw : pw + W].copy()


def adaptive_avgpool2d_forward(x: np.ndarray, output: IntPair) -> tuple[np.ndarray, Any]:
    """Adaptive average pooling to a given output size, as PyTorch's ``adaptive_avg_pool2d``.

    Args:
        x: (N, C, H, W) input.
        output: the output size Ho x Wo, an int or an (h, w) pair, each >= 1 (larger than the
            input is allowed).

    Returns:
        out: (N, C, Ho, Wo); ``out[n, c, i, j]`` is the mean of ``x[n, c, r0:r1, c0:c1]`` with
        ``r0 = floor(i*H/Ho)``, ``r1 = ceil((i+1)*H/Ho)``, likewise the columns (neighbouring
        windows may overlap and differ in size); same dtype as x.
        cache: ``(x.shape, (Ho, Wo))``.
    """
    Ho, Wo = adaptive_geometry("adaptive_avgpool2d", x.shape, output)
    N, C, H, W = x.shape
    rows, cols = adaptive_windows(H, Ho), adaptive_windows(W, Wo)
    out = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i, (r0, r1) in enumerate(rows):
                for j, (c0, c1) in enumerate(cols):
                    out[n, c, i, j] = x[n, c, r0:r1, c0:c1].mean()
    return out, (x.shape, (Ho, Wo))


def adaptive_avgpool2d_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    """Gradient of adaptive average pooling.

    Args:
        dout: (N, C, Ho, Wo) upstream gradient.
        cache: from :func:`adaptive_avgpool2d_forward`.

    Returns:
        dx: (N, C, H, W); every element of a window gets ``dout`` divided by the window's size,
        summed over the windows that contain it.
    """
    (N, C, H, W), (Ho, Wo) = cache
    check_dout("adaptive_avgpool2d", dout, (N, C, Ho, Wo))
    rows, cols = adaptive_windows(H, Ho), adaptive_windows(W, Wo)
    dx = np.zeros((N, C, H, W), dtype=dout.dtype)
    for n in range(N):
        for c in range(C):
            for i, (r0, r1) in enumerate(rows):
                for j, (c0, c1) in enumerate(cols):
                    dx[n, c, r0:r1, c0:c1] += dout[n, c, i, j] / ((r1 - r0) * (c1 - c0))
    return dx
