"""Softmax cross-entropy loss, mean over the batch."""

from __future__ import annotations

import numpy as np

from cnnlab.errors import ArgumentError, ShapeError
from cnnlab.kernels.contract import check_arrays


def check_loss_inputs(logits: np.ndarray, y: np.ndarray, smoothing: float = 0.0) -> None:
    """What every backend's loss refuses alike: logits that are not a float (N, K) array with
    N > 0, labels that are not N integers (not bools) in ``[0, K)``, a smoothing outside
    ``[0, 1)``."""
    check_arrays("softmax_cross_entropy", [("logits", logits)])
    if not 0.0 <= smoothing < 1.0:  # also refuses NaN
        raise ArgumentError(f"softmax_cross_entropy: smoothing must be in [0, 1), got {smoothing}")
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


def softmax_cross_entropy(
    logits: np.ndarray, y: np.ndarray, smoothing: float = 0.0
) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy and its gradient, with optional label smoothing.

    logits: (N, K) scores; y: (N,) integer labels in ``[0, K)``; smoothing: ε in ``[0, 1)``.
    Returns ``(loss, dlogits)`` with loss a Python float and dlogits: (N, K) in logits' dtype.
    With zero logits the loss is ``ln K`` (2.3026 for 10 classes), a first sanity check for a
    fresh network.

    Label smoothing is ``torch.nn.CrossEntropyLoss(label_smoothing=ε)``'s: each sample's target
    is ``t = (1 - ε)·onehot(y) + ε/K``, the loss the batch mean of ``-Σ_k t_k log softmax_k``,
    and ``dlogits = (softmax - t) / N``. ε = 0 is the plain loss, computed as it always was.
    """
    check_loss_inputs(logits, y, smoothing)
    N, K = logits.shape
    y = np.asarray(y)
    # Shifting by the row maximum keeps exp() from overflowing; the largest term becomes 1, so
    # the log-sum-exp is also safe from log(0).
    shifted = logits - logits.max(axis=1, keepdims=True)  # (N, K)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # (N, K)
    rows = np.arange(N)
    loss = -float(log_probs[rows, y].mean())
    dlogits = np.exp(log_probs)  # softmax probabilities
    if smoothing:
        # -Σ_k t_k log p_k = (1 - ε)·(-log p_y) + ε·mean_k(-log p_k), as torch sums it.
        loss = (1 - smoothing) * loss - smoothing * float(log_probs.mean(axis=1).mean())
        dlogits -= smoothing / K
        dlogits[rows, y] -= 1 - smoothing
    else:
        dlogits[rows, y] -= 1
    dlogits /= N
    return loss, dlogits


class LossKernels:
    """This module's kernels, as methods of the numpy kernel sets (see ``NumpyKernels``)."""

    softmax_cross_entropy = staticmethod(softmax_cross_entropy)
