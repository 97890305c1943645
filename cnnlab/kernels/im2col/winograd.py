"""Winograd's minimal filtering for 3x3 stride-1 float64 convolutions: fewer multiplications.

F(m x m, 3 x 3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2015)
computes an m x m tile of output from an a x a tile of input, a = m + 2, as

    y = AT @ [(G @ g @ G.T) * (BT @ d @ BT.T)] @ AT.T

with g one (f, c) 3x3 filter, d the input tile and ``*`` elementwise. Summed over channels, the
elementwise product becomes a² matrix products, one per tile position k = (i, j):

    M[k] = V[k] @ U[k].T,   V[k]: (tiles, C), U[k]: (F, C), M[k]: (tiles, F)

which take 9 m² / a² times fewer multiply-adds than im2col's product (2.25x for m=2, 4x for
m=4); the transforms around them are small fixed matrices. Every transform here is itself one
matrix product with a Kronecker matrix, ``kron(BT, BT) @ tiles`` and so on, so a chunk costs a
handful of numpy calls.

The backward is the chain rule through the same linear maps: ``dM = kron(AT, AT).T @ dY``
(dY: dout cut into m x m tiles), ``dU[k] = dM[k].T @ V[k]`` summed over tiles, and
``dw = kron(G, G).T @ dU``. dx needs nothing new: it is the forward convolution of dout, padded
by ``2 - pad``, with the adjoint filters (each rotated by 180 degrees, in and out channels
swapped: :func:`filters` with ``adjoint``), 3x3 stride 1 again.

Tiles are laid out channels-last, (tile position, sample, tile row, tile column, channel): the
copies into them then move runs of C contiguous values, where channels-first would move runs of
2 for ResNet's 4x4 layers. Chunked and threaded like the im2col path
(:mod:`cnnlab.kernels.im2col.chunks`).

Precision, and why float64 only. The transforms are exact, but the a² products round, and the
output transform adds up their rounding errors with weights that grow with the points (up to 8
for F(4, 3)). In float32, against float64 on ResNet-18's layers (2-norm), that is 5-10x
torch's float32 error for F(4, 3) on the best points tried, and still over 3x with its products
summed over short blocks of channels; F(2, 3) comes within 2x of torch only with its products
summed over blocks of at most 64 channels (a float32 product rounds more as its inner dimension
grows to a few hundred), and then is no faster than the columns in ``cnnlab bench suite``. So
float32 convolutions take the columns (within 1.6x of torch's error,
:mod:`tests.kernels.test_float32_accuracy`), and only float64 comes here, where F(4, 3) stays
within about 5e-15 of a direct product.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from functools import cache

import numpy as np
from numpy.lib.stride_tricks import as_strided

from cnnlab.kernels.im2col.chunks import Arena, PartialSum, Workers, summed

# The finite interpolation points of F(m x m, 3 x 3), m + 1 of them (the point at infinity comes
# last): 0, +-1 for m = 2; for m = 4, 0, +-1/2, +-2, whose rounding errors on ResNet's layers are
# a third smaller than those of the usual 0, +-1, +-2.
_POINTS: dict[int, tuple[Fraction, ...]] = {
    2: (Fraction(0), Fraction(1), Fraction(-1)),
    4: (Fraction(0), Fraction(1, 2), Fraction(-1, 2), Fraction(2), Fraction(-2)),
}

# Channels below which the transforms cost more than the products save.
MIN_CHANNELS = 16

_Matrix = list[list[Fraction]]


def _polynomial(roots: tuple[Fraction, ...]) -> list[Fraction]:
    """The coefficients of prod (x - r) over ``roots``, lowest power first."""
    coefficients = [Fraction(1)]
    for r in roots:  # times (x - r): shifted up one power, less r times itself
        shifted, padded = [Fraction(0), *coefficients], [*coefficients, Fraction(0)]
        coefficients = [s - r * c for s, c in zip(shifted, padded, strict=True)]
    return coefficients


def _toom_cook(m: int, points: tuple[Fraction, ...]) -> tuple[_Matrix, _Matrix, _Matrix]:
    """(BT, G, AT) of F(m, 3) on the finite ``points`` and infinity, exactly.

    F(m, 3) is the transpose of the Toom-Cook product of a 3-tap and an m-tap polynomial: G and
    AT.T evaluate them at the points (at infinity: the top coefficient), and BT.T interpolates
    their product, of degree m + 1, from its m + 2 values. Lagrange's interpolation, with
    M(x) = prod (x - p) over the finite points, gives BT's rows: prod (x - q) over q != p for a
    point p, then M for infinity; the Lagrange denominators prod (p - q) divide G's rows.
    """
    BT: _Matrix = []
    G: _Matrix = []
    for j, p in enumerate(points):
        others = points[:j] + points[j + 1 :]
        BT.append([*_polynomial(others), Fraction(0)])
        G.append([p**k / math.prod(p - q for q in others) for k in range(3)])
    BT.append(_polynomial(points))
    G.append([Fraction(0), Fraction(0), Fraction(1)])
    AT = [[*(p**i for p in points), Fraction(int(i == m - 1))] for i in range(m)]
    return BT, G, AT


@cache
def transforms(m: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Kronecker forms of F(m x m, 3 x 3), a = m + 2: input ``kron(BT, BT)``: (a², a²),
    filter ``kron(G, G)``: (a², 9), output ``kron(AT, AT)``: (m², a²). Each maps a tile,
    flattened row-major, to a flattened tile."""
    BT, G, AT = (np.array(t, np.float64) for t in _toom_cook(m, _POINTS[m]))
    return tuple(np.kron(t, t).astype(dtype) for t in (BT, G, AT))  # type: ignore[return-value]


