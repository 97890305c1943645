"""The two column layouts of the conv kernel, and the rule that picks one per shape.

Both give ``cols`` of shape (C*HH*WW, n*Ho*width), rows ordered (c, kh, kw), columns
(sample, output row, position in the row); they differ in ``width``:

- :class:`WindowColumns` (width ``Wo``): exactly the output pixels, the layout of
  :func:`~cnnlab.kernels.im2col.columns.im2col`. Its copies move runs of only Wo values (one
  window row per output row), which costs more per value the narrower the output.
- :class:`RowColumns` (width ``Wp``, stride 1 only): every position of a padded input row,
  including the ``Wp - Wo`` that no window starts at. Row (c, kh, kw) of the columns for a
  sample is then the sample's padded plane c, flattened and shifted by ``kh*Wp + kw``: one run
  of Ho*Wp values, copied (and scattered back) at memory speed. The extra columns cost
  ``Wp/Wo - 1`` more work in the matrix products and hold no output: their upstream gradient
  is kept 0, so they add nothing to dw, db or dx.

Measured on 2 cores (float32, batch 128, columns in chunks): rows win where the copies
dominate, small kernels' narrow outputs, and lose where ``Wp/Wo`` inflates large products.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from numpy.lib.stride_tricks import as_strided

from cnnlab.kernels.im2col.columns import col2im_add, gather_windows, windows

# Rows instead of windows while their extra columns cost at most this many multiply-adds per
# column entry, F * (Wp/Wo - 1): about what a slow window copy of that entry costs (on the conv
# suite rows win for LeNet C3, 6.4, and ResNet's 128-channel layer, 16, and lose at 64 and up).
ROWS_MAX_EXTRA_MACS = 16


class ColumnLayout(Protocol):
    """How one conv shape lays out its columns (see the module docstring)."""

    plane: int  # elements per (sample, channel) in the padded-input and gradient buffers

    @property
    def width(self) -> int:
        """Columns per output row."""

    def gather(self, x: np.ndarray, planes: np.ndarray, cols: np.ndarray) -> None:
        """Columns of x: (n, C, H, W) into cols: (C*HH*WW, n*Ho*width), padding through
        planes: (>= n, C, plane), a scratch buffer whose padding is kept zero."""

    def scatter(self, dcols: np.ndarray, dx_planes: np.ndarray) -> None:
        """Add dcols: (C*HH*WW, n*Ho*width) back onto dx_planes: (C, n, plane), zeroed by
        the caller."""

    def crop(self, dx_planes: np.ndarray) -> np.ndarray:
        """The (n, C, H, W) gradient inside dx_planes: (C, n, plane), padding dropped."""


class _Planes:
    """Geometry shared by both layouts: padded planes of ``plane >= Hp*Wp`` elements.

    x_shape: (N, C, H, W); kernel, stride, pad, dilation: pairs; out_hw: (Ho, Wo).
    """

    def __init__(
        self,
        x_shape: tuple[int, ...],
        kernel: tuple[int, int],
        stride: tuple[int, int],
        pad: tuple[int, int],
        out_hw: tuple[int, int],
        dilation: tuple[int, int] = (1, 1),
    ) -> None:
        _, self.C, self.H, self.W = x_shape
        self.kernel, self.stride, self.pad, self.out_hw = kernel, stride, pad, out_hw
        self.dilation = dilation
        self.Hp, self.Wp = self.H + 2 * pad[0], self.W + 2 * pad[1]
        self.plane = self.Hp * self.Wp + self.slack()

    def slack(self) -> int:
        """Elements after each plane that this layout reads (and scatters) past its end."""
        return 0

    def padded(self, planes: np.ndarray) -> np.ndarray:
        """The (n, C, Hp, Wp) view of planes: (n, C, plane) (or (C, n, plane) alike)."""
        return planes[..., : self.Hp * self.Wp].reshape(*planes.shape[:2], self.Hp, self.Wp)

    def fill(self, x: np.ndarray, planes: np.ndarray) -> np.ndarray:
        """Copy x: (n, C, H, W) into the interior of planes; return the (n, C, Hp, Wp) view."""
        (ph, pw), n = self.pad, x.shape[0]
        padded = self.padded(planes[:n])
        padded[:, :, ph : ph + self.H, pw : pw + self.W] = x
        return padded

    def crop(self, dx_planes: np.ndarray) -> np.ndarray:
        """The (n, C, H, W) gradient inside dx_planes: (C, n, plane), padding dropped."""
        ph, pw = self.pad
        padded = self.padded(dx_planes)
        return padded[:, :, ph : ph + self.H, pw : pw + self.W].transpose(1, 0, 2, 3)


class WindowColumns(_Planes):
    """One column per output pixel (width Wo): any stride and dilation."""

    @property
    def width(self) -> int:
        return self.out_hw[1]

    def gather(self, x: np.ndarray, planes: np.ndarray, cols: np.ndarray) -> None:
        source = self.fill(x, planes) if any(self.pad) else x
        win = windows(source, self.kernel, self.stride, self.dilation)  # (n, C, Ho, Wo, HH, WW)
        gather_windows(win, cols)

    def scatter(self, dcols: np.ndarray, dx_planes: np.ndarray) -> None:
        col2im_add(dcols, self.padded(dx_planes), self.kernel, self.stride, self.dilation)


class RowColumns(_Planes):
    """One column per padded-row position (width Wp): stride 1 and dilation 1 only.

    Each plane has ``WW - 1`` elements of slack after it: the last row's shifted run reads
    (and scatters) that far past the plane's end, all of it in columns that hold no output.
    """

    def slack(self) -> int:
        if self.stride != (1, 1) or self.dilation != (1, 1):
            raise ValueError(f"row columns need stride 1, undilated, got {self.stride}")
        return self.kernel[1] - 1

    @property
    def width(self) -> int:
        return self.Wp

    def _shifted(self, planes: np.ndarray, channel_axis: int) -> np.ndarray:
        """(C, HH, WW, n, Ho*Wp): for each kernel offset, every plane shifted by kh*Wp + kw."""
        HH, WW = self.kernel
        item = planes.itemsize
        c_stride, n_stride = planes.strides[channel_axis], planes.strides[1 - channel_axis]
        shape = (self.C, HH, WW, planes.shape[1 - channel_axis], self.out_hw[0] * self.Wp)
        strides = (c_stride, self.Wp * item, item, n_stride, item)
        return as_strided(planes, shape, strides, writeable=False)

    def gather(self, x: np.ndarray, planes: np.ndarray, cols: np.ndarray) -> None:
        n = x.shape[0]
        self.fill(x, planes)
        HH, WW = self.kernel
        shifted = self._shifted(planes[:n], channel_axis=1)
        cols.reshape(self.C, HH, WW, n, -1)[...] = shifted

    def folded_dx(
        self,
        dout: np.ndarray,
        w_rows: np.ndarray,
        dout_runs: np.ndarray,
        shifted: np.ndarray,
        partial: np.ndarray,
        dx_planes: np.ndarray,
    ) -> None:
        """dx_planes: (C, n, plane) = the gradient of the chunk's padded planes, from
        dout: (n, F, Ho, Wo), with the kernel's columns folded into one product.

        Scattering dcols back takes one add per kernel offset (HH*WW). Here each dout row run
        is first shifted by kw = 0..WW-1 (``shifted``: (F*WW, n*run), one copy), a product
        with ``w_rows``: (HH*C, F*WW), ``w_rows[(kh, c), (f, kw)] = w[f, c, kh, kw]``, sums
        over f and kw at once (``partial``: (HH*C, n*run)), and HH adds place each kh's share:
        HH + 3 passes instead of HH*WW, and less to write than dcols when
        F*WW + HH*C < C*HH*WW.

        Each sample's run is Ho*Wp + WW - 1 long: its rows, then room for the last kw shifts.
        dout_runs: (F, WW - 1 + n*run) holds dout's rows with zeros everywhere else (the
        caller zeroes it once; only output positions are ever written).
        """
        HH, WW = self.kernel
        (Ho, Wo), Wp = self.out_hw, self.Wp
        n, F = dout.shape[:2]
        run = Ho * Wp + WW - 1
        margin = WW - 1  # the first sample's kw shifts read this far back
        runs = dout_runs[:, margin : margin + n * run].reshape(F, n, run)
        runs[:, :, : Ho * Wp].reshape(F, n, Ho, Wp)[..., :Wo] = dout.transpose(1, 0, 2, 3)
        item = dout_runs.itemsize
        view = as_strided(
            dout_runs[:, margin:], (F, WW, n * run), (dout_runs.strides[0], -item, item)
        )
        shifted = shifted[:, : n * run]
        shifted.reshape(F, WW, n * run)[...] = view  # [(f, kw), u] = runs[f, u - kw]
        partial = partial[:, : n * run]
        np.matmul(w_rows, shifted, out=partial)
        partial4 = partial.reshape(HH, self.C, n, run)
        dx_planes[:, :, :run] = partial4[0]
        dx_planes[:, :, run:] = 0
        for kh in range(1, HH):
            dx_planes[:, :, kh * Wp : kh * Wp + run] += partial4[kh]

    def scatter(self, dcols: np.ndarray, dx_planes: np.ndarray) -> None:
        HH, WW = self.kernel
        n, L = dx_planes.shape[1], self.out_hw[0] * self.Wp
        dcols5 = dcols.reshape(self.C, HH, WW, n, L)
        for kh in range(HH):
            for kw in range(WW):
                start = kh * self.Wp + kw
                # Planes are plane >= start + L elements apart: no two (c, n) runs overlap.
                dx_planes[:, :, start : start + L] += dcols5[:, kh, kw]


def choose_layout(
    x_shape: tuple[int, ...],
    filters: int,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pad: tuple[int, int],
    out_hw: tuple[int, int],
    dilation: tuple[int, int] = (1, 1),
) -> ColumnLayout:
    """Rows for stride 1 (undilated) where their extra work is small (see
    :data:`ROWS_MAX_EXTRA_MACS`), else windows. x: (N, C, H, W); kernel, stride, pad,
    dilation: pairs; out_hw: (Ho, Wo); filters: those that read each column (F/groups)."""
    Wo, Wp = out_hw[1], x_shape[3] + 2 * pad[1]
    rows_fit = stride == (1, 1) and dilation == (1, 1)
    if rows_fit and filters * (Wp - Wo) <= ROWS_MAX_EXTRA_MACS * Wo:
        return RowColumns(x_shape, kernel, stride, pad, out_hw)
    return WindowColumns(x_shape, kernel, stride, pad, out_hw, dilation)
