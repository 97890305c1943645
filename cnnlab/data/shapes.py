"""``data=shapes``: generated 32×32 RGB images of six geometric shapes; no files, no network.

Each image is one shape (circle, square, triangle, cross, ring or bar) of random size
(RADIUS) and position (JITTER around the centre), in a random colour on a random background
colour, with Gaussian pixel noise. The shape is brighter or darker than the background with
equal chance, so the mean image of every class is the same and a linear classifier on the
pixels does little better than chance (about 25% against 1/6); a small convnet, whose ReLUs
see edges of either sign, learns the task in a few epochs (the default ``cnnlab train``).

Generation is vectorised: every image's mask comes from one coordinate grid, one boolean
expression per class. 10,000 images take about half a second, most of it the noise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from cnnlab.data import DATA_STREAM, Raw

if TYPE_CHECKING:
    from cnnlab.schema import ShapesDataConfig

CLASSES = ["circle", "square", "triangle", "cross", "ring", "bar"]
SIZE = 32  # images are SIZE × SIZE
RADIUS = (5.0, 11.0)  # half the extent of a shape, in pixels, drawn uniformly
JITTER = 4.0  # shape centres are drawn uniformly within ±JITTER px of the image centre
CONTRAST = 0.35  # least difference in brightness between shape and background
TINT = 0.15  # each colour is its brightness plus a uniform ±TINT per channel
SPLIT_IDS = {"train": 0, "test": 1}  # the last word of each split's seed

# A shape's mask (n, SIZE, SIZE) from offsets to its centre, dy (n, SIZE, 1) and dx (n, 1, SIZE),
# and its radius r (n, 1, 1).
Mask = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _circle(dy: np.ndarray, dx: np.ndarray, r: np.ndarray) -> np.ndarray:
    return dy**2 + dx**2 <= r**2


def _square(dy: np.ndarray, dx: np.ndarray, r: np.ndarray) -> np.ndarray:
    return np.maximum(abs(dy), abs(dx)) <= 0.85 * r


def _triangle(dy: np.ndarray, dx: np.ndarray, r: np.ndarray) -> np.ndarray:
    # Apex at the top (dy = -r), base at dy = 0.75 r, as wide as a square of the same r.
    return (dy <= 0.75 * r) & (abs(dx) <= 0.5 * (dy + r))


def _cross(dy: np.ndarray, dx: np.ndarray, r: np.ndarray) -> np.ndarray:
    arm = 0.3 * r  # half the thickness of each arm
    return ((abs(dx) <= arm) & (abs(dy) <= r)) | ((abs(dy) <= arm) & (abs(dx) <= r))


def _ring(dy: np.ndarray, dx: np.ndarray, r: np.ndarray) -> np.ndarray:
    d2 = dy**2 + dx**2
    return ((0.55 * r) ** 2 <= d2) & (d2 <= r**2)


def _bar(dy: np.ndarray, dx: np.ndarray, r: np.ndarray) -> np.ndarray:
    return (abs(dx) <= r) & (abs(dy) <= 0.3 * r)


MASKS: list[Mask] = [_circle, _square, _triangle, _cross, _ring, _bar]  # index = label


def generate(n: int, seed: int, split: str, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images of the named split (``train`` or ``test``), the same for the same seed.

    Returns ``x`` (n, 3, SIZE, SIZE) float32 in [0, 1] and ``y`` (n,) int64 labels 0..5, as
    balanced as ``n`` allows (class counts differ by at most one).
    """
    rng = np.random.default_rng([seed, DATA_STREAM, SPLIT_IDS[split]])
    y = rng.permutation(np.arange(n) % len(CLASSES)).astype(np.int64)
    r = rng.uniform(*RADIUS, n)
    cy, cx = SIZE / 2 - 0.5 + rng.uniform(-JITTER, JITTER, (2, n))  # centres, (n,) each
    fg, bg = _colours(rng, n)

    grid = np.arange(SIZE, dtype=np.float64)
    dy = grid[None, :, None] - cy[:, None, None]  # (n, SIZE, 1)
    dx = grid[None, None, :] - cx[:, None, None]  # (n, 1, SIZE)
    mask = np.zeros((n, SIZE, SIZE), dtype=bool)
    for label, shape in enumerate(MASKS):
        pick = y == label
        mask[pick] = shape(dy[pick], dx[pick], r[pick, None, None])

    x = np.where(mask[:, None], fg[:, :, None, None], bg[:, :, None, None])  # (n, 3, SIZE, SIZE)
    x += noise * rng.standard_normal(x.shape, dtype=np.float32)
    return np.clip(x, 0.0, 1.0, out=x), y


def _colours(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Shape and background colours (n, 3) float32.

    Both brightnesses are uniform on [0, 1], at least CONTRAST apart; each colour adds its own
    tint. Shape and background play symmetric roles (the shape is brighter or darker with
    equal chance), so every class has the same mean image: no template for a linear model.
    """
    lum_fg, lum_bg = rng.random((2, n))
    faint = np.abs(lum_fg - lum_bg) < CONTRAST
    lum_fg[faint] = (lum_bg[faint] + 0.5) % 1.0  # half a unit apart, either way round
    tint = rng.uniform(-TINT, TINT, (2, n, 3))
    fg = lum_fg[:, None] + tint[0]
    bg = lum_bg[:, None] + tint[1]
    return fg.astype(np.float32), bg.astype(np.float32)


def read(data: ShapesDataConfig, seed: int) -> Raw:
    """Generate ``data.train_size`` training and ``data.test_size`` test images (noise
    ``data.noise``) from ``seed``: the same seed, the same images."""
    x_train, y_train = generate(data.train_size, seed, "train", data.noise)
    x_test, y_test = generate(data.test_size, seed, "test", data.noise)
    return Raw(list(CLASSES), x_train, y_train, x_test, y_test)
