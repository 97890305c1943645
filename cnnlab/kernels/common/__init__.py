"""The numpy kernels that ``naive`` and ``im2col`` share, and the base of both kernel sets.

Everything here except convolution and windowed pooling, which differ between the two
backends. Each module ends with a small class naming its kernels; :class:`NumpyKernels` takes
them all, so a kernel added to a module here (and to that class) is in both numpy kernel sets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnlab.kernels.common.activation import ActivationKernels
from cnnlab.kernels.common.combine import CombineKernels
from cnnlab.kernels.common.dropout import DropoutKernels, dropout_mask
from cnnlab.kernels.common.fused import FusedKernels
from cnnlab.kernels.common.linear import LinearKernels
from cnnlab.kernels.common.loss import LossKernels
from cnnlab.kernels.common.lrn import LRNKernels
from cnnlab.kernels.common.norm import NormKernels
from cnnlab.kernels.common.pool_global import GlobalPoolKernels
from cnnlab.kernels.contract import install
from cnnlab.kernels.protocol import PAIRS, KernelSet

if TYPE_CHECKING:
    from cnnlab.kernels.im2col.chunks import Workers

__all__ = ["NumpyKernels", "dropout_mask"]


class NumpyKernels(
    ActivationKernels,
    CombineKernels,
    DropoutKernels,
    FusedKernels,
    GlobalPoolKernels,
    LinearKernels,
    LossKernels,
    LRNKernels,
    NormKernels,
    KernelSet,
):
    """The shared half of a numpy kernel set (see :class:`~cnnlab.kernels.protocol.KernelSet`):
    every kernel of this package's modules. ``Naive`` and ``Im2col`` add conv and pooling.

    ``workers``: the threads element-wise kernels split their arrays across; None (``naive``)
    runs them whole, on the calling thread.
    """

    workers: Workers | None = None
    # The fused layer kinds (cnnlab.ops.registry.fused) this set computes faster than their
    # parts, which its executor substitutes for them: none unless a set says so.
    fused: frozenset[str] = frozenset()

    def __init_subclass__(cls, **kwargs: object) -> None:
        # Every numpy kernel set keeps the input contract (cnnlab.kernels.contract).
        super().__init_subclass__(**kwargs)
        install(cls, PAIRS)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
