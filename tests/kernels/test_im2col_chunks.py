"""The im2col conv's batch chunks and worker threads: same numbers in any split, every call.

The small shapes of the other conv tests run as one chunk on one thread; these force small
chunks and two workers so that the chunked and threaded paths are checked against torch.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import cnnlab.kernels.im2col.conv as im2col_conv
from cnnlab import runtime
from cnnlab.kernels.geometry import pair
from cnnlab.kernels.im2col import chunks, layouts
from cnnlab.kernels.im2col.chunks import Workers
from tests.kernels.test_conv import CASES, assert_close, make_inputs, run_backend, run_torch


class Im2colConv:
    """The im2col conv with its options bound, called as :func:`run_backend` calls a module."""

    def __init__(self, workers: Workers | None, winograd: bool = True) -> None:
        self.workers, self.winograd = workers, winograd

    def conv2d_forward(self, *args):
        return im2col_conv.conv2d_forward(*args, workers=self.workers, winograd=self.winograd)

    def conv2d_backward(self, *args, **kwargs):
        return im2col_conv.conv2d_backward(*args, workers=self.workers, **kwargs)


@pytest.fixture
def split(monkeypatch):
    """Chunks of about one sample and no minimum size for threading; returns ``Workers`` of
    the given thread count."""

    def apply(threads: int, chunk_bytes: int = 1) -> Workers:
        monkeypatch.setattr(chunks, "CHUNK_BYTES", chunk_bytes)
        monkeypatch.setattr(chunks, "MIN_COLUMNS", 1)
        monkeypatch.setattr(chunks, "PARALLEL_MIN_BYTES", 0)
        return Workers(threads)

    return apply


@pytest.mark.parametrize(
    ("shape", "stride", "pad"),
    [
        ((7, 3, 9, 8, 4, 3, 3), 1, 1),
        ((5, 2, 11, 9, 3, 3, 2), 2, (1, 0)),
        ((6, 4, 6, 6, 5, 1, 1), 1, 0),
    ],
)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_chunked_and_threaded_match_torch(split, shape, stride, pad, threads):
    conv = Im2colConv(split(threads))
    x, w, b = make_inputs(shape)
    got = run_backend(conv, x, w, b, stride, pad)
    assert_close(got[:4], run_torch(x, w, b, stride, pad, got[4]), 1e-10, f"{threads} threads")


def test_chunk_sizes_cover_the_batch_and_feed_every_worker():
    big = chunks.CHUNK_BYTES
    assert chunks.chunk_size(128, 1, 1024, 2) == 64  # every worker gets a chunk
    assert chunks.chunk_size(128, big, 1024, 2) == 1
    assert chunks.chunk_size(128, big, 16, 2) == chunks.MIN_COLUMNS // 16  # wide enough for BLAS
    assert chunks.chunk_size(3, 10 * big, 1024, 4) == 1  # never 0
    assert chunks.chunk_size(128, big // 49, 1024, 2) == 32  # 4 even chunks, not 49 + 49 + 30
    seen = []
    Workers(2).run_chunks(10, big // 3, 1024, lambda size, arena: seen.append)
    covered = sorted(i for s in seen for i in range(s.start, s.stop))
    assert covered == list(range(10))


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((9, 3, 10, 10, 6, 3, 3), np.float32), ((9, 16, 10, 10, 16, 3, 3), np.float64)],
    ids=["columns", "winograd"],  # Winograd runs in float64 only
)
def test_threaded_results_are_repeatable_bit_for_bit(split, shape, dtype):
    conv = Im2colConv(split(2, chunk_bytes=2000))
    x, w, b = make_inputs(shape, dtype=dtype)
    first = run_backend(conv, x, w, b, 1, 1)
    # The same workers again (their arenas reused), then others with as many threads.
    for again_on in [conv, conv, conv, Im2colConv(split(2, chunk_bytes=2000))]:
        again = run_backend(again_on, x, w, b, 1, 1)
        for a, c in zip(first, again, strict=True):
            np.testing.assert_array_equal(a, c)


def test_a_worker_error_reaches_the_caller(split):
    workers = split(2)

    def make_worker(size, arena):
        def worker(chunk):
            if chunk.start == 3:
                raise ValueError("chunk 3 failed")

        return worker

    with pytest.raises(ValueError, match="chunk 3 failed"):
        workers.run_chunks(6, 1, 1024, make_worker)


@pytest.mark.parametrize("layout", [layouts.WindowColumns, layouts.RowColumns])
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("threads", [1, 2])
def test_each_column_layout_matches_torch(monkeypatch, split, layout, case, threads):
    shape, stride, pad, bias = case
    if layout is layouts.RowColumns and pair(stride) != (1, 1):
        pytest.skip("row columns are for stride 1")
    conv = Im2colConv(split(threads))
    monkeypatch.setattr(im2col_conv, "choose_layout", lambda x, filters, *rest: layout(x, *rest))
    x, w, b = make_inputs(shape, bias, seed=3)
    got = run_backend(conv, x, w, b, stride, pad)
    assert_close(got[:4], run_torch(x, w, b, stride, pad, got[4]), 1e-10, layout.__name__)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("folded", [True, False])
def test_row_columns_dx_folded_or_scattered_matches_torch(monkeypatch, split, case, folded):
    shape, stride, pad, bias = case
    if pair(stride) != (1, 1):
        pytest.skip("row columns are for stride 1")
    conv = Im2colConv(split(2))
    monkeypatch.setattr(
        im2col_conv, "choose_layout", lambda x, f, *rest: layouts.RowColumns(x, *rest)
    )
    monkeypatch.setattr(im2col_conv, "_dx_by_convolution", lambda shape: False)
    monkeypatch.setattr(im2col_conv, "_folds", lambda shape: folded)
    x, w, b = make_inputs(shape, bias, seed=9)
    got = run_backend(conv, x, w, b, stride, pad)
    assert_close(got[:4], run_torch(x, w, b, stride, pad, got[4]), 1e-10, f"folded={folded}")


def test_dx_is_folded_where_it_writes_less():
    def folds(x_shape, w_shape, pad):
        (H, W), (HH, WW) = x_shape[2:], w_shape[2:]
        out_hw = (H + 2 * pad - HH + 1, W + 2 * pad - WW + 1)
        layout = layouts.RowColumns(x_shape, (HH, WW), (1, 1), (pad, pad), out_hw)
        conv_shape = im2col_conv.ConvShape(x_shape, w_shape, (1, 1), (pad, pad), out_hw, layout)
        return im2col_conv._folds(conv_shape)

    assert folds((128, 6, 14, 14), (16, 6, 5, 5), 0)  # LeNet C3: 16*5 + 5*6 < 6*25
    assert not folds((128, 1, 28, 28), (6, 1, 5, 5), 2)  # LeNet C1: 6*5 + 5*1 > 1*25
    assert not folds((128, 3, 32, 32), (32, 3, 7, 7), 3)  # CIFAR: 32*7 + 7*3 > 3*49


def test_layout_rule_picks_rows_only_for_narrow_stride1_outputs():
    def pick(x_shape, filters, kernel, stride, pad):
        Ho = 1 + (x_shape[2] + 2 * pad - kernel) // stride
        Wo = 1 + (x_shape[3] + 2 * pad - kernel) // stride
        pairs = (kernel, kernel), (stride, stride), (pad, pad)
        return type(layouts.choose_layout(x_shape, filters, *pairs, (Ho, Wo)))

    rows, windows = layouts.RowColumns, layouts.WindowColumns
    assert pick((128, 6, 14, 14), 16, 5, 1, 0) is rows  # LeNet C3: Wo 10, Wp 14, few filters
    assert pick((128, 64, 32, 32), 64, 3, 1, 1) is rows  # Wp / Wo = 34 / 32
    assert pick((128, 512, 4, 4), 512, 3, 1, 1) is windows  # Wp / Wo = 6 / 4, many filters
    assert pick((128, 64, 32, 32), 128, 3, 2, 1) is windows  # stride 2


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("threads", [1, 2])
def test_dx_as_a_convolution_of_dout_matches_torch(monkeypatch, split, case, threads):
    shape, stride, pad, bias = case
    (ph, pw), HH, WW = pair(pad), shape[5], shape[6]
    if pair(stride) != (1, 1) or ph > HH - 1 or pw > WW - 1:
        pytest.skip("dx as a convolution needs stride 1 and padding within the kernel")
    conv = Im2colConv(split(threads))
    monkeypatch.setattr(im2col_conv, "_dx_by_convolution", lambda shape: True)
    x, w, b = make_inputs(shape, bias, seed=4)
    got = run_backend(conv, x, w, b, stride, pad)
    assert_close(got[:4], run_torch(x, w, b, stride, pad, got[4]), 1e-10, "dx by convolution")


def test_dx_as_a_convolution_is_chosen_for_resnet_not_lenet():
    def chosen(x_shape, w_shape, pad):
        out_hw = (x_shape[2] + 2 * pad - w_shape[2] + 1, x_shape[3] + 2 * pad - w_shape[3] + 1)
        layout = layouts.WindowColumns(x_shape, w_shape[2:], (1, 1), (pad, pad), out_hw)
        conv_shape = im2col_conv.ConvShape(x_shape, w_shape, (1, 1), (pad, pad), out_hw, layout)
        return im2col_conv._dx_by_convolution(conv_shape)

    assert chosen((128, 256, 8, 8), (256, 256, 3, 3), 1)
    assert not chosen((128, 6, 14, 14), (16, 6, 5, 5), 0)  # 16x14x14 to gather vs 6x10x10


def test_arena_reuses_its_memory_and_grows_to_the_largest_call():
    arena = chunks.Arena()
    a = arena.take((10, 3), np.float32)  # does not fit yet: memory of its own
    assert a.shape == (10, 3) and a.dtype == np.float32 and a.flags.c_contiguous
    arena.take((4,), np.float64)
    arena.reset()  # grows to what the call wanted
    b = arena.take((10, 3), np.float32, zero=True)
    c = arena.take((4,), np.float64, zero=True)
    assert np.shares_memory(b, arena.memory) and np.shares_memory(c, arena.memory)
    assert not np.shares_memory(b, c)
    assert not b.any() and not c.any()
    b[...] = 7
    arena.reset()
    again = arena.take((10, 3), np.float32)
    assert np.shares_memory(again, b)  # the same memory, handed out again


def test_convs_of_different_shapes_in_turn_share_the_arenas_correctly(split):
    conv = Im2colConv(split(2, chunk_bytes=4000))
    problems = [((6, 3, 9, 9, 4, 3, 3), 1, 1), ((5, 4, 12, 10, 6, 5, 3), 2, 2)]
    for shape, stride, pad in [*problems, *problems]:
        x, w, b = make_inputs(shape, seed=5)
        got = run_backend(conv, x, w, b, stride, pad)
        assert_close(got[:4], run_torch(x, w, b, stride, pad, got[4]), 1e-10, str(shape))


def test_two_workers_share_no_arenas_and_no_threads(split):
    def trace(workers: Workers) -> tuple[list[chunks.Arena], set[int]]:
        """The arenas handed to a pass's workers, and the threads its chunks ran on."""
        arenas, threads = [], set()

        def make_worker(size, arena):
            arenas.append(arena)
            return lambda chunk: threads.add(threading.get_ident())

        workers.run_chunks(8, 1, 1024, make_worker)
        return arenas, threads

    first, second = split(2), split(2)
    first_arenas, first_threads = trace(first)
    second_arenas, second_threads = trace(second)
    assert len(first_arenas) == len(second_arenas) == 2
    assert not any(a is b for a in first_arenas for b in second_arenas)
    assert first_threads and second_threads and not first_threads & second_threads
    assert threading.get_ident() not in first_threads | second_threads
    again, _ = trace(first)
    assert all(a is b for a, b in zip(again, first_arenas, strict=True))  # its own, reused


