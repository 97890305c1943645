"""Training-time augmentation in numpy, so every backend sees exactly the same batches.

The transforms are listed once, in :data:`TRANSFORMS` (``data.transforms`` names them, in the
order they are applied):

- ``crop``: zero padding of ``crop_pad`` pixels on each side, then an H×W window at a random
  offset in ``0..2·crop_pad`` (each axis);
- ``flip``: a left-right mirror with probability 1/2;
- ``rotate``: a rotation about the image centre by an angle uniform in
  ``[-rotate_deg, rotate_deg]`` degrees (positive: counter-clockwise, as ``np.rot90``);
- ``scale``: a zoom about the centre by a factor uniform in ``[scale[0], scale[1]]`` (above 1
  enlarges);
- ``color``: brightness, contrast and saturation factors uniform in ``[1 - s, 1 + s]`` for
  strengths ``s`` (clipped at 0), applied in that order to the pixels (see :func:`jitter`).

Rotation and scaling resample bilinearly and fill with zeros where they read outside the image
(:func:`warp`); zero in normalised data is the train split's mean colour, which is also what
``crop``'s padding shows. A ``rotate`` and a ``scale`` next to each other in the list resample
once (their matrices multiply), and a ``flip`` right after a ``crop`` joins it in one gather.

The trainer draws each training batch's parameters (:func:`draw_transforms`) from a generator
seeded from ``[seed, epoch, step, 1]``, each transform in list order and only what is on: the
same seed gives the same images on every backend. The numpy backends apply them with
:func:`apply_transforms`; the torch backends crop and flip on their device, and make a batch
with any other transform on the host with the same numpy functions (:mod:`cnnlab.train.feed`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from cnnlab.data.batches import Rows
from cnnlab.errors import ShapeError

if TYPE_CHECKING:
    from omegaconf import DictConfig

# The weights of a pixel's grey value (ITU-R BT.601 luma, as PIL's convert("L")).
GREY = (0.299, 0.587, 0.114)


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


@dataclass(frozen=True)
class Warp:
    """One batch's rotations and scalings: per image the 2×2 matrix (N, 2, 2) that maps an
    output pixel's offset from the centre to the input offset it reads (:func:`warp`)."""

    matrix: np.ndarray


@dataclass(frozen=True)
class Jitter:
    """One batch's colour factors (N,) each, None for a part that is off, and the per-channel
    ``mean`` and ``std`` (C,) the images were normalised with (None: they are pixels)."""

    brightness: np.ndarray | None
    contrast: np.ndarray | None
    saturation: np.ndarray | None
    mean: np.ndarray | None = None
    std: np.ndarray | None = None


Step = Crops | Warp | Jitter


@dataclass(frozen=True)
class Augmentation:
    """What is done to each training batch: the transforms, in order, and their strengths.

    A strength left out leaves its transform doing nothing (the config's defaults are in
    :class:`cnnlab.schema.DataConfig`). ``mean`` and ``std`` (C,) are the normalisation of the
    images, which ``color`` undoes to change pixels and then redoes.
    """

    transforms: tuple[str, ...]
    crop_pad: int = 0
    rotate_deg: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    mean: np.ndarray | None = None
    std: np.ndarray | None = None

    def __post_init__(self) -> None:
        unknown = [t for t in self.transforms if t not in TRANSFORMS]
        if unknown:
            raise ValueError(f"unknown transforms {unknown}; choose from {', '.join(TRANSFORMS)}")

    @classmethod
    def of(cls, data: DictConfig, mean: np.ndarray, std: np.ndarray) -> Augmentation | None:
        """A ``data`` config node's augmentation (a run's, or a saved run's), or None when
        there is none.

        ``data.augment`` switches it on and off; ``data.transforms`` lists the transforms,
        and null means crop (if ``crop_pad`` > 0) then flip (if ``flip``), as before the list
        existed. (A saved config from then has no ``transforms`` key: the same.)
        """
        if not data.augment:
            return None
        listed = data.get("transforms")
        if listed is None:
            names = crop_flip(int(data.crop_pad), bool(data.flip))
        else:
            names = tuple(str(t) for t in listed)
        if not names:
            return None
        strengths: dict[str, Any] = {}
        if "rotate" in names:
            strengths["rotate_deg"] = float(data.rotate_deg)
        if "scale" in names:
            strengths["scale"] = (float(data.scale[0]), float(data.scale[1]))
        if "color" in names:
            strengths |= {k: float(data[k]) for k in ("brightness", "contrast", "saturation")}
        return cls(names, int(data.crop_pad), mean=mean, std=std, **strengths)


def crop_flip(crop_pad: int, flip: bool) -> tuple[str, ...]:
    """The transforms of ``data.augment=true`` without a list: crop if ``crop_pad`` > 0, then
    flip if ``flip``."""
    return ("crop",) * (crop_pad > 0) + ("flip",) * flip


# -- drawing: one function per transform, each drawing for rows.total images ------------------


