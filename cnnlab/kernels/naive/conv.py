"""Naive conv2d: loops over (n, f, i, j) that mirror the maths, written to be read.

Convolution here is cross-correlation (no kernel flip), as in PyTorch. With ``groups`` = G the C
input channels and F filters split into G groups, filter f seeing only its group's C/G channels,
and with ``dilation`` (dil_h, dil_w) a kernel's taps lie that many rows and columns apart::

    out[n, f, i, j] = b[f] + sum_{c, p, q} x_pad[n, g*Cg + c, i*sh + p*dil_h, j*sw + q*dil_w]
                                           * w[f, c, p, q]

with ``Cg = C/G`` and ``g = f // (F/G)`` the group of filter f. The innermost sum over
(Cg, HH, WW) is one small vectorised product; everything else is a plain Python loop, so each
line can be checked against the formula. The im2col backend computes the same numbers fast.
"""

from __future__ import annotations

import numpy as np

from cnnlab.kernels.geometry import IntPair, conv_geometry, pair

ConvCache = tuple[np.ndarray, np.ndarray, np.ndarray | None, tuple[tuple[int, int], ...], int]


def conv2d_forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None,
    stride: IntPair = 1,
    pad: IntPair = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> tuple[np.ndarray, ConvCache]:
    """Forward pass of a 2-D convolution (cross-correlation), one output pixel at a time.

    Args:
        x: input, (N, C, H, W).
        w: filters, (F, C/groups, HH, WW).
        b: bias, (F,), or None for no bias.
        stride: step between windows, an int or a (sh, sw) pair.
        pad: zeros added on each side of H and W, an int or a (ph, pw) pair.
        dilation: spacing of the kernel's taps, an int or a (dil_h, dil_w) pair.
        groups: channel groups; filter f sees the channels of group ``f // (F/groups)``.

    Returns:
        out: (N, F, Ho, Wo) with ``Ho = 1 + (H + 2*ph - dil_h*(HH - 1) - 1) // sh``, likewise
        Wo; same dtype as x.
        cache: ``(x, w, b, (stride, pad, dilation), groups)`` for :func:`conv2d_backward`.

    Raises:
        ShapeError: when the shapes do not fit (channel mismatch, ``Ho < 1``, ...).
    """
    b_shape = None if b is None else b.shape
    Ho, Wo = conv_geometry(x.shape, w.shape, b_shape, stride, pad, dilation, groups)
    (sh, sw), (ph, pw) = pair(stride, "stride"), pair(pad, "pad")
    dil_h, dil_w = pair(dilation, "dilation")
    N = x.shape[0]
    F, Cg, HH, WW = w.shape
    Fg = F // groups  # filters per group

    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))  # (N, C, H + 2ph, W + 2pw)
    out = np.zeros((N, F, Ho, Wo), dtype=x.dtype)
    for n in range(N):
        for f in range(F):
            channels = slice(f // Fg * Cg, (f // Fg + 1) * Cg)  # filter f's group
            for i in range(Ho):
                for j in range(Wo):
                    rows = slice(i * sh, i * sh + dil_h * (HH - 1) + 1, dil_h)
                    cols = slice(j * sw, j * sw + dil_w * (WW - 1) + 1, dil_w)
                    window = x_pad[n, channels, rows, cols]  # (Cg, HH, WW)
                    out[n, f, i, j] = np.sum(window * w[f])
            if b is not None:
                out[n, f] += b[f]
    return out, (x, w, b, ((sh, sw), (ph, pw), (dil_h, dil_w)), groups)


def conv2d_backward(
    dout: np.ndarray, cache: ConvCache, need_dx: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Backward pass of :func:`conv2d_forward`, with the same loops.

    Each output pixel ``out[n, f, i, j]`` came from one window of x and the filter ``w[f]``, so
    its upstream gradient flows back to both: the window receives ``w[f] * dout[n, f, i, j]`` and
    the filter receives ``window * dout[n, f, i, j]``. Overlapping windows add up.

    Args:
        dout: upstream gradient, (N, F, Ho, Wo).
        cache: from :func:`conv2d_forward`.
        need_dx: False skips dx (a net's first layer: nothing uses the input's gradient).

    Returns:
        dx: (N, C, H, W), or None when not needed; dw: (F, C/groups, HH, WW); db: (F,), or
        None when b was None.
    """
    x, w, b, ((sh, sw), (ph, pw), (dil_h, dil_w)), groups = cache
    N, _, H, W = x.shape
    F, Cg, HH, WW = w.shape
    Fg = F // groups
    _, _, Ho, Wo = dout.shape

    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dx_pad = np.zeros_like(x_pad)
    dw = np.zeros_like(w)
    for n in range(N):
        for f in range(F):
            channels = slice(f // Fg * Cg, (f // Fg + 1) * Cg)
            for i in range(Ho):
                for j in range(Wo):
                    rows = slice(i * sh, i * sh + dil_h * (HH - 1) + 1, dil_h)
                    cols = slice(j * sw, j * sw + dil_w * (WW - 1) + 1, dil_w)
                    window = x_pad[n, channels, rows, cols]  # (Cg, HH, WW)
                    if need_dx:
                        dx_pad[n, channels, rows, cols] += w[f] * dout[n, f, i, j]
                    dw[f] += window * dout[n, f, i, j]
    # The padding was not part of x, so its gradient is dropped.
    dx = dx_pad[:, :, ph : ph + H, pw : pw + W] if need_dx else None
    db = None if b is None else dout.sum(axis=(0, 2, 3))
    return dx, dw, db
