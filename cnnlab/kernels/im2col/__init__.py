"""The ``im2col`` kernel set: vectorised numpy, conv as one matrix product per pass.

Conv and pooling gather windows from strided views (no Python loop over samples or output
pixels), and 3x3 stride-1 convs use Winograd's algorithm (:mod:`.winograd`); the other layers
come from :mod:`cnnlab.kernels.common`, shared with ``naive``.
"""

from cnnlab.kernels.common import *  # noqa: F403  (the shared half of the kernel set)
from cnnlab.kernels.im2col.conv import conv2d_backward, conv2d_forward
from cnnlab.kernels.im2col.pool import (
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
