"""Training-time augmentation in numpy, so every backend sees exactly the same batches.

The trainer draws each training batch's crops and flips (:func:`draw_crops`) from a generator
seeded from ``[seed, epoch, step, 1]``: the same seed gives the same crops and flips on every
backend. The numpy backends apply them with :func:`apply_crops`; the torch backends apply the
same draws to tensors on their device (:mod:`cnnlab.train.feed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from cnnlab.data.batches import Rows
from cnnlab.errors import ShapeError


@dataclass(frozen=True)
class Crops:
    """One batch's augmentation draws: the zero padding ``pad`` around each image, per image a
    crop offset ``(dy, dx)`` in ``0..2·pad`` (None when crops are off) and whether it is
    mirrored (None when flips are off). numpy arrays, or tensors on a device when torch draws
    them (``trainer.rng=device``)."""

    pad: int
    dy: Any
    dx: Any
    mirror: Any


def draw_crops(rng: np.random.Generator, crop_pad: int, flip: bool, rows: Rows) -> Crops:
    """Draw the crops and flips of a batch of ``rows.total`` images and keep ``rows``' share.

    Random numbers are drawn in a fixed order (row offsets, column offsets, flips) and only for
    the transforms that are on; a data-parallel process draws for the whole batch and cuts, so
    it gets the crops and flips a single process would give the same images.
    """
    mine = rows.slice
    dy = dx = mirror = None
    if crop_pad > 0:
        dy = rng.integers(0, 2 * crop_pad + 1, rows.total)[mine]
        dx = rng.integers(0, 2 * crop_pad + 1, rows.total)[mine]
    if flip:
        mirror = rng.random(rows.total)[mine] < 0.5
    return Crops(crop_pad, dy, dx, mirror)


def apply_crops(x: np.ndarray, crops: Crops) -> np.ndarray:
    """x: (N, C, H, W) zero-padded by ``crops.pad``, cut at each image's offset, then mirrored
    where drawn. Returns a new array of x's shape and dtype; x is left as it was."""
    n, _, h, w = x.shape
    out = x
    if crops.dy is not None:
        p = crops.pad
        padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))  # (N, C, H+2p, W+2p), zeros
        # Every H×W window of every image as a view (N, C, 2p+1, 2p+1, H, W); the advanced
        # indices pick one window per image and copy only that: (N, C, H, W).
        windows = sliding_window_view(padded, (h, w), axis=(2, 3))
        out = windows[np.arange(n), :, crops.dy, crops.dx]
    if crops.mirror is not None:
        out = np.where(crops.mirror[:, None, None, None], out[..., ::-1], out)
    return out.copy() if out is x else out


def augment(
    x: np.ndarray,
    rng: np.random.Generator,
    crop_pad: int,
    flip: bool,
    rows: Rows | None = None,
) -> np.ndarray:
    """Random crops after zero padding, and random horizontal flips, one draw per image.

    Args:
        x: images (N, C, H, W).
        rng: the source of the random offsets and flips.
        crop_pad: zero padding on each side before an H×W window is cut at a random offset in
            ``0..2·crop_pad`` (each axis); 0 leaves the images uncropped.
        flip: mirror each image left-right with probability 1/2.
        rows: in a data-parallel run, which rows of the whole batch ``x`` is (``len(rows)``
            images); see :func:`draw_crops`.

    Returns:
        A new array of the same shape and dtype as ``x``; ``x`` is left as it was.
    """
    n = x.shape[0]
    if rows is None:
        rows = Rows(0, n, n)
    if len(rows) != n:
        raise ShapeError(f"augment: rows {rows} do not match the {n} images of x")
    return apply_crops(x, draw_crops(rng, crop_pad, flip, rows))
