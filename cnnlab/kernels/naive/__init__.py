"""The ``naive`` kernel set: loops that mirror the maths, for reading.

Conv and pooling are written here as loops over output positions; the other layers have no
loop to show and come from :mod:`cnnlab.kernels.common`, shared with ``im2col``.
"""

from cnnlab.kernels.common import *  # noqa: F403  (the shared half of the kernel set)
from cnnlab.kernels.naive.conv import conv2d_backward, conv2d_forward
from cnnlab.kernels.naive.pool import (
    avgpool2d_backward,
    avgpool2d_forward,
    maxpool2d_backward,
    maxpool2d_forward,
)

__all__ = [
    "avgpool2d_backward",
    "avgpool2d_forward",
    "conv2d_backward",
    "conv2d_forward",
    "maxpool2d_backward",
    "maxpool2d_forward",
]