def _crop(rng: np.random.Generator, aug: Augmentation, rows: Rows) -> Crops:
    p, mine = aug.crop_pad, rows.slice
    dy = rng.integers(0, 2 * p + 1, rows.total)[mine]
    dx = rng.integers(0, 2 * p + 1, rows.total)[mine]
    return Crops(p, dy, dx, None)


def _flip(rng: np.random.Generator, aug: Augmentation, rows: Rows) -> Crops:
    return Crops(0, None, None, rng.random(rows.total)[rows.slice] < 0.5)


def _rotate(rng: np.random.Generator, aug: Augmentation, rows: Rows) -> Warp:
    return Warp(rotation(rng.uniform(-aug.rotate_deg, aug.rotate_deg, rows.total)[rows.slice]))


def _scale(rng: np.random.Generator, aug: Augmentation, rows: Rows) -> Warp:
    return Warp(zoom(rng.uniform(aug.scale[0], aug.scale[1], rows.total)[rows.slice]))


def rotation(degrees: np.ndarray) -> np.ndarray:
    """(N,) angles as :func:`warp` matrices (N, 2, 2) that turn images counter-clockwise on
    screen (rows grow downwards): an output offset (row, col) from the centre reads the input
    at (cos·row + sin·col, −sin·row + cos·col). 90° is ``np.rot90``."""
    theta = np.deg2rad(np.asarray(degrees, np.float64))
    cos, sin = np.cos(theta), np.sin(theta)
    return np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], 1)


def zoom(factors: np.ndarray) -> np.ndarray:
    """(N,) zoom factors as :func:`warp` matrices (N, 2, 2): an output offset from the centre
    reads the input at offset / factor, so a factor above 1 enlarges."""
    return np.eye(2) / np.asarray(factors, np.float64)[:, None, None]


def _color(rng: np.random.Generator, aug: Augmentation, rows: Rows) -> Jitter:
    def factors(strength: float) -> np.ndarray | None:
        if strength == 0:
            return None
        return rng.uniform(max(0.0, 1 - strength), 1 + strength, rows.total)[rows.slice]

    b, c, s = factors(aug.brightness), factors(aug.contrast), factors(aug.saturation)
    return Jitter(b, c, s, aug.mean, aug.std)


# The transforms by name, in the order the docs list them; data.transforms chooses from these.
TRANSFORMS: dict[str, Callable[[np.random.Generator, Augmentation, Rows], Step]] = {
    "crop": _crop,
    "flip": _flip,
    "rotate": _rotate,
    "scale": _scale,
    "color": _color,
}


def joined(steps: tuple[Step, ...], step: Step) -> tuple[Step, ...]:
    """``steps`` followed by ``step``, merged into the last step where that gives the same
    images with less work: a flip right after a crop (one gather), a warp right after a warp
    (one resampling: reading through A then B is reading through A·B)."""
    last = steps[-1] if steps else None
    crop_then_flip = isinstance(last, Crops) and last.mirror is None
    if crop_then_flip and isinstance(step, Crops) and step.dy is None and step.mirror is not None:
        return (*steps[:-1], Crops(last.pad, last.dy, last.dx, step.mirror))
    if isinstance(last, Warp) and isinstance(step, Warp):
        return (*steps[:-1], Warp(last.matrix @ step.matrix))
    return (*steps, step)


def draw_transforms(rng: np.random.Generator, aug: Augmentation, rows: Rows) -> tuple[Step, ...]:
    """Draw a batch of ``rows.total`` images' transforms and keep ``rows``' share.

    Each transform draws in list order, and within one in a fixed order (crop: row offsets,
    column offsets; color: brightness, contrast, saturation, each only when its strength is
    not 0); a data-parallel process draws for the whole batch and cuts, so it gets the draws a
    single process would give the same images.
    """
    steps: tuple[Step, ...] = ()
    for name in aug.transforms:
        steps = joined(steps, TRANSFORMS[name](rng, aug, rows))
    return steps


def draw_crops(rng: np.random.Generator, crop_pad: int, flip: bool, rows: Rows) -> Crops:
    """Draw the crops and flips of a batch of ``rows.total`` images and keep ``rows``' share:
    :func:`draw_transforms` of crop (row offsets, column offsets) then flip, each if on."""
    steps = draw_transforms(rng, Augmentation(crop_flip(crop_pad, flip), crop_pad), rows)
    return steps[0] if steps else Crops(crop_pad, None, None, None)  # type: ignore[return-value]


# -- applying: numpy -------------------------------------------------------------------------


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


