"""Element-wise kernels run in spans of the array on a kernel set's worker threads.

An activation is a few passes over its array (GELU: an erf, a product, a sum...). numpy runs each
pass on one core and over the whole array, so every pass streams the array through memory again,
while torch runs its fused loop on every core. :func:`split_pair` runs the same plain kernels
over spans of the flattened array instead, one span per worker at a time
(:meth:`~cnnlab.kernels.im2col.chunks.Workers.run_chunks`): each span's passes run while it is
in cache, and on every core. The numbers are those of the plain kernels: each element is
computed by the same formula, in the same dtype.

A kernel set without workers (``naive``) runs the plain kernels on the whole array.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from cnnlab.kernels.im2col.chunks import Arena, Workers

# Bytes of scratch an element's passes are taken to need: spans of CHUNK_BYTES / (itemsize *
# this) elements (a quarter of a megabyte of float32), whose temporaries stay in cache, and
# threads only from a few tens of thousands of elements.
SCRATCH_PER_ITEM = 16


@dataclass
class _Spans:
    """A split forward's cache: each span's own cache by the span's start."""

    caches: dict[int, Any] = field(default_factory=dict)


def split_pair(forward: Callable, backward: Callable) -> tuple[Callable, Callable]:
    """Kernel-set methods running the plain element-wise pair over spans on ``self.workers``.

    forward: ``(x, *options) -> (out, cache)`` with out of x's shape; backward:
    ``(dout, cache) -> dx``. Where ``self.workers`` is None, the plain pair runs as it is.
    """

    def split_forward(self: Any, x: np.ndarray, *args: Any, **kwargs: Any) -> tuple:
        if self.workers is None or x.size == 0:
            return forward(x, *args, **kwargs)
        flat = np.ascontiguousarray(x).reshape(-1)
        out = np.empty_like(flat)
        spans = _Spans()

        def step(span: slice) -> None:
            out[span], spans.caches[span.start] = forward(flat[span], *args, **kwargs)

        _run(self.workers, flat, step)
        return out.reshape(x.shape), spans

    def split_backward(self: Any, dout: np.ndarray, cache: Any) -> np.ndarray:
        if not isinstance(cache, _Spans):
            return backward(dout, cache)
        flat = np.ascontiguousarray(dout).reshape(-1)
        dx = np.empty_like(flat)

        def step(span: slice) -> None:
            dx[span] = backward(flat[span], cache.caches[span.start])

        _run(self.workers, flat, step)
        return dx.reshape(dout.shape)

    for method, plain in ((split_forward, forward), (split_backward, backward)):
        method.__name__, method.__doc__ = plain.__name__, plain.__doc__
        method.__qualname__ = plain.__qualname__
        # The plain kernel's arguments, after self: what the kernel contract names in errors.
        signature = inspect.signature(plain)
        itself = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
        method.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[itself, *signature.parameters.values()]
        )
    return split_forward, split_backward


def _run(workers: Workers, flat: np.ndarray, step: Callable[[slice], None]) -> None:
    """step(span) over spans covering ``flat``; the same spans for the same size and threads,
    so a backward finds each span's cache under the forward's start."""

    def make(size: int, arena: Arena) -> Callable[[slice], None]:
        return step  # no scratch of its own: the plain kernels allocate theirs

    workers.run_chunks(flat.size, flat.itemsize * SCRATCH_PER_ITEM, 1, make)
