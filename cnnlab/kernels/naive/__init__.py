"""The ``naive`` kernel set: loops that mirror the maths, for reading.

Conv and pooling are written here as loops over output positions; the other layers have no
loop to show and come from :mod:`cnnlab.kernels.common`, shared with ``im2col``.
"""

from __future__ import annotations

from cnnlab.kernels.common import NumpyKernels
from cnnlab.kernels.naive import conv, pool


class Naive(NumpyKernels):
    """The ``naive`` backend's kernels."""

    conv2d_forward = staticmethod(conv.conv2d_forward)
    conv2d_backward = staticmethod(conv.conv2d_backward)
    maxpool2d_forward = staticmethod(pool.maxpool2d_forward)
    maxpool2d_backward = staticmethod(pool.maxpool2d_backward)
    avgpool2d_forward = staticmethod(pool.avgpool2d_forward)
    avgpool2d_backward = staticmethod(pool.avgpool2d_backward)
    adaptive_avgpool2d_forward = staticmethod(pool.adaptive_avgpool2d_forward)
    adaptive_avgpool2d_backward = staticmethod(pool.adaptive_avgpool2d_backward)