@dataclass(frozen=True)
class Tiling:
    """How a convolution is cut into tiles: x (N, C, H, W) padded by ``pad``, out (N, F, Ho, Wo)
    covered by th x tw tiles of m x m (the last ones may hang over the edge: zero input in,
    cropped output out)."""

    m: int
    x: tuple[int, int, int, int]
    filters: int
    pad: tuple[int, int]
    out_hw: tuple[int, int]

    @property
    def a(self) -> int:
        """Input tile side."""
        return self.m + 2

    @property
    def tiles_hw(self) -> tuple[int, int]:
        """(th, tw): tiles down and across one output plane."""
        (Ho, Wo), m = self.out_hw, self.m
        return -(-Ho // m), -(-Wo // m)

    @property
    def tiles(self) -> int:
        """Tiles per sample."""
        th, tw = self.tiles_hw
        return th * tw

    def bytes_per_sample(self, itemsize: int) -> int:
        """One sample's transformed input, V: what a chunk must fit in cache."""
        return self.a * self.a * self.tiles * self.x[1] * itemsize

    def split_batch(self) -> bool:
        """Whether worker threads share the batch (each running BLAS on one core), or one
        worker runs while BLAS splits each product. Where the transformed filters U (a², F, C)
        outweigh the batch's tiles (a², N*tiles, C), every worker would stream all of U for a
        few rows of tiles: ResNet's 512-channel layers at batch 32 (at batch 128, and for every
        smaller layer at 32, splitting the batch wins)."""
        return self.filters <= 2 * self.x[0] * self.tiles


def winograd_tiling(
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    stride: tuple[int, int],
    pad: tuple[int, int],
    out_hw: tuple[int, int],
    dtype: np.dtype,
) -> Tiling | None:
    """The tiling for a 3x3, stride-1 convolution with enough channels, else None.

    Padding up to 2 only: dx, the convolution of dout padded by ``2 - pad``, must qualify too.
    Outputs 8 wide and up use F(4, 3); narrower ones F(2, 3), where 4 x 4 tiles would mostly
    hang over the edge (ResNet's 4 x 4 layers: no slower with m=2, and more exact).

    float64 only: float32 takes the columns, which round several times less than F(4, 3) and
    are as fast as an F(2, 3) made as exact as they are, or faster (see Precision above).
    """
    F, C, HH, WW = w_shape
    fits = (HH, WW) == (3, 3) and stride == (1, 1) and max(pad) <= 2 and min(pad) >= 0
    if not fits or min(C, F) < MIN_CHANNELS or np.dtype(dtype) != np.float64:
        return None
    m = 4 if min(out_hw) >= 8 else 2
    return Tiling(m, tuple(x_shape), F, pad, out_hw)  # type: ignore[arg-type]


class _Worker:
    """One thread's share of a pass: transformed input tiles V of chunks of up to ``size``."""

    def __init__(self, x: np.ndarray, tiling: Tiling, size: int, arena: Arena) -> None:
        self.x, self.tiling = x, tiling
        a, (th, tw), C = tiling.a, tiling.tiles_hw, x.shape[1]
        Hp, Wp = tiling.m * th + 2, tiling.m * tw + 2
        # Channels-last padded planes; the padding must read as zeros, only the interior is
        # ever written.
        self.planes = arena.take((size, Hp, Wp, C), x.dtype, zero=True)
        self.tiles = arena.take((a * a, size * tiling.tiles * C), x.dtype)
        self.V = arena.take((a * a, size * tiling.tiles * C), x.dtype)
        self.BK, self.GK, self.AK = transforms(tiling.m, x.dtype)

    def transformed(self, chunk: slice) -> tuple[int, np.ndarray]:
        """The chunk's sample count and V = kron(BT, BT) @ tiles: (a², n*tiles, C)."""
        x = self.x[chunk]
        n, C, H, W = x.shape
        t, (ph, pw) = self.tiling, self.tiling.pad
        (th, tw), m, a = t.tiles_hw, t.m, t.a
        planes = self.planes[:n]
        planes[:, ph : ph + H, pw : pw + W, :] = x.transpose(0, 2, 3, 1)
        sn, sh, sw, sc = planes.strides
        # Tile (ti, tj)'s a x a window starts at (m*ti, m*tj): a view, then one copy.
        view = as_strided(planes, (a, a, n, th, tw, C), (sh, sw, sn, m * sh, m * sw, sc))
        size = n * th * tw * C
        tiles = self.tiles[:, :size]
        tiles.reshape(a, a, n, th, tw, C)[...] = view
        V = self.V[:, :size]
        np.matmul(self.BK, tiles, out=V)
        return n, V.reshape(a * a, n * th * tw, C)


class _ForwardWorker(_Worker):
    """out[chunk] = the conv of x[chunk] with the filters U, plus b."""

    def __init__(
        self,
        x: np.ndarray,
        U: np.ndarray,
        b: np.ndarray | None,
        out: np.ndarray,
        tiling: Tiling,
        size: int,
        arena: Arena,
    ) -> None:
        super().__init__(x, tiling, size, arena)
        self.U, self.b, self.out = U, b, out
        a, m, F = tiling.a, tiling.m, tiling.filters
        self.M = arena.take((a * a, size * tiling.tiles * F), x.dtype)
        self.Y = arena.take((m * m, size * tiling.tiles * F), x.dtype)

    def __call__(self, chunk: slice) -> None:
        n, V = self.transformed(chunk)
        t, F = self.tiling, self.tiling.filters
        (th, tw), m, (Ho, Wo) = t.tiles_hw, t.m, t.out_hw
        M = self.M[:, : n * t.tiles * F]
        np.matmul(V, self.U.transpose(0, 2, 1), out=M.reshape(t.a * t.a, n * t.tiles, F))
        Y = self.Y[:, : n * t.tiles * F]
        np.matmul(self.AK, M, out=Y)  # (m², n*tiles*F)
        y = Y.reshape(m, m, n, th, tw, F).transpose(2, 5, 3, 0, 4, 1)  # (n, F, th, m, tw, m)
        out = self.out[chunk]
        if (Ho, Wo) == (m * th, m * tw):
            out.reshape(n, F, th, m, tw, m)[...] = y
        else:
            out[...] = y.reshape(n, F, m * th, m * tw)[:, :, :Ho, :Wo]
        if self.b is not None:
            out += self.b.reshape(F, 1, 1)


class _WeightGradWorker(_Worker):
    """This worker's partial sums of dU (a², F, C) and db (F,)."""

    def __init__(
        self, x: np.ndarray, dout: np.ndarray, tiling: Tiling, size: int, arena: Arena
    ) -> None:
        super().__init__(x, tiling, size, arena)
        self.dout = dout
        a, m, (th, tw), F, C = tiling.a, tiling.m, tiling.tiles_hw, tiling.filters, x.shape[1]
        # dout on whole tiles; what hangs over the edge stays 0 (only the interior is written).
        self.dout_tiles = arena.take((size, F, m * th, m * tw), x.dtype, zero=True)
        self.dY = arena.take((m * m, size * tiling.tiles * F), x.dtype)
        self.dM = arena.take((a * a, size * tiling.tiles * F), x.dtype)
        self.dU = PartialSum((a * a, F, C), x.dtype, arena)
        self.db = PartialSum((F,), x.dtype, arena)

    def __call__(self, chunk: slice) -> None:
        n, V = self.transformed(chunk)
        t, F = self.tiling, self.tiling.filters
        (th, tw), m, (Ho, Wo), a = t.tiles_hw, t.m, t.out_hw, t.a
        dout = self.dout[chunk]
        padded = self.dout_tiles[:n]
        if (Ho, Wo) != (m * th, m * tw):
            padded[:, :, :Ho, :Wo] = dout
            dout = padded
        dY = self.dY[:, : n * t.tiles * F]
        dY.reshape(m, m, n, th, tw, F)[...] = dout.reshape(n, F, th, m, tw, m).transpose(
            3, 5, 0, 2, 4, 1
        )
        dM = self.dM[:, : n * t.tiles * F]
        np.matmul(self.AK.T, dY, out=dM)  # (a², n*tiles*F)
        np.matmul(dM.reshape(a * a, n * t.tiles, F).transpose(0, 2, 1), V, out=self.dU.out())
        self.dU.add()
        self.dout[chunk].sum(axis=(0, 2, 3), out=self.db.out())
        self.db.add()


def filters(w: np.ndarray, tiling: Tiling, dtype: np.dtype, adjoint: bool = False) -> np.ndarray:
    """U = G g G.T for every filter g of w: (F, C, 3, 3) -> (a², F, C), in one product.

    ``adjoint``: the filters of the adjoint convolution instead (each rotated by 180 degrees,
    in and out channels swapped), (a², C, F), as a view: rotating a 3x3 filter reverses its
    9 taps, so it costs a reversed G, not a strided copy of w.
    """
    F, C = w.shape[:2]
    GK = transforms(tiling.m, dtype)[1]
    if adjoint:
        GK = np.ascontiguousarray(GK[:, ::-1])
    a = tiling.a
    U = np.matmul(GK, w.astype(dtype, copy=False).reshape(F * C, 9).T).reshape(a * a, F, C)
    return U.transpose(0, 2, 1) if adjoint else U


def conv2d_forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None,
    tiling: Tiling,
    adjoint: bool = False,
    *,
    workers: Workers | None = None,
) -> np.ndarray:
    """out: (N, F, Ho, Wo), the 3x3 stride-1 conv of x: (N, C, H, W) with w: (F, C, 3, 3) and
    b: (F,) or None, padded as ``tiling`` says; x's dtype.

    ``adjoint``: convolve with the adjoint filters of w: (C, F, 3, 3) instead (see
    :func:`filters`): the dx of a conv with w, for dout padded by ``2 - pad``. ``workers``: the
    threads and scratch memory to run on; None runs on this thread, with scratch memory for
    this call only.
    """
    workers = Workers(1) if workers is None else workers
    U = filters(w, tiling, x.dtype, adjoint)
    out = np.empty((x.shape[0], tiling.filters, *tiling.out_hw), x.dtype)
    workers.run_chunks(
        x.shape[0],
        tiling.bytes_per_sample(x.itemsize),
        tiling.tiles,
        lambda size, arena: _ForwardWorker(x, U, b, out, tiling, size, arena),
        tiling.split_batch(),
    )
    return out


def conv2d_weight_grads(
    x: np.ndarray, dout: np.ndarray, tiling: Tiling, *, workers: Workers | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """dw: (F, C, 3, 3) and db: (F,) of the conv of x: (N, C, H, W), from dout: (N, F, Ho, Wo);
    x's dtype. ``workers`` as for :func:`conv2d_forward`."""
    workers = Workers(1) if workers is None else workers
    shares = workers.run_chunks(
        x.shape[0],
        tiling.bytes_per_sample(x.itemsize),
        tiling.tiles,
        lambda size, arena: _WeightGradWorker(x, dout, tiling, size, arena),
        tiling.split_batch(),
    )
    dU, db = summed([share.dU for share in shares]), summed([share.db for share in shares])
    F, C, a = tiling.filters, x.shape[1], tiling.a
    GK = transforms(tiling.m, x.dtype)[1]
    dw = np.matmul(dU.reshape(a * a, F * C).T, GK)  # (F*C, 9): the adjoint of filters()
    return dw.reshape(F, C, 3, 3), db
