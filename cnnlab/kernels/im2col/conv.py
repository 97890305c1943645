"""Vectorised conv2d: im2col turns the convolution into matrix products, chunk by chunk.

For a chunk of n samples with ``cols = im2col(x_pad[chunk])`` of shape (C*HH*WW, n*Ho*Wo)
and ``w2 = w.reshape(F, C*HH*WW)``:

- forward: ``out2 = w2 @ cols + b``, (F, n*Ho*Wo), written to ``out[chunk]`` as (n, F, Ho, Wo);
- backward: ``dw += dout2 @ cols.T``, ``db += dout2.sum(1)``, ``dcols = w2.T @ dout2``
  and ``dx[chunk] = col2im(dcols)``, with ``dout2`` the chunk's upstream gradient as
  (F, n*Ho*Wo).

With ``groups`` = G the columns' rows come group after group (their (c, kh, kw) order puts
group g's channels in one block of C/G*HH*WW rows), so each product above becomes G products,
group g's filters with its own block of rows: one stacked ``np.matmul``, a plain product when
G = 1. Dilation only changes which pixels a window's taps read (:func:`~cnnlab.kernels.im2col.
columns.windows`). Depthwise convs (G = C) take the same path: their products are thin, but
so is all of their work.

For stride 1 where scattering dcols back costs more than gathering dout's columns, dx is
instead the forward convolution of dout, padded by ``HH - 1 - ph``, with the filters flipped
and their in and out channels swapped (:func:`_dx_by_convolution`): same products, and a
gather in place of a scatter, at memory speed instead of one read-add-write per kernel offset.

The chunks are small enough for their columns to stay in cache and run on every core
(:mod:`cnnlab.kernels.im2col.chunks`). The backward builds the columns again rather than
keeping the forward's: rebuilding a chunk from cache costs less than writing the whole
batch's columns to memory and reading them back, and a network's memory then holds its
activations, not C*HH*WW copies of them.

With row columns and few filters (LeNet's C3), dx folds the kernel's columns into the product
instead (:meth:`~cnnlab.kernels.im2col.layouts.RowColumns.folded_dx`): HH adds in place of
HH*WW.

In float64, 3x3 stride-1 convolutions with 16 channels or more (ResNet's) skip the columns:
their forward and dw use Winograd's algorithm (:mod:`cnnlab.kernels.im2col.winograd`), matrix
products on transformed tiles that need 2.25-4x fewer multiply-adds, and their dx is the
convolution of dout above, so Winograd too. In float32 Winograd's rounding is several times
torch's, so float32 convs always take the columns. The kernel set's ``winograd`` option
(``trainer.winograd``) switches Winograd off.

Fused with the ReLU after it (:func:`conv2d_relu_forward`, the ``conv_relu`` kind), the ReLU is
applied to each chunk's product while it is in cache, and its mask to each chunk of dout as it
is copied into the product's layout: no passes of their own over the activations.

No Python loop runs over samples or output pixels inside a chunk (col2im loops over the HH*WW
kernel offsets only). Same numbers as :mod:`cnnlab.kernels.naive.conv`, within float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnnlab.kernels.geometry import IntPair, conv_geometry, pair
from cnnlab.kernels.im2col.chunks import Arena, PartialSum, Workers, summed
from cnnlab.kernels.im2col.layouts import ColumnLayout, RowColumns, choose_layout
from cnnlab.kernels.im2col.winograd import Tiling, winograd_tiling
from cnnlab.kernels.im2col.winograd import conv2d_forward as winograd_forward
from cnnlab.kernels.im2col.winograd import conv2d_weight_grads as winograd_weight_grads


@dataclass(frozen=True)
class ConvShape:
    """The sizes of one convolution and how it is computed: x (N, C, H, W), w (F, C/groups,
    HH, WW), out (N, F, Ho, Wo); the column layout, and the Winograd tiling where one applies
    (then the forward and dw go through :mod:`cnnlab.kernels.im2col.winograd` instead of
    columns)."""

    x: tuple[int, int, int, int]
    w: tuple[int, int, int, int]
    stride: tuple[int, int]
    pad: tuple[int, int]
    out_hw: tuple[int, int]
    layout: ColumnLayout
    tiling: Tiling | None = None
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    @property
    def rows(self) -> int:
        """C*HH*WW: one column's length (every group's rows, group after group)."""
        _, _, HH, WW = self.w
        return self.x[1] * HH * WW

    @property
    def pixels(self) -> int:
        """Columns per sample: Ho times the layout's row width."""
        return self.out_hw[0] * self.layout.width

    def column_bytes(self, itemsize: int) -> int:
        """Bytes of one sample's columns (what a chunk must fit in cache)."""
        return self.rows * self.pixels * itemsize


