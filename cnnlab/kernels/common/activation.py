"""ReLU and leaky ReLU: ``max(x, 0)`` and ``x`` where positive, ``slope * x`` elsewhere."""

from __future__ import annotations

import numpy as np

from cnnlab.kernels.common.elementwise import split_pair


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ReLU forward.

    x: any shape. Returns ``(out, cache)`` with out of x's shape and dtype; cache is x.
    """
    out = np.maximum(x, 0)
    return out, x


def relu_backward(dout: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """ReLU backward.

    dout: upstream gradient of out's shape. Returns dx: dout where ``x > 0`` and where x is
    NaN, 0 where ``x <= 0``, as in PyTorch.
    """
    x = cache
    # A product with the mask, not np.where: several times faster on a random sign pattern.
    return dout * ~(x <= 0)


def leaky_relu_forward(x: np.ndarray, slope: float = 0.01) -> tuple[np.ndarray, tuple]:
    """Leaky ReLU forward: ``out = x`` where ``x > 0``, else ``slope * x``.

    x: any shape. Returns ``(out, cache)`` with out of x's shape and dtype; cache is
    ``(x, slope)``.
    """
    a = x.dtype.type(slope)
    if 0 <= slope <= 1:  # then the larger of x and slope*x is the right one: a single pass
        return np.maximum(x, a * x), (x, slope)
    # Two clipped copies rather than np.where on a mask (slow on a random sign pattern), and
    # exact: one of the two terms is always 0.
    return np.maximum(x, 0) + a * np.minimum(x, 0), (x, slope)


def leaky_relu_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """Leaky ReLU backward: ``dx = dout`` where ``x > 0``, else ``slope * dout``; at
    ``x == 0`` the slope, as in PyTorch."""
    x, slope = cache
    positive = x > 0
    dx = dout * positive
    dx += dout * dout.dtype.type(slope) * ~positive
    return dx


def sigmoid_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``1 / (1 + exp(-x))``, computed as ``(1 + tanh(x / 2)) / 2``: no exp to overflow, and a
    few elementwise passes instead of two branches. x: any shape -> out: x's shape; cache is
    out."""
    half = x.dtype.type(0.5)
    out = np.tanh(x * half)
    out += 1
    out *= half
    return out, out


def sigmoid_backward(dout: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """``dx = dout * s * (1 - s)`` with s the forward's output."""
    s = cache
    return dout * s * (1 - s)


def tanh_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``tanh(x)``; x: any shape -> out: x's shape; cache is out."""
    out = np.tanh(x)
    return out, out


def tanh_backward(dout: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """``dx = dout * (1 - tanh(x)^2)``."""
    return dout * (1 - cache * cache)


def elu_forward(x: np.ndarray, alpha: float = 1.0) -> tuple[np.ndarray, tuple]:
    """``x`` where positive, ``alpha * (exp(x) - 1)`` elsewhere (torch's ELU).

    x: any shape -> out: x's shape; cache ``(x, alpha)``.
    """
    # The two sides apart and added (one of them is 0), not np.where: a branch per element
    # on a random sign pattern is several times slower than these passes.
    out = np.maximum(x, 0)
    negative = np.minimum(x, 0)
    np.expm1(negative, out=negative)
    negative *= x.dtype.type(alpha)
    out += negative
    return out, (x, alpha)


def elu_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """``dx = dout`` where ``x > 0``, else ``dout * alpha * exp(x)`` (as torch)."""
    x, alpha = cache
    positive = x > 0
    slope = np.exp(np.minimum(x, 0))  # finite where x > 0, where the mask zeroes it
    slope *= x.dtype.type(alpha)
    slope *= ~positive
    slope += positive
    return dout * slope


def gelu_forward(x: np.ndarray) -> tuple[np.ndarray, tuple]:
    """The exact GELU, ``x * Phi(x)`` with Phi the standard normal CDF
    ``(1 + erf(x / sqrt 2)) / 2`` (torch's default, not the tanh approximation).

    x: any shape -> out: x's shape; cache ``(x, Phi(x))``: erf is by far the dearest pass, and
    the backward needs Phi again.
    """
    cdf = _normal_cdf(x)
    return x * cdf, (x, cdf)


def gelu_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """``dx = dout * (Phi(x) + x * phi(x))`` with phi the standard normal density."""
    x, cdf = cache
    t = x.dtype.type
    pdf = np.exp(t(-0.5) * x * x) * t(1 / np.sqrt(2 * np.pi))
    return dout * (cdf + x * pdf)


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    """Phi(x) = (1 + erf(x / sqrt 2)) / 2 in x's dtype (constants too, so float32 stays)."""
    from scipy.special import erf

    t = x.dtype.type
    return t(0.5) * (1 + erf(x * t(1 / np.sqrt(2))))


def silu_forward(x: np.ndarray) -> tuple[np.ndarray, tuple]:
    """SiLU (swish), ``x * sigmoid(x)``; x: any shape -> out: x's shape; cache ``(x, s)``."""
    s, _ = sigmoid_forward(x)
    return x * s, (x, s)


def silu_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """``dx = dout * s * (1 + x * (1 - s))`` with s = sigmoid(x)."""
    x, s = cache
    return dout * s * (1 + x * (1 - s))


def relu6_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``min(max(x, 0), 6)`` (MobileNetV2's); x: any shape -> out: x's shape; cache is x."""
    return np.clip(x, 0, 6), x


def relu6_backward(dout: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """``dx = dout`` where ``0 < x < 6``, else 0 (at 0 and 6 too, as in PyTorch)."""
    x = cache
    return dout * ((x > 0) & (x < 6))


class ActivationKernels:
    """This module's kernels, as methods of the numpy kernel sets (see ``NumpyKernels``), run
    in spans on the set's worker threads where it has them (:mod:`.elementwise`)."""

    leaky_relu_forward, leaky_relu_backward = split_pair(leaky_relu_forward, leaky_relu_backward)
    relu_forward, relu_backward = split_pair(relu_forward, relu_backward)
    sigmoid_forward, sigmoid_backward = split_pair(sigmoid_forward, sigmoid_backward)
    tanh_forward, tanh_backward = split_pair(tanh_forward, tanh_backward)
    elu_forward, elu_backward = split_pair(elu_forward, elu_backward)
    gelu_forward, gelu_backward = split_pair(gelu_forward, gelu_backward)
    silu_forward, silu_backward = split_pair(silu_forward, silu_backward)
    relu6_forward, relu6_backward = split_pair(relu6_forward, relu6_backward)
