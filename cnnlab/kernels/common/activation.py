"""ReLU and leaky ReLU: ``max(x, 0)`` and ``x`` where positive, ``slope * x`` elsewhere."""

from __future__ import annotations

import numpy as np


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
    # Two clipped copies rather than np.where on a mask: plain elementwise passes, and exact
    # (one of the two terms is always 0).
    out = np.maximum(x, 0) + x.dtype.type(slope) * np.minimum(x, 0)
    return out, (x, slope)


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

    x: any shape -> out: x's shape; cache ``(x, out, alpha)``.
    """
    a = x.dtype.type(alpha)
    out = np.where(x > 0, x, a * np.expm1(np.minimum(x, 0)))
    return out, (x, out, alpha)


def elu_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """``dx = dout`` where ``x > 0``, else ``dout * (out + alpha)`` (= alpha * exp(x))."""
    x, out, alpha = cache
    return np.where(x > 0, dout, dout * (out + x.dtype.type(alpha)))


def gelu_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The exact GELU, ``x * Phi(x)`` with Phi the standard normal CDF
    ``(1 + erf(x / sqrt 2)) / 2`` (torch's default, not the tanh approximation).

    x: any shape -> out: x's shape; cache is x.
    """
    return x * _normal_cdf(x), x


def gelu_backward(dout: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """``dx = dout * (Phi(x) + x * phi(x))`` with phi the standard normal density."""
    x = cache
    t = x.dtype.type
    pdf = np.exp(t(-0.5) * x * x) * t(1 / np.sqrt(2 * np.pi))
    return dout * (_normal_cdf(x) + x * pdf)


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
    """This module's kernels, as methods of the numpy kernel sets (see ``NumpyKernels``)."""

    leaky_relu_backward = staticmethod(leaky_relu_backward)
    leaky_relu_forward = staticmethod(leaky_relu_forward)
    relu_backward = staticmethod(relu_backward)
    relu_forward = staticmethod(relu_forward)
    sigmoid_forward = staticmethod(sigmoid_forward)
    sigmoid_backward = staticmethod(sigmoid_backward)
    tanh_forward = staticmethod(tanh_forward)
    tanh_backward = staticmethod(tanh_backward)
    elu_forward = staticmethod(elu_forward)
    elu_backward = staticmethod(elu_backward)
    gelu_forward = staticmethod(gelu_forward)
    gelu_backward = staticmethod(gelu_backward)
    silu_forward = staticmethod(silu_forward)
    silu_backward = staticmethod(silu_backward)
    relu6_forward = staticmethod(relu6_forward)
    relu6_backward = staticmethod(relu6_backward)
