"""Layer kernels: forward/backward pairs, one module per layer family, one folder per backend.

Every kernel set implements :class:`cnnlab.kernels.protocol.KernelSet`, CS231n's pair contract:
``<layer>_forward(x, ...) -> (out, cache)`` and ``<layer>_backward(dout, cache) -> dx`` (or a
tuple of gradients). ``naive`` (loops that mirror the maths) and ``im2col`` (vectorised) differ
in conv and pooling; the other layers have one numpy definition in :mod:`cnnlab.kernels.common`
that both take. :mod:`cnnlab.kernels.torch` provides the same functions through PyTorch ops and
autograd.
"""
