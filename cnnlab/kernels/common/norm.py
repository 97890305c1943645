"""Batch, layer and group normalisation, built on one normalisation core.

All three compute ``x_hat = (x - mean) / sqrt(var + eps)`` over some axes and then apply a
per-channel affine ``out = gamma * x_hat + beta``; they differ only in which axes the statistics
cover (as in tinygrad, group norm is a reshape plus the core, and layer norm is group norm with
one group):

- batch norm: per channel over N (x: (N, D)) or over N, H, W (x: (N, C, H, W));
- group norm: per sample over groups of C/G channels and H, W (x viewed as (N, G, C/G, H, W));
- layer norm: per sample over every non-batch axis, i.e. group norm with G = 1.

The variance used for normalising is the biased one (divide by m, the number of values in each
statistic), as in PyTorch.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from cnnlab.errors import ShapeError
from cnnlab.kernels.choices import BatchNormBackward
from cnnlab.kernels.geometry import check_batch_statistics, check_groups


class NormCache(NamedTuple):
    """What a normalisation's backward pass needs from its forward pass."""

    x_hat: np.ndarray  # normalised input, x's shape
    inv_std: np.ndarray  # 1 / sqrt(var + eps), broadcastable against view_shape
    gamma: np.ndarray  # (C,)
    view_shape: tuple[int, ...]  # the shape of x in which the statistics were taken
    axes: tuple[int, ...]  # axes of that view the statistics reduce over
    batch_stats: bool  # False when the statistics were constants (batch norm in eval)


# ---- the normalisation core -----------------------------------------------------------------


