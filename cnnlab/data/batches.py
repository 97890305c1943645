"""The order of training samples: one permutation per epoch, cut into batches.

The order depends only on ``(seed, epoch)``, so every backend, and a run resumed from a
checkpoint, sees the same batches. A data-parallel run cuts each batch once more, into one
contiguous :func:`shard` per process.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The permutation (n,) int64 of sample indices for one epoch, from ``[seed, epoch]``."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def batch_indices(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Consecutive slices of ``order`` of ``batch_size`` each; the last, partial batch is kept."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


@dataclass(frozen=True)
class Rows:
    """Rows ``start:stop`` of a batch of ``total`` rows: what one process of a data-parallel
    run holds. Random draws made per batch (augmentation, dropout masks) are drawn for all
    ``total`` rows and cut to these, so each process gets exactly its share of what a single
    process would draw for the whole batch."""

    start: int
    stop: int
    total: int

    @property
    def slice(self) -> slice:
        return slice(self.start, self.stop)

    def __len__(self) -> int:
        return self.stop - self.start


def shard(total: int, rank: int, world: int) -> Rows:
    """Rank ``rank``'s contiguous share of a batch of ``total`` rows split over ``world``.

    Shares differ by at most one row, the larger ones first (``np.array_split``'s rule): the
    whole batch of ``world * B`` rows gives every rank ``B``; a short last batch of an epoch is
    split as evenly as it can be (a rank may get no rows when ``total < world``).
    """
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in 0..{world - 1}")
    size, extra = divmod(total, world)
    start = rank * size + min(rank, extra)
    return Rows(start, start + size + (rank < extra), total)
