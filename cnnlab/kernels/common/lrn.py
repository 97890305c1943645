"""Local response normalisation across channels (AlexNet's "norm" layer), as PyTorch defines it.

For x: (N, C, H, W), at every (n, h, w) and channel c::

    s_c   = k + alpha/size * sum_{c' in W(c)} a_c'^2
    out_c = a_c / s_c^beta

with the window ``W(c) = {c - size//2, ..., c + (size-1)//2}`` and channels outside [0, C)
counting as zeros. This is exactly ``torch.nn.functional.local_response_norm``: it pads
``size//2`` channels before and ``(size-1)//2`` after and average-pools the squares over
``size`` channels, so alpha is divided by size and, for an even size, the window reaches one
channel further back than forward. (PyTorch's own default is k=1; AlexNet's and this project's
is k=2.)

Backward, by hand. Since ``d s_c / d a_j = 2 alpha/size * a_j`` when j is in W(c) (else 0),
``d out_c / d a_j = [c = j] s_c^-beta - beta a_c s_c^(-beta-1) d s_c / d a_j``, and so::

    dx_j = dout_j s_j^-beta - (2 alpha beta / size) a_j sum_{c: j in W(c)} dout_c a_c s_c^(-beta-1)

The channels c whose window holds j are ``j - (size-1)//2, ..., j + size//2``: the same sliding
sum with the two paddings swapped (the mirrored window, which differs from W for even size).
``a_c s_c^(-beta-1)`` is ``out_c / s_c``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cnnlab.errors import ArgumentError, ShapeError
from cnnlab.kernels.contract import check_dout


class LRNCache(NamedTuple):
    """What the LRN backward pass needs from its forward pass."""

    x: np.ndarray  # (N, C, H, W) input
    s: np.ndarray  # k + alpha/size * window sum of x^2, x's shape
    s_beta: np.ndarray  # s ** beta, x's shape (out = x / s_beta)
    size: int
    alpha: float
    beta: float


def check_lrn(x_shape: tuple[int, ...], size: int) -> None:
    """Raise ShapeError unless x is (N, C, H, W), ArgumentError unless size is a positive int."""
    if len(x_shape) != 4:
        raise ShapeError(f"lrn: x must be (N, C, H, W), got shape {tuple(x_shape)}")
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise ArgumentError(f"lrn: size must be a positive int, got {size!r}")


def _channel_window_sum(a: np.ndarray, before: int, after: int) -> np.ndarray:
    """``out_c = sum_{c' = c - before}^{c + after} a_c'`` along axis 1, zeros outside [0, C)."""
    C = a.shape[1]
    padded = np.pad(a, ((0, 0), (before, after), (0, 0), (0, 0)))  # (N, C+before+after, H, W)
    total = padded[:, :C].copy()
    for offset in range(1, before + after + 1):
        total += padded[:, offset : offset + C]
    return total


def lrn_forward(
    x: np.ndarray, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0
) -> tuple[np.ndarray, LRNCache]:
    """Local response normalisation across channels, as PyTorch's ``LocalResponseNorm``.

    x: (N, C, H, W); size: channels per window (any C, even C < size); alpha, beta, k: floats.
    ``out_c = x_c / (k + alpha/size * sum_{c' in W(c)} x_c'^2)^beta`` with
    ``W(c) = c - size//2 .. c + (size-1)//2``, zero-padded across channels.
    Returns ``(out, cache)``: out of x's shape and dtype; cache an :class:`LRNCache`.
    """
    check_lrn(x.shape, size)
    size = int(size)
    # Python floats: a numpy float64 scalar would promote a float32 x.
    alpha, beta, k = float(alpha), float(beta), float(k)
    # Summed, then divided by size, then scaled by alpha: the order of torch's avg_pool3d path.
    window = _channel_window_sum(x * x, size // 2, (size - 1) // 2)
    s = k + (window / size) * alpha
    s_beta = s**beta
    out = x / s_beta
    return out, LRNCache(x, s, s_beta, size, alpha, beta)


def lrn_backward(dout: np.ndarray, cache: LRNCache) -> np.ndarray:
    """Local response normalisation backward (derivation in the module docstring).

    dout: (N, C, H, W). Returns dx of x's shape:
    ``dx_j = dout_j s_j^-beta - (2 alpha beta / size) x_j sum_{c: j in W(c)} dout_c out_c / s_c``.
    """
    x, s, s_beta, size, alpha, beta = cache
    check_dout("lrn", dout, x.shape)
    t = dout * x / (s_beta * s)  # dout_c a_c s_c^(-beta-1)
    back = _channel_window_sum(t, (size - 1) // 2, size // 2)  # over the c whose window holds j
    return dout / s_beta - (2.0 * alpha * beta / size) * x * back


class LRNKernels:
    """This module's kernels, as methods of the numpy kernel sets (see ``NumpyKernels``)."""

    lrn_backward = staticmethod(lrn_backward)
    lrn_forward = staticmethod(lrn_forward)
