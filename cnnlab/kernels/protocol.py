"""The kernel-set contract: the forward/backward pairs every backend implements alike.

``naive`` and ``im2col`` (:mod:`cnnlab.kernels.naive`, :mod:`cnnlab.kernels.im2col`) implement
it on numpy, ``torch`` and ``cuda`` (:class:`cnnlab.kernels.torch.TorchKernels`) through PyTorch
ops and autograd. Arrays go in and come out as numpy arrays; kernels keep the input dtype
(float32 or float64) and never promote. Each forward returns ``(out, cache)``; the cache is the
backend's own and means nothing to anyone but its backward. The input contract every set
keeps alike (float arrays of one dtype, bool masks, empty batches, dout of the output's shape,
caches that hold references to the caller's arrays) is :mod:`cnnlab.kernels.contract`. Layer
kinds name their kernels in their registration (:mod:`cnnlab.ops`), and a test checks that
every backend has every registered kernel.

A kernel set that is not all of cnnlab's own (the ``user`` backend, :mod:`cnnlab.kernels.user`)
may lack layers: it raises :class:`~cnnlab.errors.KernelMissingError` for them, and offers
``skips(kernel) -> reason | None`` (what checks leave out) and ``own_randomness`` (kernels that
draw their own masks, so that their numbers are not compared with torch's).

Geometry, as in PyTorch: layout NCHW, conv weights (F, C/groups, HH, WW), convolution is
cross-correlation, ``Ho = 1 + (H + 2*pad - dilation*(HH - 1) - 1) // stride`` (likewise Wo) and
``Ho < 1`` is a ShapeError; stride, pad, dilation and kernel are an int or an (h, w) pair.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from cnnlab.kernels.geometry import IntPair

Array = np.ndarray
# What a forward keeps for its backward: each backend's own type, read only by its backward.
Cache = Any
Grads2 = tuple[Array, Array]
Grads3 = tuple[Array, Array, Array]


class KernelSet(Protocol):
    """Forward/backward pairs on numpy arrays; shapes below are the contract."""

    def conv2d_forward(
        self,
        x: Array,
        w: Array,
        b: Array | None,
        stride: IntPair = 1,
        pad: IntPair = 0,
        dilation: IntPair = 1,
        groups: int = 1,
    ) -> tuple[Array, Cache]:
        """x: (N, C, H, W), w: (F, C/groups, HH, WW), b: (F,) or None -> out: (N, F, Ho, Wo).

        ``groups``: filter f sees only the C/groups channels of its group, ``f // (F/groups)``
        (depthwise: groups = C). ``dilation``: the kernel's taps lie that many rows and
        columns apart, so it spans ``dilation*(HH - 1) + 1`` rows.
        """
        ...

    def conv2d_backward(
        self, dout: Array, cache: Cache, need_dx: bool = True
    ) -> tuple[Array | None, Array, Array | None]:
        """-> (dx, dw, db); db is None when b was, dx when need_dx is False (a first layer)."""
        ...

    def conv2d_relu_forward(
        self,
        x: Array,
        w: Array,
        b: Array | None,
        stride: IntPair = 1,
        pad: IntPair = 0,
        dilation: IntPair = 1,
        groups: int = 1,
    ) -> tuple[Array, Cache]:
        """``max(conv2d(x, w, b, ...), 0)``: arguments and shapes as :meth:`conv2d_forward`."""
        ...

    def conv2d_relu_backward(
        self, dout: Array, cache: Cache, need_dx: bool = True
    ) -> tuple[Array | None, Array, Array | None]:
        """-> (dx, dw, db) as :meth:`conv2d_backward`, through the ReLU: its gradient is dout
        where the output is positive (or NaN), 0 elsewhere."""
        ...

    def maxpool2d_forward(
        self,
        x: Array,
        kernel: IntPair,
        stride: IntPair | None = None,
        pad: IntPair = 0,
        ties: str = "first",
        ceil_mode: bool = False,
    ) -> tuple[Array, Cache]:
        """x: (N, C, H, W) -> out: (N, C, Ho, Wo); padding is -inf; stride defaults to the
        kernel. ``ties="first"`` routes a window's gradient to its first maximum in row-major
        order (as PyTorch), ``"all"`` to every maximum. ``ceil_mode`` rounds Ho and Wo up
        (PyTorch's rule, :func:`~cnnlab.kernels.geometry.pool_geometry`); a window running past
        the padded input sees only the elements inside it."""
        ...

    def maxpool2d_backward(self, dout: Array, cache: Cache) -> Array:
        """-> dx."""
        ...

    def avgpool2d_forward(
        self,
        x: Array,
        kernel: IntPair,
        stride: IntPair | None = None,
        pad: IntPair = 0,
        ceil_mode: bool = False,
    ) -> tuple[Array, Cache]:
        """x: (N, C, H, W) -> out: (N, C, Ho, Wo); padding counts as zeros (PyTorch's
        ``count_include_pad=True``). ``ceil_mode`` as for max pooling; a window running past
        the padded input is divided by the number of its elements inside it."""
        ...

    def avgpool2d_backward(self, dout: Array, cache: Cache) -> Array:
        """-> dx = dout spread evenly over each window, / its divisor (kh*kw)."""
        ...

    def adaptive_avgpool2d_forward(self, x: Array, output: IntPair) -> tuple[Array, Cache]:
        """x: (N, C, H, W) -> out: (N, C, Ho, Wo), ``output`` = Ho x Wo (each >= 1); cell i
        averages rows ``floor(i*H/Ho)`` to ``ceil((i+1)*H/Ho)`` (exclusive), likewise the
        columns, as PyTorch's ``adaptive_avg_pool2d``."""
        ...

    def adaptive_avgpool2d_backward(self, dout: Array, cache: Cache) -> Array:
        """-> dx = dout spread evenly over each window, / its size."""
        ...

    def global_avgpool_forward(self, x: Array) -> tuple[Array, Cache]:
        """x: (N, C, H, W) -> out: (N, C), the mean over H and W."""
        ...

    def global_avgpool_backward(self, dout: Array, cache: Cache) -> Array:
        """-> dx."""
        ...

    def relu_forward(self, x: Array) -> tuple[Array, Cache]:
        """out = max(x, 0); x: any shape."""
        ...

    def relu_backward(self, dout: Array, cache: Cache) -> Array:
        """-> dx; the gradient at x = 0 is 0."""
        ...

    def leaky_relu_forward(self, x: Array, slope: float = 0.01) -> tuple[Array, Cache]:
        """out = x where x > 0, else slope * x; x: any shape."""
        ...

    def leaky_relu_backward(self, dout: Array, cache: Cache) -> Array:
        """-> dx; the gradient at x = 0 is the slope, as in PyTorch."""
        ...

    def sigmoid_forward(self, x: Array) -> tuple[Array, Cache]:
        """x: any shape -> out: x's shape, ``1 / (1 + exp(-x))``."""
        ...

    def sigmoid_backward(self, dout: Array, cache: Cache) -> Array: ...

    def tanh_forward(self, x: Array) -> tuple[Array, Cache]:
        """x: any shape -> out: x's shape."""
        ...

    def tanh_backward(self, dout: Array, cache: Cache) -> Array: ...

    def elu_forward(self, x: Array, alpha: float = 1.0) -> tuple[Array, Cache]:
        """x: any shape -> out: x's shape; ``alpha * (exp(x) - 1)`` for x <= 0."""
        ...

    def elu_backward(self, dout: Array, cache: Cache) -> Array: ...

    def gelu_forward(self, x: Array) -> tuple[Array, Cache]:
        """x: any shape -> out: x's shape; the exact (erf) GELU."""
        ...

    def gelu_backward(self, dout: Array, cache: Cache) -> Array: ...

    def silu_forward(self, x: Array) -> tuple[Array, Cache]:
        """x: any shape -> out: x's shape, ``x * sigmoid(x)``."""
        ...

    def silu_backward(self, dout: Array, cache: Cache) -> Array: ...

    def relu6_forward(self, x: Array) -> tuple[Array, Cache]:
        """x: any shape -> out: x's shape, ``min(max(x, 0), 6)``."""
        ...

    def relu6_backward(self, dout: Array, cache: Cache) -> Array: ...

    def linear_forward(self, x: Array, w: Array, b: Array | None) -> tuple[Array, Cache]:
        """x: (N, D), w: (M, D), b: (M,) or None -> out = x @ w.T + b: (N, M)."""
        ...

    def linear_backward(self, dout: Array, cache: Cache) -> tuple[Array, Array, Array | None]:
        """-> (dx, dw, db); db is None when b was."""
        ...

    def flatten_forward(self, x: Array) -> tuple[Array, Cache]:
        """x: (N, d1, d2, ...) -> out: (N, d1*d2*...)."""
        ...

    def flatten_backward(self, dout: Array, cache: Cache) -> Array:
        """-> dx of x's shape."""
        ...

    def dropout_forward(self, x: Array, mask: Array, p: float) -> tuple[Array, Cache]:
        """Inverted dropout: out = x * mask / (1 - p); mask: bool keep-mask of x's shape."""
        ...

    def dropout_backward(self, dout: Array, cache: Cache) -> Array:
        """-> dx = dout * mask / (1 - p)."""
        ...

    def softmax_cross_entropy(
        self, logits: Array, y: Array, smoothing: float = 0.0
    ) -> tuple[float, Array]:
        """logits: (N, K), y: (N,) int labels -> (mean loss, dlogits: (N, K)).

        ``smoothing`` ε in [0, 1) smooths the targets to ``(1 - ε)·onehot(y) + ε/K``, as
        ``torch.nn.CrossEntropyLoss(label_smoothing=ε)``; then ``dlogits = (softmax - t) / N``.
        A set whose loss cannot smooth (a user's file) raises KernelMissingError for ε > 0.
        """
        ...

    def batchnorm_forward(
        self,
        x: Array,
        gamma: Array,
        beta: Array,
        running_mean: Array,
        running_var: Array,
        train: bool = True,
        momentum: float = 0.1,
        eps: float = 1e-5,
    ) -> tuple[Array, Cache]:
        """x: (N, D) or (N, C, H, W) (spatial: statistics over N, H, W), the rest (C,) ->
        out: x's shape. Training updates the running statistics in place, as PyTorch does
        (momentum, unbiased running variance); eval normalises with them."""
        ...

    def batchnorm_backward(self, dout: Array, cache: Cache, mode: str = "fused") -> Grads3:
        """-> (dx, dgamma, dbeta); mode ``staged`` or ``fused`` picks the formula."""
        ...

    def layernorm_forward(
        self, x: Array, gamma: Array, beta: Array, eps: float = 1e-5
    ) -> tuple[Array, Cache]:
        """Per sample over every non-batch axis; gamma, beta: (C,) per channel (or (D,))."""
        ...

    def layernorm_backward(self, dout: Array, cache: Cache) -> Grads3:
        """-> (dx, dgamma, dbeta)."""
        ...

    def groupnorm_forward(
        self, x: Array, gamma: Array, beta: Array, groups: int, eps: float = 1e-5
    ) -> tuple[Array, Cache]:
        """x: (N, C, H, W), per sample over groups of C/groups channels and (H, W)."""
        ...

    def groupnorm_backward(self, dout: Array, cache: Cache) -> Grads3:
        """-> (dx, dgamma, dbeta)."""
        ...

    def lrn_forward(
        self, x: Array, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0
    ) -> tuple[Array, Cache]:
        """x: (N, C, H, W) -> out_c = x_c / (k + alpha/size * sum of x^2 over the channels
        c - size//2 .. c + (size-1)//2, zero-padded)^beta (PyTorch's ``local_response_norm``)."""
        ...

    def lrn_backward(self, dout: Array, cache: Cache) -> Array:
        """-> dx."""
        ...

    def add_forward(self, a: Array, b: Array) -> tuple[Array, Cache]:
        """out = a + b, same shapes (a residual sum)."""
        ...

    def add_backward(self, dout: Array, cache: Cache) -> Grads2:
        """-> (da, db)."""
        ...

    def concat_forward(self, *xs: Array) -> tuple[Array, Cache]:
        """xs: any number of (N, C_i, H, W), alike but for C_i -> out: (N, C_1 + ... + C_k, H, W),
        the xs in order along the channels."""
        ...

    def concat_backward(self, dout: Array, cache: Cache) -> tuple[Array, ...]:
        """-> one gradient per input, dout's channels of that input (views of dout on the numpy
        backends)."""
        ...

    def channel_gate_forward(self, x: Array, s: Array) -> tuple[Array, Cache]:
        """x: (N, C, H, W), s: (N, C) -> out = x * s[:, :, None, None]: (N, C, H, W), a factor
        per sample and channel (squeeze-and-excitation)."""
        ...

    def channel_gate_backward(self, dout: Array, cache: Cache) -> Grads2:
        """-> (dx = dout * s[:, :, None, None], ds = the sum over H, W of dout * x)."""
        ...


# The layers with a forward/backward pair (softmax cross-entropy is one function).
PAIRS = tuple(n.removesuffix("_forward") for n in vars(KernelSet) if n.endswith("_forward"))
