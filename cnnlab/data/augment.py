"""Training-time augmentation in numpy, so every backend sees exactly the same batches.

The trainer calls :func:`augment` on each training batch with a generator seeded from
``[seed, epoch, step, 1]``: the same seed gives the same crops and flips on every backend.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from cnnlab.data.batches import Rows
from cnnlab.errors import ShapeError


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
            images); the draws are made for all ``rows.total`` images and cut to these, so a
            process gets the crops and flips a single process would give the same images.

    Returns:
        A new array of the same shape and dtype as ``x``; ``x`` is left as it was.

    Random numbers are drawn in a fixed order (row offsets, column offsets, flips) and only for
    the transforms that are on.
    """
    n, _, h, w = x.shape
    if rows is None:
        rows = Rows(0, n, n)
    if len(rows) != n:
        raise ShapeError(f"augment: rows {rows} do not match the {n} images of x")
    mine = rows.slice
    out = x
    if crop_pad > 0:
        p = crop_pad
        padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))  # (N, C, H+2p, W+2p), zeros
        dy = rng.integers(0, 2 * p + 1, rows.total)[mine]
        dx = rng.integers(0, 2 * p + 1, rows.total)[mine]
        # Every H×W window of every image as a view (N, C, 2p+1, 2p+1, H, W); the advanced
        # indices pick one window per image and copy only that: (N, C, H, W).
        windows = sliding_window_view(padded, (h, w), axis=(2, 3))
        out = windows[np.arange(n), :, dy, dx]
    if flip:
        mirror = rng.random(rows.total)[mine] < 0.5
        out = np.where(mirror[:, None, None, None], out[..., ::-1], out)
    return out.copy() if out is x else out
