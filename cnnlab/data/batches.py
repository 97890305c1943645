"""The order of training samples: one permutation per epoch, cut into batches.

The order depends only on ``(seed, epoch)``, so every backend, and a run resumed from a
checkpoint, sees the same batches.
"""

from __future__ import annotations

import numpy as np


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The permutation (n,) int64 of sample indices for one epoch, from ``[seed, epoch]``."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def batch_indices(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Consecutive slices of ``order`` of ``batch_size`` each; the last, partial batch is kept."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
