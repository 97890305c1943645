"""The timing harness: warm-up, timed runs, medians and spreads, and the roofline rate."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Timing:
    """The median of the timed runs (median of each repeat's median) and their min and max."""

    median: float
    low: float
    high: float


def sync_for(device: str) -> Callable[[], None]:
    """A GPU runs asynchronously: without a synchronise the clock stops before the work does."""
    if device == "cuda":
        import torch

        return torch.cuda.synchronize
    return lambda: None


def measure(
    fn: Callable[[], object],
    warmup: int,
    runs: int,
    repeats: int = 1,
    device: str = "cpu",
    busy: Callable[[], float] | None = None,
) -> Timing:
    """Time ``fn``: ``warmup`` untimed calls, then ``runs`` timed ones, ``repeats`` times.

    busy: where the work runs elsewhere (a user's layers, in their worker process), the
    seconds it ran since the last call of ``busy``, measured there; the time of each call.
    """
    if busy is not None:
        return _measure_busy(fn, warmup, runs, repeats, busy)
    sync = sync_for(device)
    medians: list[float] = []
    every: list[float] = []
    for _ in range(max(repeats, 1)):
        for _ in range(warmup):
            fn()
        sync()
        times = []
        for _ in range(max(runs, 1)):
            start = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - start)
        medians.append(statistics.median(times))
        every += times
    return Timing(statistics.median(medians), min(every), max(every))


def _measure_busy(
    fn: Callable[[], object], warmup: int, runs: int, repeats: int, busy: Callable[[], float]
) -> Timing:
    medians: list[float] = []
    every: list[float] = []
    for _ in range(max(repeats, 1)):
        for _ in range(warmup):
            fn()
        busy()
        times = []
        for _ in range(max(runs, 1)):
            fn()
            times.append(busy())
        medians.append(statistics.median(times))
        every += times
    return Timing(statistics.median(medians), min(every), max(every))


def once(fn: Callable[[], object], device: str = "cpu") -> float:
    """One timed call (naive's probe)."""
    return measure(fn, 0, 1, 1, device).median


def matmul_gflops(n: int, dtype: np.dtype, runs: int = 5) -> float:
    """The roofline: GFLOP/s of numpy's ``a @ b`` on n x n matrices in ``dtype``, at the
    thread count already set (BLAS is what a vectorised numpy conv can at best reach)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    t = measure(lambda: a @ b, 1, runs)
    return 2.0 * n**3 / t.median / 1e9
