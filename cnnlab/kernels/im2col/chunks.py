"""Batches in chunks, on every core: how the im2col kernels keep their columns in cache.

The columns of a whole batch are large (ResNet-18's first stage at batch 128: 302 MB in
float32). Built, multiplied and scattered back in one piece they stream through main memory
several times, and the copies run on one core while torch's kernels use all of them. So the
conv kernels cut the batch into chunks of a few samples whose columns fit in cache, and hand
the chunks out to one worker thread per core. Each worker owns its buffers (reused from chunk
to chunk) and runs BLAS single-threaded; numpy releases the GIL in copies and matrix products,
so the workers really run at once. Chunked, the copies that build columns run from cache and
on every core, which one batch-wide product cannot do.

Chunks go to workers round-robin, fixed in advance, and each worker adds up its own share of
a weight gradient: the same inputs and thread count give bit-identical results on every call.

A :class:`Workers` holds all of this for one kernel set: the thread count, the threads (started
on first use) and one :class:`Arena` of scratch buffers per worker, which every call reuses: a
network's layers run one after another, so one arena per worker serves them all. Fresh buffers
each call cost page faults, which two threads take in turn, so that small layers ran slower on
two threads than on one. Two kernel sets share nothing; each runs one pass at a time.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
from threadpoolctl import ThreadpoolController

from cnnlab import runtime

Worker = TypeVar("Worker", bound=Callable[[slice], None])

# Columns per chunk: a few MB, which stay in this machine's caches from the copy that builds
# them to the products that read them (much smaller and the products are too thin; much larger
# and the copies fall out of cache again; `cnnlab bench suite` is the measure)...
CHUNK_BYTES = 4 << 20
# ... but never fewer columns than this: BLAS needs a few hundred to run at full speed (ResNet's
# 4x4 layers have 16 columns per sample).
MIN_COLUMNS = 512
# Below this many bytes of columns for the whole batch, threads cost more than they save.
PARALLEL_MIN_BYTES = 1 << 20

_ALIGN = 64  # bytes: a cache line, so no two buffers share one


class Arena:
    """Scratch memory of one worker, handed out in buffers and taken back by :meth:`reset`.

    A request that does not fit gets a buffer of its own, and the next reset grows the arena to
    the largest total asked for, so from then on every call fits.
    """

    def __init__(self) -> None:
        self.memory = np.empty(0, np.uint8)
        self.used = 0
        self.wanted = 0

    def reset(self) -> None:
        """Take every buffer back (their contents are lost) and grow to fit the last call."""
        if self.wanted > self.memory.size:
            self.memory = np.empty(self.wanted, np.uint8)
        self.used = self.wanted = 0

    def take(self, shape: tuple[int, ...], dtype: np.dtype, zero: bool = False) -> np.ndarray:
        """A C-contiguous buffer; its contents are whatever was there unless ``zero``."""
        dtype = np.dtype(dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        start = self.used
        self.used = self.wanted = start + -(-nbytes // _ALIGN) * _ALIGN
        if self.used <= self.memory.size:
            out = self.memory[start : start + nbytes].view(dtype).reshape(shape)
            if zero:
                out[...] = 0
            return out
        return np.zeros(shape, dtype) if zero else np.empty(shape, dtype)


class PartialSum:
    """One worker's running sum of per-chunk results (a weight or bias gradient).

    The sum outlives the arena, so it has memory of its own. The first chunk's result is
    written straight into it, later ones into a scratch buffer from the arena and then added: a
    fresh result per chunk would cost page faults (ResNet's 512-filter dw is 9.4 MB).
    """

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype, arena: Arena) -> None:
        self.total = np.empty(shape, dtype)
        self._scratch = arena.take(shape, dtype)
        self._started = False

    def out(self) -> np.ndarray:
        """Where this chunk's result goes (the ``out=`` of its product or reduction)."""
        return self._scratch if self._started else self.total

    def add(self) -> None:
        """Fold the result just written to :meth:`out` into the total."""
        if self._started:
            self.total += self._scratch
        self._started = True


def summed(parts: list[PartialSum]) -> np.ndarray:
    """The workers' partial sums, added in worker order: the same inputs and thread count give
    bit-identical results."""
    return sum((p.total for p in parts[1:]), parts[0].total)


def chunk_size(n: int, bytes_per_sample: int, columns_per_sample: int, workers: int) -> int:
    """Samples per chunk: about as many as fit in :data:`CHUNK_BYTES` or give
    :data:`MIN_COLUMNS`, evened out so that every worker gets the same number of chunks
    (3 chunks on 2 workers would leave one idle for a third of the time)."""
    size = max(CHUNK_BYTES // max(bytes_per_sample, 1), -(-MIN_COLUMNS // columns_per_sample))
    count = -(-n // max(1, min(size, n)))  # chunks at that size
    count = -(-count // workers) * workers  # a multiple of the workers
    return max(1, -(-n // count))


class Workers:
    """Worker threads with scratch memory of their own, that run a pass over a batch in chunks.

    Args:
        threads: how many; None for the CPUs this process may run on.
    """

    def __init__(self, threads: int | None = None) -> None:
        self.threads = runtime.cpu_count() if threads is None else threads
        if self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}")
        self._arenas: list[Arena] = []
        self._pool: ThreadPoolExecutor | None = None
        self._blas: ThreadpoolController | None = None
        # One pass at a time owns the arenas: a second thread calling in waits its turn.
        self._lock = threading.Lock()

    def run_chunks(
        self,
        n: int,
        bytes_per_sample: int,
        columns_per_sample: int,
        make_worker: Callable[[int, Arena], Worker],
        split: bool = True,
    ) -> list[Worker]:
        """Run ``worker(chunk)`` over slices of ``range(n)`` covering it, on every thread.

        Args:
            n: samples in the batch.
            bytes_per_sample: the size of one sample's columns, to size the chunks...
            columns_per_sample: ... and their number.
            make_worker: called once per worker thread with the chunk size and the worker's
                arena (for scratch buffers, valid until this method returns); returns a
                callable taking a slice of the batch (holding its buffers and partial sums).
            split: False runs one worker, on this thread, and leaves BLAS its own threads: for
                passes made of a few products too large to repeat per worker.

        Returns:
            The workers, in a fixed order, for the caller to combine their partial results
            (which must not live in the arena).
        """
        with self._lock:
            threads = self.threads if split else 1
            if threads > 1 and n * bytes_per_sample < PARALLEL_MIN_BYTES:
                threads = 1
            size = chunk_size(n, bytes_per_sample, columns_per_sample, threads)
            chunks = [slice(a, min(a + size, n)) for a in range(0, n, size)]
            count = min(threads, len(chunks))
            self._arenas.extend(Arena() for _ in range(count - len(self._arenas)))
            for arena in self._arenas[:count]:
                arena.reset()
            shares = [make_worker(size, arena) for arena in self._arenas[:count]]
            if count == 1:
                for chunk in chunks:
                    shares[0](chunk)
                return shares

            def work(k: int) -> None:
                for chunk in chunks[k::count]:
                    shares[k](chunk)

            if self._pool is None:  # started once, not per call
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="cnnlab-im2col")
            if self._blas is None:  # inspecting the loaded libraries is slow: once
                self._blas = ThreadpoolController()
            # Each worker's products stay on its own core.
            with self._blas.limit(limits=1, user_api="blas"):
                futures = [self._pool.submit(work, k) for k in range(count)]
                for future in futures:
                    future.result()  # re-raises a worker's exception here
            return shares