# Output pixels per sample below which a float32 1x1 weight gradient is accumulated in float64
# (see _BackwardWorker): tests/kernels/test_float32_accuracy.py holds it to torch's error.
EXACT_DW_BELOW = 64
# Filters below which the weight gradient is accumulated transposed (see _BackwardWorker).
TRANSPOSED_DW_BELOW = 128

ConvCache = tuple[np.ndarray, np.ndarray, bool, ConvShape]
# A fused conv + ReLU keeps the conv's cache and its (ReLU'd) output, whose sign is the mask.
ConvReLUCache = tuple[ConvCache, np.ndarray]


def _by_group(m: np.ndarray, groups: int) -> np.ndarray:
    """m: (G*r, k) as (G, r, k), a view: group g's rows of the columns, filters or outputs."""
    return m.reshape(groups, m.shape[0] // groups, m.shape[1])


def _by_group_t(m: np.ndarray, groups: int) -> np.ndarray:
    """m: (k, G*r) as (G, k, r), a view: the transpose's group blocks."""
    return m.reshape(m.shape[0], groups, m.shape[1] // groups).transpose(1, 0, 2)


def _grouped_matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """out[g] = a[g] @ b[g] for stacks of (G, ., .) views; one plain product for one group."""
    if a.shape[0] == 1:
        np.matmul(a[0], b[0], out=out[0])
    else:
        np.matmul(a, b, out=out)


class _Worker:
    """One thread's share of a pass: scratch buffers for chunks of up to ``size`` samples,
    reused chunk after chunk."""

    def __init__(
        self, x: np.ndarray, w2: np.ndarray, shape: ConvShape, size: int, arena: Arena
    ) -> None:
        self.x, self.w2, self.shape = x, w2, shape
        # The padding must read as zeros; only the interior is ever written.
        self.planes = arena.take((size, shape.x[1], shape.layout.plane), x.dtype, zero=True)
        self.cols = arena.take((shape.rows, size * shape.pixels), x.dtype)

    def columns(self, chunk: slice) -> tuple[int, np.ndarray]:
        """The chunk's sample count and columns: (C*HH*WW, n*Ho*width)."""
        n = chunk.stop - chunk.start
        cols = self.cols[:, : n * self.shape.pixels]
        self.shape.layout.gather(self.x[chunk], self.planes, cols)
        return n, cols


class _ForwardWorker(_Worker):
    """out[chunk] = w2 @ cols + b, as (n, F, Ho, Wo); its ReLU where ``relu``."""

    def __init__(
        self,
        x: np.ndarray,
        w2: np.ndarray,
        b: np.ndarray | None,
        out: np.ndarray,
        shape: ConvShape,
        size: int,
        arena: Arena,
        relu: bool = False,
    ) -> None:
        super().__init__(x, w2, shape, size, arena)
        self.b, self.out, self.relu = b, out, relu
        self.out2 = arena.take((shape.w[0], size * shape.pixels), x.dtype)

    def __call__(self, chunk: slice) -> None:
        n, cols = self.columns(chunk)
        F, (Ho, Wo) = self.shape.w[0], self.shape.out_hw
        out2 = self.out2[:, : cols.shape[1]]
        G = self.shape.groups
        # (F, n*Ho*width): each group's filters times its own rows of the columns.
        _grouped_matmul(_by_group(self.w2, G), _by_group(cols, G), _by_group(out2, G))
        if self.b is not None:
            out2 += self.b.reshape(F, 1)
        if self.relu:
            np.maximum(out2, 0, out=out2)
        self.out[chunk] = out2.reshape(F, n, Ho, -1)[..., :Wo].transpose(1, 0, 2, 3)


class _BackwardWorker(_Worker):
    """This worker's partial sums of dw and db, and dx[chunk] unless dx is None; dout through
    a fused ReLU first where ``relu_out`` (that ReLU's output) is given."""

    def __init__(
        self,
        x: np.ndarray,
        w2: np.ndarray,
        dout: np.ndarray,
        dx: np.ndarray | None,
        shape: ConvShape,
        size: int,
        arena: Arena,
        relu_out: np.ndarray | None = None,
    ) -> None:
        super().__init__(x, w2, shape, size, arena)
        self.dout, self.dx, self.relu_out = dout, dx, relu_out
        F, C = shape.w[0], shape.x[1]
        if relu_out is not None:
            chunk_out = (size, *dout.shape[1:])
            self.keep = arena.take(chunk_out, np.dtype(bool))
            self.masked = arena.take(chunk_out, x.dtype)
        # Zeros, and only the output columns are ever written: columns a layout adds beyond
        # the output keep a zero gradient.
        self.dout2 = arena.take((F, size * shape.pixels), x.dtype, zero=True)
        if dx is not None:
            self.dx_planes = arena.take((C, size, shape.layout.plane), x.dtype)
        # dx by RowColumns.folded_dx: its buffers, and w as w_rows[(kh, c), (f, kw)].
        self.folded = dx is not None and shape.groups == 1 and _folds(shape)
        if self.folded:
            HH, WW = shape.w[2:]
            run = shape.out_hw[0] * shape.layout.width + WW - 1
            self.w_rows = w2.reshape(F, C, HH, WW).transpose(2, 1, 0, 3).reshape(HH * C, F * WW)
            self.dout_runs = arena.take((F, WW - 1 + size * run), x.dtype, zero=True)
            self.shifted = arena.take((F * WW, size * run), x.dtype)
            self.partial = arena.take((HH * C, size * run), x.dtype)
        # Few filters: dw transposed, as cols @ dout2.T, which BLAS runs faster than
        # dout2 @ cols.T for a thin dout2. Many: as is, at the same speed and without a
        # transpose of a large dw at the end.
        self.transposed = F < TRANSPOSED_DW_BELOW and shape.groups == 1
        # A float32 1x1 dw summed over many samples of few pixels each (ResNet's last
        # shortcut) rounds worse than torch, which sums each sample's pixels apart: that small
        # product is accumulated in float64 instead, at a cost that stays small.
        self.exact_dw = (
            x.dtype == np.float32 and shape.pixels < EXACT_DW_BELOW and shape.w[2:] == (1, 1)
        )
        dw_shape = (shape.rows, F) if self.transposed else (F, shape.rows // shape.groups)
        self.dw = PartialSum(dw_shape, x.dtype, arena)
        self.db = PartialSum((F,), x.dtype, arena)

    def _dout(self, chunk: slice, n: int) -> np.ndarray:
        """The chunk's dout: (n, F, Ho, Wo), through the fused ReLU where there is one (dout
        where its output is positive or NaN, as :func:`~cnnlab.kernels.common.activation.
        relu_backward`)."""
        if self.relu_out is None:
            return self.dout[chunk]
        keep = self.keep[:n]
        np.less_equal(self.relu_out[chunk], 0, out=keep)
        np.logical_not(keep, out=keep)
        return np.multiply(self.dout[chunk], keep, out=self.masked[:n])

    def __call__(self, chunk: slice) -> None:
        n, cols = self.columns(chunk)
        layout, F, (Ho, Wo) = self.shape.layout, self.shape.w[0], self.shape.out_hw
        dout = self._dout(chunk, n)
        dout2 = self.dout2[:, : cols.shape[1]]
        dout2.reshape(F, n, Ho, -1)[..., :Wo] = dout.transpose(1, 0, 2, 3)
        G = self.shape.groups
        if self.transposed:  # one group
            a, b = cols[None], dout2.T[None]
        else:
            a, b = _by_group(dout2, G), _by_group_t(cols.T, G)
        dw = _by_group(self.dw.out(), G)
        if self.exact_dw:
            dw[...] = np.matmul(a.astype(np.float64), b.astype(np.float64))
        else:
            _grouped_matmul(a, b, dw)
        self.dw.add()
        dout2.sum(axis=1, out=self.db.out())
        self.db.add()
        if self.dx is None:
            return
        dx_planes = self.dx_planes[:, :n]
        if self.folded:
            buffers = (self.dout_runs, self.shifted, self.partial)
            layout.folded_dx(dout, self.w_rows, *buffers, dx_planes)
        else:
            # The columns are spent: their buffer takes dcols = w2.T @ dout2, group by group.
            _grouped_matmul(_by_group_t(self.w2.T, G), _by_group(dout2, G), _by_group(cols, G))
            dx_planes[...] = 0
            layout.scatter(cols, dx_planes)
        self.dx[chunk] = layout.crop(dx_planes)  # the padding's share is dropped


def conv2d_forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None,
    stride: IntPair = 1,
    pad: IntPair = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    *,
    workers: Workers | None = None,
    winograd: bool = True,
    relu: bool = False,
) -> tuple[np.ndarray, ConvCache]:
    """Forward pass of a 2-D convolution (cross-correlation) as matrix products.

    Args:
        x: input, (N, C, H, W).
        w: filters, (F, C/groups, HH, WW).
        b: bias, (F,), or None for no bias.
        stride: step between windows, an int or a (sh, sw) pair.
        pad: zeros added on each side of H and W, an int or a (ph, pw) pair.
        dilation: spacing of the kernel's taps, an int or a pair.
        groups: channel groups; each group's filters multiply only its rows of the columns.
        workers: the threads and scratch memory to run on; None runs on this thread, with
            scratch memory for this call only.
        winograd: whether Winograd's algorithm may replace the columns where it fits.
        relu: apply ReLU to the output (see :func:`conv2d_relu_forward`).

    Returns:
        out: (N, F, Ho, Wo) with ``Ho = 1 + (H + 2*ph - dil_h*(HH - 1) - 1) // sh``, likewise
        Wo; C-contiguous, same dtype as x.
        cache: ``(x, w, has_bias, shape)`` for :func:`conv2d_backward`.

    Raises:
        ShapeError: when the shapes do not fit (channel mismatch, ``Ho < 1``, ...).
    """
    b_shape = None if b is None else b.shape
    out_hw = conv_geometry(x.shape, w.shape, b_shape, stride, pad, dilation, groups)
    stride, pad, dilation = pair(stride, "stride"), pair(pad, "pad"), pair(dilation, "dilation")
    groups = int(groups)
    F = w.shape[0]
    layout = choose_layout(x.shape, F // groups, w.shape[2:], stride, pad, out_hw, dilation)
    plain = groups == 1 and dilation == (1, 1)
    tiling = (
        winograd_tiling(x.shape, w.shape, stride, pad, out_hw, x.dtype)
        if winograd and plain
        else None
    )
    shape = ConvShape(x.shape, w.shape, stride, pad, out_hw, layout, tiling, dilation, groups)
    N = x.shape[0]
    # Products in x's dtype: a float64 w or b must not promote (and slow down) a float32 net.
    b = None if b is None else b.astype(x.dtype, copy=False)
    if N == 0:  # an empty batch (a data-parallel rank's share may be one): nothing to compute
        return np.empty((0, F, *out_hw), x.dtype), (x, w, b is not None, shape)
    workers = Workers(1) if workers is None else workers
    if tiling is not None:
        out = winograd_forward(x, w, b, tiling, workers=workers)
        if relu:
            np.maximum(out, 0, out=out)
        return out, (x, w, b is not None, shape)
    w2 = w.reshape(F, -1).astype(x.dtype, copy=False)  # (F, C/groups*HH*WW)
    out = np.empty((N, F, *out_hw), x.dtype)
    workers.run_chunks(
        N,
        shape.column_bytes(x.itemsize),
        shape.pixels,
        lambda size, arena: _ForwardWorker(x, w2, b, out, shape, size, arena, relu),
    )
    return out, (x, w, b is not None, shape)


def conv2d_backward(
    dout: np.ndarray, cache: ConvCache, need_dx: bool = True, *, workers: Workers | None = None
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Backward pass of :func:`conv2d_forward`: one matrix product each for dw and dx.

    Args:
        dout: upstream gradient, (N, F, Ho, Wo).
        cache: from :func:`conv2d_forward`.
        need_dx: False skips dx (a net's first layer: nothing uses the input's gradient).
        workers: as for :func:`conv2d_forward`. Whether Winograd runs was chosen there (the
            cache records it).

    Returns:
        dx: (N, C, H, W), or None when not needed; dw: (F, C/groups, HH, WW); db: (F,), or
        None when b was None.
    """
    return _backward(dout, cache, need_dx, workers)


def conv2d_relu_forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None,
    stride: IntPair = 1,
    pad: IntPair = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    *,
    workers: Workers | None = None,
    winograd: bool = True,
) -> tuple[np.ndarray, ConvReLUCache]:
    """``max(conv2d_forward(x, w, b, ...), 0)``, the ReLU applied to each chunk in cache.

    Arguments and out as :func:`conv2d_forward`; the cache is the conv's and out.
    """
    out, cache = conv2d_forward(
        x, w, b, stride, pad, dilation, groups, workers=workers, winograd=winograd, relu=True
    )
    return out, (cache, out)


def conv2d_relu_backward(
    dout: np.ndarray, cache: ConvReLUCache, need_dx: bool = True, *, workers: Workers | None = None
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Backward pass of :func:`conv2d_relu_forward`: :func:`conv2d_backward` of dout through
    the ReLU, masked chunk by chunk as the columns' products read it."""
    conv_cache, out = cache
    return _backward(dout, conv_cache, need_dx, workers, out)


def _backward(
    dout: np.ndarray,
    cache: ConvCache,
    need_dx: bool,
    workers: Workers | None,
    relu_out: np.ndarray | None = None,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """:func:`conv2d_backward`, through a fused ReLU whose output is ``relu_out`` if given."""
    x, w, has_bias, shape = cache
    if x.shape[0] == 0:  # an empty batch: zero gradients, as torch gives
        db = np.zeros(w.shape[0], x.dtype) if has_bias else None
        return (np.zeros_like(x) if need_dx else None), np.zeros(w.shape, x.dtype), db
    workers = Workers(1) if workers is None else workers
    by_convolution = need_dx and _dx_by_convolution(shape)
    if relu_out is not None and (shape.tiling is not None or by_convolution):
        # These paths read dout whole, not chunk by chunk: mask it once, as the ReLU would.
        dout = dout * ~(relu_out <= 0)
        relu_out = None
    if shape.tiling is not None:
        dw, db = winograd_weight_grads(x, dout, shape.tiling, workers=workers)
        # 3x3 stride 1 again: Winograd too.
        dx = _dx_as_convolution(dout, w, shape, workers) if need_dx else None
        return dx, dw.astype(w.dtype, copy=False), db if has_bias else None
    w2 = w.reshape(w.shape[0], -1).astype(x.dtype, copy=False)
    dx = np.empty(x.shape, x.dtype) if need_dx and not by_convolution else None
    shares = workers.run_chunks(
        x.shape[0],
        shape.column_bytes(x.itemsize),
        shape.pixels,
        lambda size, arena: _BackwardWorker(x, w2, dout, dx, shape, size, arena, relu_out),
    )
    if by_convolution:
        dx = _dx_as_convolution(dout, w, shape, workers)
    dw = summed([share.dw for share in shares])
    dw = dw.T if shares[0].transposed else dw
    db = summed([share.db for share in shares]) if has_bias else None
    return dx, dw.reshape(w.shape).astype(w.dtype, copy=False), db


def _dx_as_convolution(
    dout: np.ndarray, w: np.ndarray, shape: ConvShape, workers: Workers
) -> np.ndarray:
    """dx: (N, C, H, W) as the stride-1 convolution of dout: (N, F, Ho, Wo), padded by
    ``HH - 1 - ph``, with w's filters flipped and their channels swapped; Winograd where the
    forward took it."""
    (F, C, HH, WW), (ph, pw) = shape.w, shape.pad
    pad = (HH - 1 - ph, WW - 1 - pw)
    tiling = winograd_tiling(dout.shape, (C, F, HH, WW), (1, 1), pad, shape.x[2:], dout.dtype)
    if shape.tiling is not None and tiling is not None:
        return winograd_forward(dout, w, None, tiling, adjoint=True, workers=workers)
    # (C, F, HH, WW), in one copy: a strided view would be copied again by the reshape.
    flipped = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3), dtype=dout.dtype)
    same = shape.tiling is not None  # as the forward chose
    dx, _ = conv2d_forward(dout, flipped, None, 1, pad, workers=workers, winograd=same)
    return dx


def _folds(shape: ConvShape) -> bool:
    """Whether dx comes from :meth:`RowColumns.folded_dx` rather than dcols and a scatter: row
    columns, and less to write, F*WW + HH*C < C*HH*WW (LeNet C3: 110 < 150; not C1 or the CIFAR
    net's 7x7 layer, where it would write more and gains nothing)."""
    F, C, HH, WW = shape.w
    return isinstance(shape.layout, RowColumns) and F * WW + HH * C < C * HH * WW


def _dx_by_convolution(shape: ConvShape) -> bool:
    """Whether dx is cheaper as a convolution of dout than as a scatter of dcols: one group,
    stride 1 undilated, padding within the kernel, and dout's columns (F*H*W per sample) no
    more than dcols' (C*Ho*Wo): ResNet's 3x3 'same' convolutions, not LeNet's or the CIFAR
    net's first layers."""
    (F, C, HH, WW), (_, _, H, W) = shape.w, shape.x
    (ph, pw), (Ho, Wo) = shape.pad, shape.out_hw
    gathered, scattered = F * H * W, C * Ho * Wo
    plain = shape.groups == 1 and shape.dilation == (1, 1)
    fits = plain and shape.stride == (1, 1) and ph <= HH - 1 and pw <= WW - 1
    return fits and gathered <= scattered
