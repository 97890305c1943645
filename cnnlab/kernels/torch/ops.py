"""Functional forward ops on torch tensors: the torch twin of every layer in the kernel contract.

Each op is a plain ``Tensor -> Tensor`` function built from PyTorch ops, so autograd supplies the
backward pass. Shapes are checked with :mod:`cnnlab.kernels.geometry` (or the same kind of check)
before the torch call, so a shape that does not fit raises the same
:class:`~cnnlab.errors.ShapeError` as on the numpy backends instead of torch's own message.

:class:`cnnlab.kernels.torch.TorchKernels` wraps the ops marked :func:`paired` in the numpy pair
API; torch models use them directly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.nn.functional as F

from cnnlab.errors import ArgumentError, ShapeError
from cnnlab.kernels.choices import Ties
from cnnlab.kernels.common.combine import check_channel_gate, check_concat
from cnnlab.kernels.common.lrn import check_lrn
from cnnlab.kernels.geometry import (
    IntPair,
    adaptive_geometry,
    check_batch_statistics,
    check_groups,
    conv_geometry,
    pair,
    pool_geometry,
    pool_overhang,
)

Tensor = torch.Tensor
Op = TypeVar("Op", bound=Callable[..., Tensor])


@dataclass(frozen=True)
class Paired:
    """An op that the torch kernel set offers as ``<op>_forward`` / ``<op>_backward``.

    Attributes:
        op: the op; the forward has its signature, on numpy arrays.
        wrt: the op's arguments whose gradients the backward returns, in order.
        updates: array arguments the op changes in place (batch norm's running statistics),
            copied back into the caller's arrays.
        optional_dx: the backward takes ``need_dx`` and skips the first gradient when False.
    """

    op: Callable[..., Tensor]
    wrt: tuple[str, ...]
    updates: tuple[str, ...] = ()
    optional_dx: bool = False


PAIRED: dict[str, Paired] = {}


def paired(
    *wrt: str, updates: tuple[str, ...] = (), optional_dx: bool = False
) -> Callable[[Op], Op]:
    """Mark an op as a kernel pair of the torch kernel set (see :class:`Paired`)."""

    def mark(op: Op) -> Op:
        PAIRED[op.__name__] = Paired(op, wrt, updates, optional_dx)
        return op

    return mark


@paired("x", "w", "b", optional_dx=True)
def conv2d(
    x: Tensor,
    w: Tensor,
    b: Tensor | None,
    stride: IntPair = 1,
    pad: IntPair = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> Tensor:
    """2-D convolution (cross-correlation, no flip), as PyTorch's ``Conv2d``.

    x: (N, C, H, W); w: (F, C/groups, HH, WW); b: (F,) or None; stride, pad, dilation: int or
    (h, w) pair. Returns out: (N, F, Ho, Wo), ``Ho = 1 + (H + 2*pad - dilation*(HH - 1) - 1)
    // stride``, likewise Wo.
    """
    b_shape = None if b is None else tuple(b.shape)
    conv_geometry(tuple(x.shape), tuple(w.shape), b_shape, stride, pad, dilation, groups)
    return F.conv2d(
        x,
        w,
        b,
        stride=pair(stride, "stride"),
        padding=pair(pad, "pad"),
        dilation=pair(dilation, "dilation"),
        groups=int(groups),
    )


@paired("x", "w", "b", optional_dx=True)
def conv2d_relu(
    x: Tensor,
    w: Tensor,
    b: Tensor | None,
    stride: IntPair = 1,
    pad: IntPair = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> Tensor:
    """``relu(conv2d(x, w, b, ...))``: the fused ``conv_relu`` kind, as its two ops."""
    return torch.relu(conv2d(x, w, b, stride, pad, dilation, groups))


@paired("x")
def maxpool2d(
    x: Tensor,
    kernel: IntPair,
    stride: IntPair | None = None,
    pad: IntPair = 0,
    ties: str = "first",
    ceil_mode: bool = False,
) -> Tensor:
    """Max pooling, padded with -inf; stride defaults to the kernel.

    x: (N, C, H, W) -> out: (N, C, Ho, Wo), ``Ho = 1 + (H + 2*pad - kh) // stride``, rounded
    up with ``ceil_mode`` (PyTorch's rule, :func:`~cnnlab.kernels.geometry.pool_geometry`).
    ``ties="first"`` sends the gradient of a window to its first maximum in row-major order
    (PyTorch's ``max_pool2d``); ``ties="all"`` sends the full gradient to every maximum.
    """
    ties = Ties(ties)
    k, s, p, (Ho, Wo) = pool_geometry("maxpool2d", tuple(x.shape), kernel, stride, pad, ceil_mode)
    if ties == "first":
        return F.max_pool2d(x, k, s, p, ceil_mode=ceil_mode)
    return _maxpool2d_all_ties(x, k, s, p, (Ho, Wo))


def _maxpool2d_all_ties(
    x: Tensor,
    k: tuple[int, int],
    s: tuple[int, int],
    p: tuple[int, int],
    out_hw: tuple[int, int],
) -> Tensor:
    """Max pooling whose gradient reaches every maximum of a window in full.

    Neither ``max_pool2d`` (one arg-max) nor ``amax`` (splits the gradient evenly between ties)
    does this, so the pair is written by hand (:class:`_AllTies`): the forward is the window
    maximum, the backward sends each window's dout to every inside element equal to it. No
    arithmetic touches the values, so infinite maxima and ties whose sum would overflow stay
    exact. With ceil mode's output size (out_hw) the last windows reach past the padded input:
    it is grown by -inf there, which, like the padding, never receives the gradient.
    """
    return _AllTies.apply(x, k, s, p, out_hw)


class _AllTies(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        x: Tensor,
        k: tuple[int, int],
        s: tuple[int, int],
        p: tuple[int, int],
        out_hw: tuple[int, int],
    ) -> Tensor:
        N, C, H, W = x.shape
        K, L = k[0] * k[1], out_hw[0] * out_hw[1]
        e = pool_overhang((H, W), k, s, p, out_hw)
        pads = (p[1], p[1] + e[1], p[0], p[0] + e[0])
        # Sizes spelled out: -1 is ambiguous for an empty batch (a data-parallel rank may get one).
        cols = F.unfold(F.pad(x, pads, value=-math.inf), k, stride=s).view(N, C, K, L)
        m = cols.amax(dim=2, keepdim=True)
        # Padding equals a window of -inf inputs, but never receives the gradient.
        ones = torch.ones((1, 1, H, W), dtype=x.dtype, device=x.device)
        inside = F.unfold(F.pad(ones, pads, value=0.0), k, stride=s).view(1, 1, K, L) > 0
        ctx.save_for_backward((cols == m) & inside)
        ctx.geometry = (tuple(x.shape), k, s, p, e)  # type: ignore[attr-defined]
        return m.view(N, C, *out_hw)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, dout: Tensor
    ) -> tuple[Tensor, None, None, None, None]:
        (mask,) = ctx.saved_tensors  # type: ignore[attr-defined]
        (N, C, H, W), k, s, p, e = ctx.geometry  # type: ignore[attr-defined]
        K, L = mask.shape[2], mask.shape[3]
        # where() rather than dout * mask: an inf or nan in dout stays in its windows.
        zero = torch.zeros((), dtype=dout.dtype, device=dout.device)
        g = torch.where(mask, dout.reshape(N, C, 1, L), zero).reshape(N, C * K, L)
        dxp = F.fold(g, (H + 2 * p[0] + e[0], W + 2 * p[1] + e[1]), k, stride=s)
        return dxp[:, :, p[0] : p[0] + H, p[1] : p[1] + W], None, None, None, None


@paired("x")
def avgpool2d(
    x: Tensor,
    kernel: IntPair,
    stride: IntPair | None = None,
    pad: IntPair = 0,
    ceil_mode: bool = False,
) -> Tensor:
    """Average pooling with padding counted as zeros (``count_include_pad=True``).

    x: (N, C, H, W) -> out: (N, C, Ho, Wo), ``Ho = 1 + (H + 2*pad - kh) // stride``, rounded
    up with ``ceil_mode``; a window running past the padded input is divided by the number of
    its elements inside it.
    """
    k, s, p, _ = pool_geometry("avgpool2d", tuple(x.shape), kernel, stride, pad, ceil_mode)
    return F.avg_pool2d(x, k, s, p, ceil_mode=ceil_mode, count_include_pad=True)


@paired("x")
def adaptive_avgpool2d(x: Tensor, output: IntPair) -> Tensor:
    """Adaptive average pooling to ``output`` = Ho x Wo (each >= 1), PyTorch's own.

    x: (N, C, H, W) -> out: (N, C, Ho, Wo); cell i averages rows ``floor(i*H/Ho)`` to
    ``ceil((i+1)*H/Ho)`` (exclusive), likewise the columns.
    """
    out_hw = adaptive_geometry("adaptive_avgpool2d", tuple(x.shape), output)
    return F.adaptive_avg_pool2d(x, out_hw)


@paired("x")
def global_avgpool(x: Tensor) -> Tensor:
    """Mean over the whole feature map. x: (N, C, H, W) -> out: (N, C)."""
    if x.dim() != 4:
        raise ShapeError(f"global_avgpool: x must be (N, C, H, W), got shape {tuple(x.shape)}")
    return x.mean(dim=(2, 3))


@paired("x")
def relu(x: Tensor) -> Tensor:
    """``max(x, 0)`` elementwise; x: any shape. The gradient at exactly 0 is 0."""
    return torch.relu(x)


@paired("x")
def leaky_relu(x: Tensor, slope: float = 0.01) -> Tensor:
    """``x`` where positive, ``slope * x`` elsewhere; x: any shape. The gradient at 0 is the
    slope."""
    return F.leaky_relu(x, slope)


@paired("x")
def sigmoid(x: Tensor) -> Tensor:
    """``1 / (1 + exp(-x))``; x: any shape."""
    return torch.sigmoid(x)


@paired("x")
def tanh(x: Tensor) -> Tensor:
    """``tanh(x)``; x: any shape."""
    return torch.tanh(x)


@paired("x")
def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """``x`` where positive, ``alpha * (exp(x) - 1)`` elsewhere; x: any shape."""
    return F.elu(x, alpha)


@paired("x")
def gelu(x: Tensor) -> Tensor:
    """The exact (erf) GELU, ``x * Phi(x)``; x: any shape."""
    return F.gelu(x)


@paired("x")
def silu(x: Tensor) -> Tensor:
    """``x * sigmoid(x)``; x: any shape."""
    return F.silu(x)


@paired("x")
def relu6(x: Tensor) -> Tensor:
    """``min(max(x, 0), 6)``; x: any shape. The gradient at 0 and 6 is 0."""
    return F.relu6(x)


@paired("x", "w", "b")
def linear(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """Fully connected layer ``out = x @ w.T + b``.

    x: (N, D); w: (M, D); b: (M,) or None -> out: (N, M).
    """
    if x.dim() != 2 or w.dim() != 2:
        raise ShapeError(
            f"linear: x must be (N, D) and w (M, D), got {tuple(x.shape)} and {tuple(w.shape)}"
        )
    if x.shape[1] != w.shape[1]:
        raise ShapeError(
            f"linear: x {tuple(x.shape)} has {x.shape[1]} features but w {tuple(w.shape)} "
            f"expects {w.shape[1]}"
        )
    if b is not None and tuple(b.shape) != (w.shape[0],):
        raise ShapeError(f"linear: b must be ({w.shape[0]},), got shape {tuple(b.shape)}")
    return F.linear(x, w, b)


@paired("x")
def flatten(x: Tensor) -> Tensor:
    """Keep the batch axis, merge the rest. x: (N, d1, d2, ...) -> out: (N, d1*d2*...)."""
    return x.flatten(1)  # not reshape(N, -1): -1 is ambiguous when N = 0


@paired("x")
def dropout(x: Tensor, mask: Tensor, p: float) -> Tensor:
    """Inverted dropout with a given keep-mask: ``out = x * mask / (1 - p)``.

    x: any shape; mask: bool, x's shape (True = keep); p: drop probability in [0, 1).
    The mask comes from the caller (the project's numpy RNG), never from torch's RNG, so every
    backend drops the same units.
    """
    if tuple(mask.shape) != tuple(x.shape):
        raise ShapeError(
            f"dropout: mask {tuple(mask.shape)} must have the shape of x {tuple(x.shape)}"
        )
    if not 0.0 <= p < 1.0:
        raise ArgumentError(f"dropout: p must be in [0, 1), got {p}")
    return x * mask / (1.0 - p)


def softmax_cross_entropy(logits: Tensor, y: Tensor, smoothing: float = 0.0) -> Tensor:
    """Softmax cross-entropy, mean over the batch (numerically stable), with optional label
    smoothing.

    logits: (N, K); y: (N,) integer class labels in [0, K); smoothing: ε in [0, 1), the
    targets ``(1 - ε)·onehot(y) + ε/K`` (``F.cross_entropy``'s ``label_smoothing``) ->
    loss: () scalar.
    """
    if logits.dim() != 2 or tuple(y.shape) != (logits.shape[0],):
        raise ShapeError(
            f"softmax_cross_entropy: logits must be (N, K) and y (N,), got "
            f"{tuple(logits.shape)} and {tuple(y.shape)}"
        )
    if not 0.0 <= smoothing < 1.0:  # torch takes 1.0 too: uniform targets teach nothing
        raise ArgumentError(f"softmax_cross_entropy: smoothing must be in [0, 1), got {smoothing}")
    return F.cross_entropy(logits, y.long(), label_smoothing=smoothing)


def _check_per_channel(layer: str, x: Tensor, **params: Tensor | None) -> int:
    """Check that every per-channel parameter has shape (C,); return C (= x.shape[1])."""
    C = x.shape[1]
    for name, t in params.items():
        if t is not None and tuple(t.shape) != (C,):
            raise ShapeError(
                f"{layer}: {name} must be ({C},) for x {tuple(x.shape)}, got {tuple(t.shape)}"
            )
    return C


@paired("x", "gamma", "beta", updates=("running_mean", "running_var"))
def batchnorm(
    x: Tensor,
    gamma: Tensor,
    beta: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    train: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Batch normalisation, dense or spatial, as PyTorch's ``BatchNorm1d/2d``.

    x: (N, D) or (N, C, H, W) (spatial: statistics per channel over N, H, W);
    gamma, beta, running_mean, running_var: (C,) (C = D for dense x) -> out: x's shape.
    When training, normalises with the batch statistics (biased variance) and updates
    running_mean and running_var in place with ``momentum`` (unbiased variance), as PyTorch does;
    otherwise normalises with the running statistics.
    """
    if x.dim() not in (2, 4):
        raise ShapeError(f"batchnorm: x must be (N, D) or (N, C, H, W), got {tuple(x.shape)}")
    _check_per_channel(
        "batchnorm", x, gamma=gamma, beta=beta, running_mean=running_mean, running_var=running_var
    )
    if train:
        # torch raises a bare ValueError here; the user needs to know which layer and shape.
        check_batch_statistics(tuple(x.shape))
    return F.batch_norm(
        x, running_mean, running_var, gamma, beta, training=train, momentum=momentum, eps=eps
    )


def batchnorm_across(
    x: Tensor,
    gamma: Tensor,
    beta: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    batch_sum: Callable[[Tensor], Tensor],
    total: int,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Training-mode batch norm of a batch split over processes (SyncBatchNorm's maths).

    x: (n, D) or (n, C, H, W), this process's rows of a batch of ``total`` rows; gamma, beta,
    running_mean, running_var: (C,) -> out: x's shape. ``batch_sum`` sums a tensor over the
    processes that hold the batch, differentiably (an all-reduce whose backward all-reduces the
    gradient); with the identity and ``total = n`` this is :func:`batchnorm` in training mode.
    Mean and biased variance are those of the whole batch, in two passes (sum, then sum of
    squared deviations) accumulated in float64 as torch's CPU kernel does, so a split batch
    normalises like the whole one; every process updates the running statistics alike.
    """
    if x.dim() not in (2, 4):
        raise ShapeError(f"batchnorm: x must be (N, D) or (N, C, H, W), got {tuple(x.shape)}")
    C = _check_per_channel(
        "batchnorm", x, gamma=gamma, beta=beta, running_mean=running_mean, running_var=running_var
    )
    # The whole batch's shape, known without asking the other processes.
    check_batch_statistics((total, *x.shape[1:]))
    count = total * math.prod(x.shape[2:])  # values per channel in the whole batch
    dims = (0,) if x.dim() == 2 else (0, 2, 3)
    shape = (1, C) if x.dim() == 2 else (1, C, 1, 1)
    mean = batch_sum(x.sum(dims, dtype=torch.float64)) / count  # (C,)
    centred = x - mean.to(x.dtype).view(shape)
    var = batch_sum(centred.square().sum(dims, dtype=torch.float64)) / count  # (C,) biased
    with torch.no_grad():
        running_mean.mul_(1 - momentum).add_(mean.to(x.dtype), alpha=momentum)
        unbiased = var * (count / (count - 1))
        running_var.mul_(1 - momentum).add_(unbiased.to(x.dtype), alpha=momentum)
    invstd = torch.rsqrt(var + eps).to(x.dtype)
    return centred * (invstd * gamma).view(shape) + beta.view(shape)


@paired("x", "gamma", "beta")
def layernorm(x: Tensor, gamma: Tensor, beta: Tensor, eps: float = 1e-5) -> Tensor:
    """Layer normalisation per sample over all non-batch axes, with a per-channel affine.

    x: (N, C, H, W) with gamma, beta: (C,); or x: (N, D) with gamma, beta: (D,) -> out: x's shape.
    For 4-D x this is group norm with one group (``F.layer_norm`` would want (C, H, W) weights).
    """
    if x.dim() == 4:
        _check_per_channel("layernorm", x, gamma=gamma, beta=beta)
        return F.group_norm(x, 1, gamma, beta, eps)
    if x.dim() == 2:
        D = _check_per_channel("layernorm", x, gamma=gamma, beta=beta)
        return F.layer_norm(x, (D,), gamma, beta, eps)
    raise ShapeError(f"layernorm: x must be (N, D) or (N, C, H, W), got {tuple(x.shape)}")


@paired("x", "gamma", "beta")
def groupnorm(x: Tensor, gamma: Tensor, beta: Tensor, groups: int, eps: float = 1e-5) -> Tensor:
    """Group normalisation per sample over groups of C/groups channels and (H, W).

    x: (N, C, H, W); gamma, beta: (C,) per channel; groups must divide C -> out: x's shape.
    """
    if x.dim() != 4:
        raise ShapeError(f"groupnorm: x must be (N, C, H, W), got shape {tuple(x.shape)}")
    groups = check_groups(groups, tuple(x.shape))
    _check_per_channel("groupnorm", x, gamma=gamma, beta=beta)
    return F.group_norm(x, groups, gamma, beta, eps)


@paired("x")
def lrn(
    x: Tensor, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0
) -> Tensor:
    """Local response normalisation across channels, as PyTorch's ``LocalResponseNorm``.

    x: (N, C, H, W) -> out: x's shape, ``out_c = x_c / (k + alpha/size * sum x_c'^2)^beta`` over
    the channels ``c - size//2 .. c + (size-1)//2``, zero-padded. k is passed explicitly: the
    project's default is AlexNet's k=2, torch's is k=1.
    """
    check_lrn(tuple(x.shape), size)
    return F.local_response_norm(x, int(size), alpha=alpha, beta=beta, k=k)


@paired("a", "b")
def add(a: Tensor, b: Tensor) -> Tensor:
    """Residual add ``out = a + b``; a, b: the same shape (no broadcasting) -> out: that shape."""
    if tuple(a.shape) != tuple(b.shape):
        raise ShapeError(f"add: shapes {tuple(a.shape)} and {tuple(b.shape)} differ")
    return a + b


@paired("xs")
def concat(*xs: Tensor) -> Tensor:
    """Concatenation along channels; xs: any number of (N, C_i, H, W), alike but for C_i ->
    out: (N, C_1 + ... + C_k, H, W)."""
    check_concat([tuple(x.shape) for x in xs])
    return torch.cat(xs, dim=1)


@paired("x", "s")
def channel_gate(x: Tensor, s: Tensor) -> Tensor:
    """Per-channel gate ``out = x * s[:, :, None, None]``; x: (N, C, H, W), s: (N, C) -> out:
    (N, C, H, W)."""
    check_channel_gate(tuple(x.shape), tuple(s.shape))
    return x * s[:, :, None, None]
