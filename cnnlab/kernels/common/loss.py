"""Softmax cross-entropy loss, mean over the batch."""

from __future__ import annotations

import numpy as np

from cnnlab.errors import ArgumentError, ShapeError
from cnnlab.kernels.contract import check_arrays


def check_loss_inputs(logits: np.ndarray, y: np.ndarray) -> None:
    """What every backend's loss refuses alike: logits that are not a float (N, K) array with
    N > 0, labels that are not N integers (not bools) in ``[0, K)``."""
    check_arrays("softmax_cross_entropy", [("logits", logits)])
    if logits.ndim != 2:
        raise ShapeError(f"softmax_cross_entropy: logits must be (N, K), got {logits.shape}")
    N, K = logits.shape
    if N == 0:
        raise ShapeError("softmax_cross_entropy: the batch is empty")
    y = np.asarray(y)
    if y.shape != (N,):
        raise ShapeError(
            f"softmax_cross_entropy: y must be ({N},) for logits {logits.shape}, got {y.shape}"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise ArgumentError(f"softmax_cross_entropy: labels must be integers, got dtype {y.dtype}")
    if y.min() < 0 or y.max() >= K:
        raise ArgumentError(
            f"softmax_cross_entropy: labels must be in [0, {K}), got min {y.min()} "
            f"and max {y.max()}"
        )


def softmax_cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy and its gradient.

    logits: (N, K) scores; y: (N,) integer labels in ``[0, K)``. Returns ``(loss, dlogits)``
    with loss a Python float and dlogits: (N, K) in logits' dtype. With zero logits the loss is
    ``ln K`` (2.3026 for 10 classes), a first sanity check for a fresh network.
    """
    check_loss_inputs(logits, y)
    N, _ = logits.shape
    y = np.asarray(y)
    # Shifting by the row maximum keeps exp() from overflowing; the largest term becomes 1, so
    # the log-sum-exp is also safe from log(0).
    shifted = logits - logits.max(axis=1, keepdims=True)  # (N, K)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # (N, K)
    rows = np.arange(N)
    loss = -float(log_probs[rows, y].mean())
    dlogits = np.exp(log_probs)  # softmax probabilities
    dlogits[rows, y] -= 1
    dlogits /= N
    return loss, dlogits


class LossKernels:
    """This module's kernels, as methods of the numpy kernel sets (see ``NumpyKernels``)."""

    softmax_cross_entropy = staticmethod(softmax_cross_entropy)
