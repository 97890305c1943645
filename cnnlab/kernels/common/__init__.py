"""The numpy kernels that ``naive`` and ``im2col`` share, and the base of both kernel sets.

Everything here except convolution and windowed pooling, which differ between the two
backends. Each module lists its kernels in ``__all__``; :class:`NumpyKernels` takes every one
of them, so a kernel added to a module here is in both numpy kernel sets.
"""

from __future__ import annotations

from cnnlab.kernels.common import activation, dropout, linear, loss, lrn, norm, pool_global
from cnnlab.kernels.common.dropout import dropout_mask
from cnnlab.kernels.protocol import KernelSet

__all__ = ["NumpyKernels", "dropout_mask"]

MODULES = (activation, dropout, linear, loss, lrn, norm, pool_global)


class NumpyKernels(KernelSet):
    """The shared half of a numpy kernel set (see :class:`~cnnlab.kernels.protocol.KernelSet`):
    every kernel of this package's modules. ``Naive`` and ``Im2col`` add conv and pooling."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


for _module in MODULES:
    for _name in _module.__all__:
        setattr(NumpyKernels, _name, staticmethod(getattr(_module, _name)))
