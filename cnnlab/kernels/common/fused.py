"""Fused kinds computed as their parts, for numpy kernel sets with no faster way.

``conv_relu`` is a conv and the ReLU after it (:class:`cnnlab.ops.conv.ConvReLU`). ``im2col``
fuses the two inside its conv's chunks; ``naive`` gets them here, one after the other, which
is what the fused kernel must equal.
"""

from __future__ import annotations

import numpy as np

from cnnlab.kernels.common.activation import relu_backward
from cnnlab.kernels.geometry import IntPair


class FusedKernels:
    """The fused kernels as compositions of the set's own (a mixin of ``NumpyKernels``)."""

    def conv2d_relu_forward(
        self,
        x: np.ndarray,
        w: np.ndarray,
        b: np.ndarray | None,
        stride: IntPair = 1,
        pad: IntPair = 0,
        dilation: IntPair = 1,
        groups: int = 1,
    ) -> tuple[np.ndarray, tuple[object, np.ndarray]]:
        """``max(conv2d(x, ...), 0)``; the cache is the conv's and out."""
        out, cache = self.conv2d_forward(x, w, b, stride, pad, dilation, groups)  # type: ignore[attr-defined]
        np.maximum(out, 0, out=out)  # the conv's output is this call's own
        return out, (cache, out)

    def conv2d_relu_backward(
        self, dout: np.ndarray, cache: tuple[object, np.ndarray], need_dx: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
        """The conv's backward of dout through the ReLU (whose output has its input's sign)."""
        conv_cache, out = cache
        return self.conv2d_backward(relu_backward(dout, out), conv_cache, need_dx)  # type: ignore[attr-defined]
