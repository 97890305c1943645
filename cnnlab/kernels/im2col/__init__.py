"""The ``im2col`` kernel set: vectorised numpy, conv as matrix products over chunks of the batch.

Conv and pooling gather windows from strided views (no Python loop over samples or output
pixels); conv runs chunk by chunk on every core (:mod:`.chunks`), and 3x3 stride-1 convs use
Winograd's algorithm (:mod:`.winograd`). The other layers come from
:mod:`cnnlab.kernels.common`, shared with ``naive``.
"""

from __future__ import annotations

import numpy as np

from cnnlab.kernels.common import NumpyKernels
from cnnlab.kernels.geometry import IntPair
from cnnlab.kernels.im2col import conv, pool
from cnnlab.kernels.im2col.chunks import Workers
from cnnlab.kernels.protocol import Cache


class Im2col(NumpyKernels):
    """The ``im2col`` backend's kernels, with its options.

    Args:
        winograd: let 3x3 stride-1 convs with 16+ channels use Winograd's algorithm
            (``trainer.winograd``); False computes every conv from columns.
        threads: worker threads for the conv's chunks (``trainer.threads``); None uses every CPU
            this process may run on.
    """

    # Runs of layers this set computes in one kernel, faster than their parts (see
    # cnnlab.ops.registry.fused): its executor runs them fused.
    fused = frozenset({"conv_relu"})

    def __init__(self, winograd: bool = True, threads: int | None = None) -> None:
        self.winograd = winograd
        self.workers = Workers(threads)

    def __repr__(self) -> str:
        return f"Im2col(winograd={self.winograd}, threads={self.workers.threads})"

    def conv2d_forward(
        self,
        x: np.ndarray,
        w: np.ndarray,
        b: np.ndarray | None,
        stride: IntPair = 1,
        pad: IntPair = 0,
        dilation: IntPair = 1,
        groups: int = 1,
    ) -> tuple[np.ndarray, Cache]:
        return conv.conv2d_forward(
            x, w, b, stride, pad, dilation, groups, workers=self.workers, winograd=self.winograd
        )

    def conv2d_backward(
        self, dout: np.ndarray, cache: Cache, need_dx: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
        return conv.conv2d_backward(dout, cache, need_dx, workers=self.workers)  # type: ignore[arg-type]

    def conv2d_relu_forward(
        self,
        x: np.ndarray,
        w: np.ndarray,
        b: np.ndarray | None,
        stride: IntPair = 1,
        pad: IntPair = 0,
        dilation: IntPair = 1,
        groups: int = 1,
    ) -> tuple[np.ndarray, Cache]:
        return conv.conv2d_relu_forward(
            x, w, b, stride, pad, dilation, groups, workers=self.workers, winograd=self.winograd
        )

    def conv2d_relu_backward(
        self, dout: np.ndarray, cache: Cache, need_dx: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
        return conv.conv2d_relu_backward(dout, cache, need_dx, workers=self.workers)

    maxpool2d_forward = staticmethod(pool.maxpool2d_forward)
    maxpool2d_backward = staticmethod(pool.maxpool2d_backward)
    avgpool2d_forward = staticmethod(pool.avgpool2d_forward)
    avgpool2d_backward = staticmethod(pool.avgpool2d_backward)
    adaptive_avgpool2d_forward = staticmethod(pool.adaptive_avgpool2d_forward)
    adaptive_avgpool2d_backward = staticmethod(pool.adaptive_avgpool2d_backward)