def warp(x: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Resample each image through its matrix, about the image centre, bilinearly.

    Args:
        x: images (N, C, H, W).
        matrix: (N, 2, 2). Output pixel (i, j) reads the input at ``c + matrix[n] @ ((i, j) -
            c)``, with c = ((H-1)/2, (W-1)/2) the centre; between pixels it interpolates
            bilinearly, and outside the image it reads zeros. (That is ``grid_sample`` with
            ``align_corners=True`` and ``padding_mode="zeros"``.)

    Returns:
        (N, C, H, W) in x's dtype. The identity matrix returns x's values exactly, and so does
        a quarter turn of a square image up to the rounding of cos(90°) (about 1e-16).
    """
    n, c, h, w = x.shape
    if matrix.shape != (n, 2, 2):
        raise ShapeError(f"warp: matrix {matrix.shape} does not match {n} images")
    cy, cx = (h - 1) / 2, (w - 1) / 2
    rows = (np.arange(h) - cy)[:, None]  # (H, 1) offsets from the centre
    cols = (np.arange(w) - cx)[None, :]  # (1, W)
    m = matrix[:, :, :, None, None]  # (N, 2, 2, 1, 1)
    # Where each output pixel reads, (N, H, W), clipped to one pixel outside the image: a
    # point farther out reads only zeros either way.
    sy = np.clip(cy + m[:, 0, 0] * rows + m[:, 0, 1] * cols, -1, h)
    sx = np.clip(cx + m[:, 1, 0] * rows + m[:, 1, 1] * cols, -1, w)
    y0, x0 = np.floor(sy), np.floor(sx)
    wy = (sy - y0).astype(x.dtype).reshape(n, 1, h * w)  # weight of the next row
    wx = (sx - x0).astype(x.dtype).reshape(n, 1, h * w)  # and of the next column
    # Zeros around each image, one ring before and two after, so that the four neighbours
    # (y0 or y0+1 in -1..H+1, x0 or x0+1 in -1..W+1) are always inside: (N·C·(H+3)·(W+3),).
    width = w + 3
    flat = np.pad(x, ((0, 0), (0, 0), (1, 2), (1, 2))).reshape(-1)
    first = (np.arange(n * c) * ((h + 3) * width)).reshape(n, c, 1)  # each image's start
    i00 = first + ((y0 + 1) * width + (x0 + 1)).astype(np.intp).reshape(n, 1, h * w)
    # The four neighbours' weights, (N, 1, H·W); exactly 1, 0, 0, 0 on a pixel itself.
    w11 = wx * wy
    w01, w10 = wx - w11, wy - w11
    w00 = 1 - wx - w10
    out = flat.take(i00) * w00  # (N, C, H·W)
    out += flat.take(i00 + 1) * w01
    out += flat.take(i00 + width) * w10
    out += flat.take(i00 + width + 1) * w11
    return out.reshape(n, c, h, w)


def jitter(x: np.ndarray, step: Jitter) -> np.ndarray:
    """Brightness, contrast and saturation, in that order, on the pixels of normalised images.

    With p = x·std + mean the pixels (in [0, 1]) and b, c, s an image's factors:

    - brightness: ``p ← clip(b·p, 0, 1)``;
    - contrast: ``p ← clip(c·p + (1 − c)·m, 0, 1)``, m the mean grey of the image;
    - saturation: ``p ← clip(s·p + (1 − s)·g, 0, 1)``, g each pixel's grey.

    Grey is ``0.299 r + 0.587 g + 0.114 b`` for 3 channels, else the mean over the channels
    (the one channel itself for 1). Saturation changes 3-channel images only: a 1-channel
    image has no colour, and is left as it is (as torchvision does). A part whose factors are
    None is skipped. These are torchvision's ``adjust_*`` formulas.

    Returns:
        The images normalised again, (N, C, H, W) in x's dtype.
    """
    n, c, _, _ = x.shape
    dtype = x.dtype
    mean = np.zeros(c, dtype) if step.mean is None else np.asarray(step.mean, dtype)
    std = np.ones(c, dtype) if step.std is None else np.asarray(step.std, dtype)
    mean, std = mean[:, None, None], std[:, None, None]
    p = x * std + mean

    def grey(p: np.ndarray) -> np.ndarray:  # (N, 1, H, W)
        if c == 3:
            return np.tensordot(np.asarray(GREY, dtype), p, axes=([0], [1]))[:, None]
        return p.mean(axis=1, keepdims=True)

    def blend(p: np.ndarray, factor: np.ndarray, other: np.ndarray | float) -> np.ndarray:
        f = factor.astype(dtype).reshape(n, 1, 1, 1)
        return np.clip(f * p + (1 - f) * other, 0, 1)

    if step.brightness is not None:
        p = blend(p, step.brightness, 0.0)
    if step.contrast is not None:
        p = blend(p, step.contrast, grey(p).mean(axis=(1, 2, 3), keepdims=True))
    if step.saturation is not None and c == 3:
        p = blend(p, step.saturation, grey(p))
    return ((p - mean) / std).astype(dtype, copy=False)


def _apply(x: np.ndarray, step: Step) -> np.ndarray:
    if isinstance(step, Crops):
        return apply_crops(x, step)
    if isinstance(step, Warp):
        return warp(x, step.matrix)
    return jitter(x, step)


def apply_transforms(x: np.ndarray, steps: tuple[Step, ...]) -> np.ndarray:
    """x: (N, C, H, W) through ``steps`` (:func:`draw_transforms`) in order. Returns a new
    array of x's shape and dtype; x is left as it was."""
    out = x
    for step in steps:
        out = _apply(out, step)
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