def _sum_of_product(a: np.ndarray, b: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """``(a * b).sum(axis=axes, keepdims=True)`` without the product array: einsum reads both
    once and writes no temporary the size of an activation."""
    letters = "abcdefghijklmnop"[: a.ndim]
    kept = "".join(c for i, c in enumerate(letters) if i not in axes)
    total = np.einsum(f"{letters},{letters}->{kept}", a, b)
    return total.reshape([1 if i in axes else n for i, n in enumerate(a.shape)])


def _normalize(
    x: np.ndarray, axes: tuple[int, ...], eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(x_hat, inv_std, mean, var)``; the statistics keep the reduced axes."""
    mean = x.mean(axis=axes, keepdims=True)
    x_mu = x - mean
    # Two passes (mean first, then the mean square of x - mean) rather than E[x^2] - E[x]^2,
    # which cancels catastrophically when the mean is large next to the spread.
    var = _sum_of_product(x_mu, x_mu, axes) / _count(x.shape, axes)
    inv_std = 1.0 / np.sqrt(var + eps)
    x_mu *= inv_std.astype(x_mu.dtype, copy=False)  # x_hat, in the same memory
    return x_mu, inv_std, mean, var


def _count(shape: tuple[int, ...], axes: tuple[int, ...]) -> int:
    return math.prod(shape[a] for a in axes)


def _normalize_backward_fused(
    dx_hat: np.ndarray, x_hat: np.ndarray, inv_std: np.ndarray, axes: tuple[int, ...]
) -> np.ndarray:
    """Closed form: ``dx = inv_std/m * (m*dx_hat - sum(dx_hat) - x_hat*sum(dx_hat*x_hat))``.

    Overwrites dx_hat (the caller's scratch): one array is allocated, not five.
    """
    m = _count(dx_hat.shape, axes)
    sum_dx_hat = dx_hat.sum(axis=axes, keepdims=True)
    sum_dx_hat_x_hat = _sum_of_product(dx_hat, x_hat, axes)
    dx = x_hat * (inv_std / -m * sum_dx_hat_x_hat).astype(x_hat.dtype, copy=False)
    dx_hat *= inv_std.astype(dx_hat.dtype, copy=False)
    dx += dx_hat
    dx -= (inv_std / m * sum_dx_hat).astype(dx.dtype, copy=False)
    return dx


def _normalize_backward_staged(
    dx_hat: np.ndarray, x_hat: np.ndarray, inv_std: np.ndarray, axes: tuple[int, ...]
) -> np.ndarray:
    """Back through the graph ``x -> mean -> var -> x_hat`` one node at a time.

    The forward graph is ``x_mu = x - mean``, ``var = mean(x_mu**2)``,
    ``x_hat = x_mu * (var + eps)**-0.5``; x feeds x_hat directly, through mean and through var.
    """
    m = _count(dx_hat.shape, axes)
    # x - mean, recovered from x_hat instead of being cached a second time.
    x_mu = x_hat / inv_std
    dvar = (dx_hat * x_mu).sum(axis=axes, keepdims=True) * -0.5 * inv_std**3
    # The second term is zero in exact arithmetic (x_mu sums to 0); it is kept because it is
    # the path mean -> var -> x_hat of the graph.
    dmean = (-dx_hat * inv_std).sum(axis=axes, keepdims=True) + dvar * (-2.0 * x_mu).mean(
        axis=axes, keepdims=True
    )
    return dx_hat * inv_std + dvar * 2.0 * x_mu / m + dmean / m


_BACKWARDS = {"staged": _normalize_backward_staged, "fused": _normalize_backward_fused}


# ---- per-channel affine ---------------------------------------------------------------------


def _channel_shape(ndim: int) -> tuple[int, ...]:
    """Shape that broadcasts a (C,) vector along axis 1 of an ndim array."""
    return (1, -1) + (1,) * (ndim - 2)


def _check_channel_vectors(layer: str, x: np.ndarray, **vectors: np.ndarray) -> None:
    C = x.shape[1]
    for name, v in vectors.items():
        if v.shape != (C,):
            raise ShapeError(f"{layer}: {name} must be ({C},) for x {x.shape}, got {v.shape}")


def _affine_forward(x_hat: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> np.ndarray:
    shape = _channel_shape(x_hat.ndim)
    # Cast so that float64 parameters do not promote a float32 activation.
    g = gamma.reshape(shape).astype(x_hat.dtype, copy=False)
    b = beta.reshape(shape).astype(x_hat.dtype, copy=False)
    out = x_hat * g
    out += b
    return out


def _affine_backward(
    dout: np.ndarray, x_hat: np.ndarray, gamma: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(dx_hat, dgamma, dbeta)``."""
    not_channel = (0, *range(2, dout.ndim))
    dgamma = _sum_of_product(dout, x_hat, not_channel).reshape(-1)
    dbeta = dout.sum(axis=not_channel)
    dx_hat = dout * gamma.reshape(_channel_shape(dout.ndim)).astype(dout.dtype, copy=False)
    return dx_hat, dgamma, dbeta


def _norm_backward(
    dout: np.ndarray, cache: NormCache, mode: str = "fused"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dx_hat, dgamma, dbeta = _affine_backward(dout, cache.x_hat, cache.gamma)
    if not cache.batch_stats:
        # Fixed statistics: x_hat is an affine function of x alone.
        return dx_hat * cache.inv_std, dgamma, dbeta
    dx = _BACKWARDS[mode](
        dx_hat.reshape(cache.view_shape),
        cache.x_hat.reshape(cache.view_shape),
        cache.inv_std,
        cache.axes,
    )
    return dx.reshape(dout.shape), dgamma, dbeta


# ---- batch norm -----------------------------------------------------------------------------


def batchnorm_forward(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    train: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> tuple[np.ndarray, NormCache]:
    """Batch normalisation, dense or spatial.

    x: (N, D) (statistics per feature over N) or (N, C, H, W) (statistics per channel over
    N, H, W); gamma, beta, running_mean, running_var: (C,) (C = D for dense x).

    Training normalises with the batch mean and biased variance, and updates the running
    statistics in place as PyTorch does: ``running = (1 - momentum) * running + momentum *
    stat``, with the unbiased variance ``var * m / (m - 1)`` (m values per channel) for
    running_var. Evaluation (``train=False``) normalises with the running statistics.

    Returns ``(out, cache)``: out of x's shape; cache a :class:`NormCache`.
    """
    if x.ndim not in (2, 4):
        raise ShapeError(f"batchnorm: x must be (N, D) or (N, C, H, W), got shape {x.shape}")
    _check_channel_vectors(
        "batchnorm", x, gamma=gamma, beta=beta, running_mean=running_mean, running_var=running_var
    )
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    if train and x.size == 0:
        # An empty batch has no statistics: the running ones stay, the gradients are zero
        # (as torch does), so the (empty) output is taken as normalised by constants.
        inv_std = np.ones(gamma.shape, x.dtype).reshape(_channel_shape(x.ndim))
        out = _affine_forward(x, gamma, beta)
        return out, NormCache(x, inv_std, gamma, x.shape, axes, batch_stats=False)
    if train:
        check_batch_statistics(x.shape)
        m = _count(x.shape, axes)
        x_hat, inv_std, mean, var = _normalize(x, axes, eps)
        C = x.shape[1]
        running_mean *= 1.0 - momentum
        running_mean += momentum * mean.reshape(C)
        running_var *= 1.0 - momentum
        running_var += momentum * var.reshape(C) * (m / (m - 1))
    else:
        shape = _channel_shape(x.ndim)
        mean = running_mean.reshape(shape).astype(x.dtype, copy=False)
        var = running_var.reshape(shape).astype(x.dtype, copy=False)
        inv_std = 1.0 / np.sqrt(var + eps)
        x_hat = (x - mean) * inv_std
    out = _affine_forward(x_hat, gamma, beta)
    return out, NormCache(x_hat, inv_std, gamma, x.shape, axes, batch_stats=train)


def batchnorm_backward(
    dout: np.ndarray, cache: NormCache, mode: str = "fused"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batch normalisation backward.

    dout: x's shape. Returns ``(dx, dgamma, dbeta)``: dx of x's shape, dgamma and dbeta (C,).
    ``mode="staged"`` goes back through the graph step by step (dx_hat -> dvar -> dmean -> dx),
    as the derivation is written by hand; ``mode="fused"`` uses the closed form
    ``dx = inv_std/m * (m*dx_hat - sum(dx_hat) - x_hat*sum(dx_hat*x_hat))``, whose two sums are
    gamma * dbeta and gamma * dgamma (:func:`_batchnorm_backward_fused`). They agree to
    rounding. After an eval-mode forward the statistics are constants and both reduce to
    ``dx = dout * gamma * inv_std``.
    """
    mode = BatchNormBackward(mode)
    if mode == "fused" and cache.batch_stats:
        return _batchnorm_backward_fused(dout, cache)
    return _norm_backward(dout, cache, mode)


def _batchnorm_backward_fused(
    dout: np.ndarray, cache: NormCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fused closed form, with the affine's own sums: batch norm's statistics reduce over
    the same axes as dgamma and dbeta, and dx_hat = gamma * dout, so ``sum(dx_hat) = gamma *
    dbeta`` and ``sum(dx_hat * x_hat) = gamma * dgamma``, and

        dx = gamma * inv_std / m * (m * dout - dbeta - x_hat * dgamma)

    (CS231n's form): no dx_hat array and two passes fewer than the general closed form.
    """
    x_hat, axes = cache.x_hat, cache.axes
    dgamma = _sum_of_product(dout, x_hat, axes).reshape(-1)
    dbeta = dout.sum(axis=axes)
    m = _count(dout.shape, axes)
    k = cache.gamma * cache.inv_std.reshape(-1) / m  # (C,)

    def per_channel(v: np.ndarray) -> np.ndarray:
        return v.reshape(_channel_shape(dout.ndim)).astype(dout.dtype, copy=False)

    dx = dout * per_channel(k * m)
    correction = x_hat * per_channel(k * dgamma)
    correction += per_channel(k * dbeta)
    dx -= correction
    return dx, dgamma, dbeta


# ---- group norm and layer norm --------------------------------------------------------------


def _grouped_norm_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, groups: int, eps: float, layer: str
) -> tuple[np.ndarray, NormCache]:
    """Per sample over groups of C/G channels and every axis after them, then the affine."""
    _check_channel_vectors(layer, x, gamma=gamma, beta=beta)
    N, C = x.shape[:2]
    view_shape = (N, groups, C // groups, *x.shape[2:])
    axes = tuple(range(2, len(view_shape)))
    x_hat, inv_std, _, _ = _normalize(x.reshape(view_shape), axes, eps)
    x_hat = x_hat.reshape(x.shape)
    out = _affine_forward(x_hat, gamma, beta)
    return out, NormCache(x_hat, inv_std, gamma, view_shape, axes, batch_stats=True)


def groupnorm_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, groups: int, eps: float = 1e-5
) -> tuple[np.ndarray, NormCache]:
    """Group normalisation.

    x: (N, C, H, W); gamma, beta: (C,); groups G must divide C. Statistics per sample over each
    group of C/G consecutive channels and H, W. Returns ``(out, cache)``: out of x's shape;
    cache a :class:`NormCache`.
    """
    if x.ndim != 4:
        raise ShapeError(f"groupnorm: x must be (N, C, H, W), got shape {x.shape}")
    groups = check_groups(groups, x.shape)
    return _grouped_norm_forward(x, gamma, beta, groups, eps, "groupnorm")


def groupnorm_backward(
    dout: np.ndarray, cache: NormCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group normalisation backward: dout (N, C, H, W) -> ``(dx, dgamma, dbeta)``."""
    return _norm_backward(dout, cache)


def layernorm_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5
) -> tuple[np.ndarray, NormCache]:
    """Layer normalisation: per sample over every non-batch axis.

    x: (N, D) with gamma, beta: (D,), or (N, C, H, W) with per-channel gamma, beta: (C,) (the
    same as group norm with one group; PyTorch's ``layer_norm`` would take (C, H, W) weights).
    Returns ``(out, cache)``: out of x's shape; cache a :class:`NormCache`.
    """
    if x.ndim not in (2, 4):
        raise ShapeError(f"layernorm: x must be (N, D) or (N, C, H, W), got shape {x.shape}")
    return _grouped_norm_forward(x, gamma, beta, 1, eps, "layernorm")


def layernorm_backward(
    dout: np.ndarray, cache: NormCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Layer normalisation backward: dout of x's shape -> ``(dx, dgamma, dbeta)``."""
    return _norm_backward(dout, cache)


class NormKernels:
    """This module's kernels, as methods of the numpy kernel sets (see ``NumpyKernels``)."""

    batchnorm_backward = staticmethod(batchnorm_backward)
    batchnorm_forward = staticmethod(batchnorm_forward)
    groupnorm_backward = staticmethod(groupnorm_backward)
    groupnorm_forward = staticmethod(groupnorm_forward)
    layernorm_backward = staticmethod(layernorm_backward)
    layernorm_forward = staticmethod(layernorm_forward)