def test_convs_on_two_workers_at_once_both_match_torch(split):
    """Two kernel sets called from two threads at the same time, each on its own workers."""
    problems = [((6, 3, 9, 9, 4, 3, 3), 1, 1), ((5, 16, 8, 8, 16, 3, 3), 1, 1)]  # columns, Winograd
    convs = [Im2colConv(split(2, chunk_bytes=4000)) for _ in problems]

    def run(conv, shape, stride, pad):
        x, w, b = make_inputs(shape, seed=5)
        runs = [run_backend(conv, x, w, b, stride, pad) for _ in range(3)]
        return runs, run_torch(x, w, b, stride, pad, runs[0][4])

    with ThreadPoolExecutor(2) as callers:
        futures = [callers.submit(run, c, *p) for c, p in zip(convs, problems, strict=True)]
        for (shape, _, _), future in zip(problems, futures, strict=True):
            runs, want = future.result()
            for got in runs:
                assert_close(got[:4], want, 1e-10, str(shape))


def test_workers_default_to_the_cpus_this_process_may_use():
    assert Workers().threads == runtime.cpu_count()
    assert Workers(3).threads == 3
    with pytest.raises(ValueError, match="at least 1"):
        Workers(0)


def test_without_workers_a_call_runs_on_the_calling_thread(split, monkeypatch):
    split(2)  # small chunks, threads for any size: yet no workers given, so one thread
    made = []
    real = chunks.Workers.run_chunks

    def run_chunks(self, *args, **kwargs):
        made.append(self.threads)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(chunks.Workers, "run_chunks", run_chunks)
    x, w, b = make_inputs((5, 16, 8, 8, 16, 3, 3), seed=2)
    got = run_backend(im2col_conv, x, w, b, 1, 1)
    assert made and set(made) == {1}
    assert_close(got[:4], run_torch(x, w, b, 1, 1, got[4]), 1e-10)
